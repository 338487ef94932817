package gnugzip

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/imagetest"
)

const gnuGzipPath = "/usr/bin/gzip"

// needGzip skips the test when the reference binary is missing.
func needGzip(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(gnuGzipPath); err != nil {
		tb.Skipf("%s not available: %v", gnuGzipPath, err)
	}
}

// gnuGzip compresses data with the real GNU gzip, reading a regular file
// as dh_compress does (a pipe could deliver short reads).
func gnuGzip(tb testing.TB, dir string, data []byte, level int) []byte {
	tb.Helper()
	f, err := os.CreateTemp(dir, "in")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	var out, errb bytes.Buffer
	cmd := exec.Command(gnuGzipPath, "-N", "-n", "-c", fmt.Sprintf("-%d", level), f.Name())
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		tb.Fatalf("gzip -%d: %v: %s", level, err, errb.String())
	}
	return out.Bytes()
}

// firstDiff returns the first offset where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return n
	}
	return -1
}

// goSource concatenates Go source files from GOROOT/src in path order
// until limit bytes.
func goSource(tb testing.TB, limit int) []byte {
	tb.Helper()
	root := filepath.Join(runtime.GOROOT(), "src")
	var paths []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			paths = append(paths, p)
		}
		return nil
	})
	sort.Strings(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		if buf.Len() >= limit {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		buf.Write(b)
	}
	if buf.Len() < limit/2 {
		tb.Skipf("only %d bytes of Go source under %s", buf.Len(), root)
	}
	if buf.Len() > limit {
		buf.Truncate(limit)
	}
	return buf.Bytes()
}

// randomBytes is seeded, incompressible bytes.
func randomBytes(seed uint64, n int) []byte { return imagetest.Noise(seed, 1, n) }

