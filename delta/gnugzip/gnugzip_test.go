package gnugzip

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"testing"
	"testing/iotest"
)

// TestMatchesGNUGzip compares Compress with /usr/bin/gzip -N -n at every
// level on the whole input table.
func TestMatchesGNUGzip(t *testing.T) {
	needGzip(t)
	dir := t.TempDir()
	for _, in := range testInputs(t, testing.Short()) {
		for level := 1; level <= 9; level++ {
			t.Run(fmt.Sprintf("%s/%d", in.name, level), func(t *testing.T) {
				want := gnuGzip(t, dir, in.data, level)
				hdr, err := ParseHeader(want)
				if err != nil {
					t.Fatal(err)
				}
				var got bytes.Buffer
				if err := Compress(&got, bytes.NewReader(in.data), level, hdr); err != nil {
					t.Fatal(err)
				}
				if i := firstDiff(want, got.Bytes()); i >= 0 {
					t.Fatalf("output differs from gzip -%d at byte %d of %d (got %d bytes)", level, i, len(want), got.Len())
				}
			})
		}
	}
}

// TestWriteChunking checks that the output does not depend on how the
// input is split into Write calls.
func TestWriteChunking(t *testing.T) {
	data := mixed(t, 11, 400<<10)
	var want bytes.Buffer
	if err := Compress(&want, bytes.NewReader(data), 6, nil); err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{1, 7, 4096, 70000} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			var got bytes.Buffer
			z, err := NewWriter(&got, 6)
			if err != nil {
				t.Fatal(err)
			}
			for p := data; len(p) > 0; {
				n := min(chunk, len(p))
				if _, err := z.Write(p[:n]); err != nil {
					t.Fatal(err)
				}
				p = p[n:]
			}
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
			raw := want.Bytes()[:want.Len()-8] // Compress with a nil header
			if i := firstDiff(raw, got.Bytes()); i >= 0 {
				t.Fatalf("chunked Write output differs at byte %d", i)
			}
		})
	}
	t.Run("one-byte-reader", func(t *testing.T) {
		var got bytes.Buffer
		if err := Compress(&got, iotest.OneByteReader(bytes.NewReader(data)), 6, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatal("output depends on read sizes")
		}
	})
}

// TestRoundTrip decodes every level's output with compress/gzip.
func TestRoundTrip(t *testing.T) {
	header := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}
	for _, in := range testInputs(t, true) {
		for level := 1; level <= 9; level++ {
			t.Run(fmt.Sprintf("%s/%d", in.name, level), func(t *testing.T) {
				checkRoundTrip(t, in.data, level, header)
			})
		}
	}
}

func checkRoundTrip(t *testing.T, data []byte, level int, header []byte) {
	t.Helper()
	var gz bytes.Buffer
	if err := Compress(&gz, bytes.NewReader(data), level, header); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(&gz)
	if err != nil {
		t.Fatal(err)
	}
	zr.Multistream(false)
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("round trip at level %d: got %d bytes, want %d", level, len(got), len(data))
	}
}

// TestDetect runs Detect on gzip's own output: the recipe must rebuild
// the file exactly, and the level must be the one used when XFL names it.
func TestDetect(t *testing.T) {
	needGzip(t)
	dir := t.TempDir()
	inputs := []namedInput{
		{"empty", nil},
		{"words", wordText(1, 100<<10)},
		{"random", randomBytes(3, 70<<10)},
		{"far", farMatches(4, 150<<10)},
	}
	for _, in := range inputs {
		for level := 1; level <= 9; level++ {
			t.Run(fmt.Sprintf("%s/%d", in.name, level), func(t *testing.T) {
				gz := gnuGzip(t, dir, in.data, level)
				rc, err := Detect(gz)
				if err != nil {
					t.Fatal(err)
				}
				if (level == 1 || level == 9) && rc.Level != level {
					t.Errorf("level %d detected as %d", level, rc.Level)
				}
				var got bytes.Buffer
				if err := rc.Compress(&got, bytes.NewReader(in.data)); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), gz) {
					t.Fatalf("recipe %+v does not rebuild the file", rc)
				}
				cr, err := NewContentReader(bytes.NewReader(gz), int64(len(gz)))
				if err != nil {
					t.Fatal(err)
				}
				content, err := io.ReadAll(cr)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(content, in.data) {
					t.Fatal("NewContentReader returned other content")
				}
			})
		}
	}
}

