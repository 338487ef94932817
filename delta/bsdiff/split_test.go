package bsdiff

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
)

// memFile is an io.WriterAt over a growing byte slice.
type memFile struct{ b []byte }

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := int(off) + len(p); end > len(m.b) {
		m.b = append(m.b, make([]byte, end-len(m.b))...)
	}
	return copy(m.b[off:], p), nil
}

func splitOf(t testing.TB, old, new []byte) []byte {
	var s SplitEmitter
	if err := Diff(context.Background(), old, new, &s); err != nil {
		t.Fatal(err)
	}
	if s.OutSize() != int64(len(new)) {
		t.Fatalf("controls make %d bytes, want %d", s.OutSize(), len(new))
	}
	b := s.Bytes()
	if len(b) != s.Size() {
		t.Fatalf("Bytes is %d long, Size says %d", len(b), s.Size())
	}
	var w bytes.Buffer
	if _, err := s.WriteTo(&w); err != nil || !bytes.Equal(w.Bytes(), b) {
		t.Fatalf("WriteTo differs from Bytes (%v)", err)
	}
	return b
}

func applySplit(t testing.TB, old, patch []byte, size int64) ([]byte, error) {
	spill, err := os.CreateTemp(t.TempDir(), "spill")
	if err != nil {
		t.Fatal(err)
	}
	defer spill.Close()
	var out memFile
	err = ApplySplit(bytes.NewReader(old), int64(len(old)), bufio.NewReader(bytes.NewReader(patch)), size, &out, spill, 1<<20)
	return out.b, err
}

func TestSplitRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return b
	}
	base := random(200 << 10)
	edited := append([]byte{}, base...)
	for i := 0; i < 300; i++ {
		edited[rng.IntN(len(edited))]++
	}
	edited = append(append(append([]byte{}, edited[:50000]...), random(3000)...), edited[60000:]...)
	cases := []struct {
		name     string
		old, new []byte
	}{
		{"empty both", nil, nil},
		{"new from nothing", nil, random(5000)},
		{"to empty", random(5000), nil},
		{"same", base, base},
		{"edited", base, edited},
		{"unrelated", random(10000), random(9000)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := splitOf(t, c.old, c.new)
			// Two forms back to back: the first read must stop at its end.
			two := append(append([]byte{}, p...), p...)
			br := bufio.NewReader(bytes.NewReader(two))
			for i := 0; i < 2; i++ {
				spill, _ := os.CreateTemp(t.TempDir(), "spill")
				var out memFile
				if err := ApplySplit(bytes.NewReader(c.old), int64(len(c.old)), br, int64(len(c.new)), &out, spill, 1<<20); err != nil {
					t.Fatalf("form %d: %v", i, err)
				}
				spill.Close()
				if !bytes.Equal(out.b, c.new) && !(len(out.b) == 0 && len(c.new) == 0) {
					t.Fatalf("form %d: wrong output (%d bytes, want %d)", i, len(out.b), len(c.new))
				}
			}
			if _, err := br.ReadByte(); err == nil {
				t.Fatal("bytes left after both forms")
			}
		})
	}
}

// columnsOf distributes split forms into columns, and returns readers of
// them.
func columnsOf(t testing.TB, forms ...[]byte) (Columns, []*bytes.Reader) {
	var bufs [NumColumns]bytes.Buffer
	var cw ColumnWriter
	for i := range cw {
		cw[i] = &bufs[i]
	}
	for _, f := range forms {
		br := bufio.NewReader(bytes.NewReader(f))
		if err := cw.Split(br); err != nil {
			t.Fatal(err)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatal("Split left bytes of its form unread")
		}
	}
	var rs []*bytes.Reader
	for i := range bufs {
		rs = append(rs, bytes.NewReader(bufs[i].Bytes()))
	}
	cols := Columns{Count: rs[ColCount], Add: rs[ColAdd], Copy: rs[ColCopy], Seek: rs[ColSeek],
		Zeros: rs[ColZeros], Lits: rs[ColLits], Diff: rs[ColDiff], Extra: rs[ColExtra]}
	return cols, rs
}