// wordText makes English-like text from a small vocabulary.
func wordText(seed uint64, n int) []byte {
	words := strings.Fields("the of and to in is was he for it with as his on be at by had are but from or have an they which one you were all her she there would their we him been has when who will no more if out so said what up its about than into them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three")
	r := rand.New(rand.NewPCG(seed, 2))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		switch r.IntN(12) {
		case 0:
			b.WriteString(".\n")
		case 1:
			b.WriteString(", ")
		default:
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// farMatches makes data whose repeats sit at distances near the window
// limit: random chunks copied from 32000..32768 bytes back, with edits.
func farMatches(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, 0, n)
	for len(b) < n {
		if len(b) < 33000 || r.IntN(3) == 0 {
			k := 1 + r.IntN(64)
			for i := 0; i < k; i++ {
				b = append(b, byte(r.Uint32()))
			}
			continue
		}
		dist := 32000 + r.IntN(769)
		length := 3 + r.IntN(300)
		if r.IntN(4) == 0 {
			length = 3 + r.IntN(4)
		}
		from := len(b) - dist
		for i := 0; i < length; i++ {
			b = append(b, b[from+i])
		}
	}
	return b[:n]
}

// mixed strings together text, zeros, random data and repeats.
func mixed(tb testing.TB, seed uint64, n int) []byte {
	src := goSource(tb, 1<<20)
	r := rand.New(rand.NewPCG(seed, 4))
	b := make([]byte, 0, n)
	for len(b) < n {
		k := 1 + r.IntN(200000)
		switch r.IntN(5) {
		case 0:
			off := r.IntN(len(src))
			b = append(b, src[off:min(len(src), off+k)]...)
		case 1:
			b = append(b, make([]byte, k)...)
		case 2:
			b = append(b, randomBytes(r.Uint64(), k)...)
		case 3:
			b = append(b, wordText(r.Uint64(), k)...)
		case 4:
			if len(b) > 0 {
				off := r.IntN(len(b))
				b = append(b, b[off:min(len(b), off+k)]...)
			}
		}
	}
	return b[:n]
}

type namedInput struct {
	name string
	data []byte
}

// testInputs is the table the oracle tests run at every level.
func testInputs(tb testing.TB, short bool) []namedInput {
	text := goSource(tb, 3<<20)
	in := []namedInput{
		{"empty", nil},
		{"one-byte", []byte{'x'}},
		{"two-bytes", []byte("ab")},
		{"three-same", []byte("aaa")},
		{"small-text", []byte("hello, hello, hello world\n")},
		{"random-100", randomBytes(1, 100)},
		{"zeros-1MiB", make([]byte, 1<<20)},
		{"random-300KiB", randomBytes(2, 300<<10)},
		{"text-1MiB", text[:1<<20]},
		{"words-200KiB", wordText(5, 200<<10)},
		{"repetitive", bytes.Repeat([]byte("abcabcabd0123456789"), 40000)},
		{"period-1", bytes.Repeat([]byte("a"), 5000)},
		{"period-2", bytes.Repeat([]byte("ab"), 5000)},
		{"period-3", bytes.Repeat([]byte("abc"), 5000)},
		{"far-matches-200KiB", farMatches(6, 200<<10)},
		{"eof-garbage", eofGarbage()},
		{"eof-garbage-small", eofGarbageSmall()},
	}
	sizes := []int{32767, 32768, 32769, 65273, 65274, 65275, 65276, 65533, 65534, 65535, 65536, 65537, 98302, 98303, 98304, 131072 + 5}
	for _, n := range sizes {
		in = append(in, namedInput{fmt.Sprintf("text-%d", n), text[len(text)-n:]})
		in = append(in, namedInput{fmt.Sprintf("words-%d", n), wordText(uint64(n), n)})
	}
	for _, n := range []int{litBufSize - 2, litBufSize - 1, litBufSize, litBufSize + 1} {
		// n literals: one symbol per byte when incompressible-ish
		in = append(in, namedInput{fmt.Sprintf("random-%d", n), randomBytes(uint64(n), n)})
		in = append(in, namedInput{fmt.Sprintf("random-tail-%d", n), append(randomBytes(uint64(n), n), make([]byte, 600)...)})
	}
	for seed := uint64(0); seed < 150; seed++ {
		in = append(in, namedInput{fmt.Sprintf("varied-%d", seed), varied(seed)})
	}
	// Found by searching for inputs on which a one-off change to the
	// stored-block rule (stored_len+4 <= opt_lenb) or to the bit-length
	// run counting changes the output; each pins that rule.
	for _, seed := range []uint64{18, 20, 24, 67, 209, 225, 343, 367, 485} {
		in = append(in, namedInput{fmt.Sprintf("edge-%d", seed), edgeCase(seed)})
	}
	if !short {
		in = append(in,
			namedInput{"text-3MiB", text},
			namedInput{"mixed-6MiB", mixed(tb, 7, 6<<20)},
			namedInput{"far-matches-2MiB", farMatches(8, 2<<20)},
		)
	}
	return in
}

// eofGarbage makes the last match search depend on the two bytes past the
// end of the input. gzip's window there still holds data from before the
// last slide; fill_window zeroes exactly two bytes at end of file. The
// file ends in "abc"; a near candidate is followed by the stale bytes,
// a farther one by two zeros, so zeroing picks the farther one. The rest
// is compressible (4 symbols) so that the last block is not stored.
func eofGarbage() []byte {
	const k = 1000
	n := 2*wSize + k
	b := fourSymbols(42, n)
	b[wSize+k], b[wSize+k+1] = 'P', 'Q' // stale bytes at end+0, end+1 after the slide
	copy(b[n-1501:], "Sabc\x00\x00")
	copy(b[n-501:], "RabcPQ")
	copy(b[n-4:], "Tabc")
	return b
}

// eofGarbageSmall is the same for a file that fits the first read, where
// everything past the end is still zero.
func eofGarbageSmall() []byte {
	b := fourSymbols(43, 3000)
	copy(b[1000:], "Sabc\x00\x00\x00")
	copy(b[2000:], "RabcPQ")
	copy(b[len(b)-4:], "Tabc")
	return b
}

func fourSymbols(seed uint64, n int) []byte {
	b := randomBytes(seed, n)
	for i := range b {
		b[i] = "wxyz"[b[i]&3]
	}
	return b
}

// varied makes small inputs of many shapes: alphabet size, skew, length
// and repeats all vary with the seed, to reach rare tree shapes and
// near-ties between block types.
func varied(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 5))
	n := 1 + r.IntN(1+r.IntN(40000))
	alpha := 1 + r.IntN(256)
	skew := r.Float64() * 3
	repeat := r.IntN(4) == 0
	b := make([]byte, 0, n)
	for len(b) < n {
		if repeat && len(b) > 10 && r.IntN(20) == 0 {
			from := r.IntN(len(b))
			k := 3 + r.IntN(40)
			for i := 0; i < k && from+i < len(b); i++ {
				b = append(b, b[from+i])
			}
			continue
		}
		x := r.Float64()
		for i := 0.0; i < skew; i++ {
			x *= r.Float64()
		}
		b = append(b, byte(int(x*float64(alpha))))
	}
	return b[:n]
}

func edgeCase(seed uint64) []byte {
	data := varied(seed + 1000)
	if seed%2 == 1 {
		r := rand.New(rand.NewPCG(seed, 9))
		data = data[:min(len(data), 1+r.IntN(300))]
	}
	return data
}