func TestDetectRejects(t *testing.T) {
	data := wordText(9, 20000)
	var good bytes.Buffer
	hdr := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3}
	if err := Compress(&good, bytes.NewReader(data), 9, hdr); err != nil {
		t.Fatal(err)
	}
	g := good.Bytes()
	var zlibish bytes.Buffer // Go's compress/gzip: valid, but not GNU gzip's bytes
	zw, _ := gzip.NewWriterLevel(&zlibish, 9)
	zw.Write(data)
	zw.Close()

	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(g)) }
	tests := []struct {
		name string
		gz   []byte
		want error
	}{
		{"empty", nil, ErrNotGzip},
		{"bad-magic", mod(func(b []byte) []byte { b[0] = 0x1e; return b }), ErrNotGzip},
		{"bad-method", mod(func(b []byte) []byte { b[2] = 7; return b }), ErrNotGzip},
		{"reserved-flag", mod(func(b []byte) []byte { b[3] = 0x20; return b }), ErrNotGzip},
		{"fhcrc", mod(func(b []byte) []byte { b[3] = flgHCRC; return b }), ErrNotReproducible},
		{"truncated", g[:len(g)-3], ErrNotGzip},
		{"truncated-deflate", g[:len(g)/2], ErrNotGzip},
		{"bad-crc", mod(func(b []byte) []byte { b[len(b)-8] ^= 1; return b }), ErrNotGzip},
		{"bad-isize", mod(func(b []byte) []byte { b[len(b)-1] ^= 1; return b }), ErrNotGzip},
		{"corrupt-deflate", mod(func(b []byte) []byte { b[10] = 0xff; b[11] = 0xff; return b }), ErrNotGzip},
		{"multi-member", append(bytes.Clone(g), g...), ErrNotReproducible},
		{"trailing-garbage", append(bytes.Clone(g), 0, 0, 0), ErrNotReproducible},
		{"unterminated-name", []byte{0x1f, 0x8b, 8, flgName, 0, 0, 0, 0, 0, 3, 'a', 'b'}, ErrNotGzip},
		{"other-deflater", zlibish.Bytes(), ErrNotReproducible},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := Detect(tc.gz)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Detect = %+v, %v; want error %v", rc, err, tc.want)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		rc, err := Detect(g)
		if err != nil || rc.Level != 9 || !bytes.Equal(rc.Header, hdr) {
			t.Fatalf("Detect = %+v, %v", rc, err)
		}
	})
	t.Run("name-and-comment", func(t *testing.T) {
		h := []byte{0x1f, 0x8b, 8, flgName | flgComment | flgExtra, 1, 2, 3, 4, 0, 3, 2, 0, 'x', 'y', 'n', 0, 'c', 0}
		var b bytes.Buffer
		if err := Compress(&b, bytes.NewReader(data), 4, h); err != nil {
			t.Fatal(err)
		}
		rc, err := Detect(b.Bytes())
		if err != nil || !bytes.Equal(rc.Header, h) {
			t.Fatalf("Detect = %+v, %v", rc, err)
		}
	})
}

func TestBadLevel(t *testing.T) {
	for _, l := range []int{-1, 0, 10} {
		if _, err := NewWriter(io.Discard, l); !errors.Is(err, ErrLevel) {
			t.Errorf("NewWriter(level %d) error = %v, want ErrLevel", l, err)
		}
	}
}

type failWriter struct{ n int }

var errFail = errors.New("write failed")

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errFail
	}
	f.n--
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	z, _ := NewWriter(&failWriter{}, 6)
	_, err := z.Write(randomBytes(1, 1<<20))
	if err == nil {
		err = z.Close()
	}
	if !errors.Is(err, errFail) {
		t.Fatalf("error = %v, want the writer's error", err)
	}
	z, _ = NewWriter(io.Discard, 6)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := z.Write([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close = %v, want ErrClosed", err)
	}
}
