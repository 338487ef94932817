package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// naiveSuffixArray sorts all suffixes with a comparison sort:
// O(n² log n), obviously correct.
func naiveSuffixArray(text []byte) []int32 {
	sa := make([]int32, len(text))
	for i := range sa {
		sa[i] = int32(i)
	}
	slices.SortFunc(sa, func(a, b int32) int { return bytes.Compare(text[a:], text[b:]) })
	return sa
}

func checkSuffixArray(t *testing.T, text []byte) {
	t.Helper()
	got, err := SuffixArray(context.Background(), text)
	if err != nil {
		t.Fatalf("SuffixArray: %v", err)
	}
	want := naiveSuffixArray(text)
	if !slices.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("suffix array of %d bytes differs first at index %d: got %d, want %d (text %q...)",
			len(text), i, got[i], want[i], text[:min(len(text), 64)])
	}
}

// fibonacciWord returns the Fibonacci word of at least n letters, a
// classic worst case for suffix sorting (deep SA-IS recursion).
func fibonacciWord(n int) []byte {
	a, b := []byte("a"), []byte("ab")
	for len(b) < n {
		a, b = b, append(bytes.Clone(b), a...)
	}
	return b[:n]
}

func TestSuffixArray(t *testing.T) {
	r := newRand(7)
	randOver := func(n, k int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(k))
		}
		return b
	}
	cases := []struct {
		name string
		text []byte
	}{
		{"empty", nil},
		{"one", []byte{5}},
		{"two equal", []byte{5, 5}},
		{"two up", []byte{1, 2}},
		{"two down", []byte{2, 1}},
		{"banana", []byte("banana")},
		{"mississippi", []byte("mississippi")},
		{"all zero", make([]byte, 3000)},
		{"all 0xff", bytes.Repeat([]byte{0xff}, 2049)},
		{"period 2", bytes.Repeat([]byte("ab"), 1500)},
		{"period 3 reversed", bytes.Repeat([]byte("cba"), 1001)},
		{"period 7 plus tail", append(bytes.Repeat([]byte("abracad"), 400), 'a', 'b')},
		{"nested period", bytes.Repeat(append(bytes.Repeat([]byte("aab"), 10), 'c'), 100)},
		{"fibonacci", fibonacciWord(4000)},
		{"ascending", func() []byte {
			b := make([]byte, 1000)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}()},
		{"descending", func() []byte {
			b := make([]byte, 1000)
			for i := range b {
				b[i] = byte(255 - i%256)
			}
			return b
		}()},
		{"binary like", binaryLike(r, 5000)},
	}
	for _, k := range []int{2, 3, 4, 16, 256} {
		for _, n := range []int{3, 17, 100, 1000, 4000} {
			cases = append(cases, struct {
				name string
				text []byte
			}{fmt.Sprintf("random k=%d n=%d", k, n), randOver(n, k)})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkSuffixArray(t, c.text) })
	}
}

func TestSuffixArrayCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := SuffixArray(ctx, bytes.Repeat([]byte("ab"), 100))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("SuffixArray with cancelled ctx: got %v, want context.Canceled", err)
	}
}

// TestSuffixArrayLarge checks the sorted order on an input too big for the
// naive sort, where every adjacent pair must be strictly increasing.
func TestSuffixArrayLarge(t *testing.T) {
	r := newRand(3)
	for _, text := range [][]byte{binaryLike(r, 1<<20), edit(r, bytes.Repeat([]byte("0123456789abcdef"), 1<<15), 50)} {
		sa, err := SuffixArray(context.Background(), text)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, len(text))
		for i, p := range sa {
			if seen[p] {
				t.Fatalf("position %d appears twice", p)
			}
			seen[p] = true
			if i > 0 && bytes.Compare(text[sa[i-1]:], text[p:]) >= 0 {
				t.Fatalf("suffixes %d and %d out of order at index %d", sa[i-1], p, i)
			}
		}
	}
}

func FuzzSuffixArray(f *testing.F) {
	f.Add([]byte("banana"))
	f.Add([]byte("mississippi"))
	f.Add(bytes.Repeat([]byte{0}, 64))
	f.Add(fibonacciWord(200))
	f.Fuzz(func(t *testing.T, text []byte) {
		if len(text) > 4096 {
			text = text[:4096]
		}
		checkSuffixArray(t, text)
	})
}
