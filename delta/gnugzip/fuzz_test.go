package gnugzip

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"testing"
)

var fuzzHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}

// FuzzDetect: Detect never panics, and a recipe it returns rebuilds the
// input exactly.
func FuzzDetect(f *testing.F) {
	for i, data := range [][]byte{nil, []byte("x"), wordText(1, 3000), randomBytes(2, 500), bytes.Repeat([]byte("ab"), 400)} {
		for _, level := range []int{1, 6, 9} {
			var b bytes.Buffer
			if err := Compress(&b, bytes.NewReader(data), level, fuzzHeader); err != nil {
				f.Fatal(err)
			}
			f.Add(b.Bytes())
			if i == 2 {
				g := b.Bytes()
				f.Add(g[:len(g)-5])
				f.Add(append(bytes.Clone(g), g...))
			}
		}
	}
	var zw bytes.Buffer
	w := gzip.NewWriter(&zw)
	w.Write([]byte("not gnu gzip"))
	w.Close()
	f.Add(zw.Bytes())
	f.Add([]byte{0x1f, 0x8b, 8, 0x1c, 0, 0, 0, 0, 0, 3, 1, 0, 'e', 'n', 0, 'c'})
	f.Fuzz(func(t *testing.T, gz []byte) {
		rc, err := Detect(gz)
		if err != nil {
			return
		}
		cr, err := NewContentReader(bytes.NewReader(gz), int64(len(gz)))
		if err != nil {
			t.Fatalf("Detect accepted what NewContentReader rejects: %v", err)
		}
		var out bytes.Buffer
		if err := rc.Compress(&out, cr); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), gz) {
			t.Fatalf("recipe %+v rebuilds %d bytes that differ from the %d input bytes", rc, out.Len(), len(gz))
		}
	})
}

// fuzzData turns a fuzz input into compressor input: the seed repeated
// with a varying prefix, so that small corpora still reach long matches,
// several blocks and window slides.
func fuzzData(seed []byte, reps uint16) []byte {
	n := int(reps % 400)
	if n == 0 || len(seed) == 0 {
		return seed
	}
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		b.Write(seed[:len(seed)-i%len(seed)])
	}
	return b.Bytes()
}

// FuzzRoundTrip: every level's output decodes with compress/gzip to the
// input, and, when /usr/bin/gzip exists, equals its output byte for byte.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte("hello, hello, hello"), uint8(6), uint16(0))
	f.Add(wordText(3, 2000), uint8(9), uint16(50))
	f.Add(randomBytes(4, 1000), uint8(1), uint16(90))
	f.Add([]byte("abc\x00\x00"), uint8(3), uint16(399))
	_, err := os.Stat(gnuGzipPath)
	haveGzip := err == nil
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, seed []byte, lv uint8, reps uint16) {
		level := 1 + int(lv%9)
		data := fuzzData(seed, reps)
		var gz bytes.Buffer
		if err := Compress(&gz, bytes.NewReader(data), level, fuzzHeader); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(gz.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("level %d: decoded %d bytes, want %d", level, len(got), len(data))
		}
		if haveGzip {
			want := gnuGzip(t, dir, data, level)
			// Both headers are 10 bytes; gzip's XFL depends on the level.
			if i := firstDiff(want[10:], gz.Bytes()[10:]); i >= 0 {
				t.Fatalf("level %d, %d bytes in: differs from gzip at byte %d", level, len(data), 10+i)
			}
		}
	})
}