// TestColumnsRoundTrip: split forms distributed into columns apply from
// them, one after the other, to the same files, and use every byte.
func TestColumnsRoundTrip(t *testing.T) {
	old := bytes.Repeat([]byte("0123456789abcdef"), 2000)
	news := [][]byte{
		append(append(append([]byte{}, old[:9000]...), []byte("an insertion")...), old[9000:]...),
		old[100:20000],
		nil,
		[]byte("unrelated new content, no match at all in the base"),
	}
	var forms [][]byte
	for _, n := range news {
		forms = append(forms, splitOf(t, old, n))
	}
	cols, rs := columnsOf(t, forms...)
	sizes := 0
	for _, r := range rs {
		sizes += r.Len()
	}
	total := 0
	for _, f := range forms {
		total += len(f)
	}
	if sizes != total {
		t.Errorf("columns hold %d bytes, the forms %d", sizes, total)
	}
	for i, n := range news {
		spill, _ := os.CreateTemp(t.TempDir(), "spill")
		var out memFile
		if err := ApplyColumns(bytes.NewReader(old), int64(len(old)), cols, int64(len(n)), &out, spill, 1<<20); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		spill.Close()
		if !bytes.Equal(out.b, n) && !(len(out.b) == 0 && len(n) == 0) {
			t.Fatalf("file %d: wrong output", i)
		}
	}
	for i, r := range rs {
		if r.Len() != 0 {
			t.Errorf("column %d: %d bytes left", i, r.Len())
		}
	}
	// A column cut short fails cleanly.
	for c := range NumColumns {
		cols, rs := columnsOf(t, forms[0])
		if rs[c].Len() == 0 {
			continue
		}
		short := bytes.NewReader(nil)
		for _, p := range []*io.ByteReader{&cols.Count, &cols.Add, &cols.Copy, &cols.Seek, &cols.Zeros, &cols.Lits} {
			if *p == rs[c] {
				*p = short
			}
		}
		if cols.Diff == rs[c] {
			cols.Diff = short
		}
		if cols.Extra == rs[c] {
			cols.Extra = short
		}
		spill, _ := os.CreateTemp(t.TempDir(), "spill")
		var out memFile
		err := ApplyColumns(bytes.NewReader(old), int64(len(old)), cols, int64(len(news[0])), &out, spill, 1<<20)
		spill.Close()
		if !errors.Is(err, ErrCorruptPatch) {
			t.Errorf("column %d empty: err = %v, want ErrCorruptPatch", c, err)
		}
	}
}

func FuzzColumnSplit(f *testing.F) {
	old := bytes.Repeat([]byte("0123456789"), 100)
	f.Add(splitOf(f, old, append([]byte("new start "), old[10:]...)))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, form []byte) {
		var bufs [NumColumns]bytes.Buffer
		var cw ColumnWriter
		for i := range cw {
			cw[i] = &bufs[i]
		}
		br := bufio.NewReader(bytes.NewReader(form))
		if err := cw.Split(br); err != nil {
			if !errors.Is(err, ErrCorruptPatch) {
				t.Fatalf("err = %v, want ErrCorruptPatch", err)
			}
			return
		}
		// The columns hold what it read, no more.
		rest, _ := io.ReadAll(br)
		used := form[:len(form)-len(rest)]
		n := 0
		for i := range bufs {
			n += bufs[i].Len()
		}
		if n > len(used) { // fewer for varints that were not minimal
			t.Fatalf("columns hold %d bytes of a %d-byte form", n, len(used))
		}
	})
}

func TestSplitRefusesMalformed(t *testing.T) {
	old := bytes.Repeat([]byte("abcdefgh"), 1000)
	new := append(append([]byte{}, old[:4000]...), []byte("inserted text")...)
	new = append(new, old[4000:]...)
	good := splitOf(t, old, new)
	cases := []struct {
		name  string
		patch []byte
		size  int64
	}{
		{"truncated", good[:len(good)-1], int64(len(new))},
		{"empty", nil, int64(len(new))},
		{"size too small", good, int64(len(new)) - 1},
		{"size too big", good, int64(len(new)) + 1},
		{"huge control count", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 10},
		{"control past the end", []byte{1, 20, 0, 0}, 10},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := applySplit(t, old, c.patch, c.size); !errors.Is(err, ErrCorruptPatch) {
				t.Fatalf("got %v, want ErrCorruptPatch", err)
			}
		})
	}
}

func FuzzApplySplit(f *testing.F) {
	old := bytes.Repeat([]byte("0123456789"), 100)
	f.Add(splitOf(f, old, append([]byte("new start "), old[10:]...)), int64(1000))
	f.Add([]byte{0}, int64(0))
	f.Fuzz(func(t *testing.T, patch []byte, size int64) {
		if size < 0 || size > 1<<20 {
			return
		}
		out, err := applySplit(t, old, patch, size)
		if err == nil && int64(len(out)) > size {
			t.Fatalf("wrote %d bytes for a %d-byte file", len(out), size)
		}
	})
}

func TestZeroRuns(t *testing.T) {
	cases := [][]byte{
		nil,
		{0},
		{1},
		make([]byte, 1000),
		append(make([]byte, 20), 1, 2, 3),
		{1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0},
		bytes.Repeat([]byte{0, 0, 0, 0, 0, 0, 0, 9}, 100),
	}
	for i, c := range cases {
		enc := AppendZeroRuns(nil, c)
		got := make([]byte, len(c))
		r := bytes.NewReader(enc)
		z := &zeroRunReader{r: r, zbr: r, lbr: r, left: int64(len(c))}
		if _, err := io.ReadFull(z, got); err != nil && len(c) > 0 {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, c) && len(c) > 0 {
			t.Fatalf("case %d: round trip differs", i)
		}
		if r.Len() != 0 {
			t.Fatalf("case %d: %d coded bytes left unread", i, r.Len())
		}
	}
	if n := len(AppendZeroRuns(nil, make([]byte, 1<<20))); n > 8 {
		t.Errorf("1 MiB of zeros codes to %d bytes", n)
	}
}

func FuzzZeroRuns(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		enc := AppendZeroRuns(nil, b)
		r := bytes.NewReader(enc)
		got := make([]byte, len(b))
		if _, err := io.ReadFull(&zeroRunReader{r: r, zbr: r, lbr: r, left: int64(len(b))}, got); err != nil && len(b) > 0 {
			t.Fatal(err)
		}
		if !bytes.Equal(got, b) || r.Len() != 0 {
			t.Fatal("round trip differs")
		}
	})
}
