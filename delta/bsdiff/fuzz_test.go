package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// fuzzOld is the fixed old file FuzzPatch applies patches to.
var fuzzOld = []byte("The quick brown fox jumps over the lazy dog. 0123456789 \x00\x01\x02\x03\xff\xfe")

// limitWriter fails once more than n bytes are written, so a patch that
// writes past its declared size is caught.
type limitWriter struct{ n int64 }

var errOverWrite = errors.New("wrote past the declared size")

func (l *limitWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errOverWrite
	}
	l.n -= int64(len(p))
	return len(p), nil
}

func FuzzPatch(f *testing.F) {
	for _, n := range []string{"fox", "fax", ""} {
		var p bytes.Buffer
		_ = WritePatch(context.Background(), fuzzOld, bytes.ReplaceAll(fuzzOld, []byte("fox"), []byte(n)), &p)
		f.Add(p.Bytes())
	}
	f.Add([]byte("BSDIFF40"))
	f.Fuzz(func(t *testing.T, patch []byte) {
		const maxOut = 1 << 20
		ctx := context.Background()
		for _, r := range []io.Reader{bytes.NewReader(patch), onlyReader{bytes.NewReader(patch)}} {
			var out bytes.Buffer
			err := Patch(ctx, bytes.NewReader(fuzzOld), int64(len(fuzzOld)), r,
				io.MultiWriter(&out, &limitWriter{maxOut}), WithMaxOutput(maxOut), WithMaxBuffer(1<<20))
			if err != nil {
				if errors.Is(err, errOverWrite) {
					t.Fatal(err)
				}
				continue
			}
			if want := getOfft(patch[24:]); int64(out.Len()) != want {
				t.Fatalf("Patch succeeded with %d bytes, header says %d", out.Len(), want)
			}
		}
		// The same bytes as raw streams: split by the first two bytes.
		if len(patch) < 3 {
			return
		}
		a := min(int(patch[0]), len(patch)-2)
		b := min(a+int(patch[1]), len(patch)-2)
		body := patch[2:]
		newSize := int64(len(body)) * 3
		var out limitWriter
		out.n = newSize
		err := PatchStreams(ctx, bytes.NewReader(fuzzOld), int64(len(fuzzOld)), newSize,
			bytes.NewReader(body[:a]), bytes.NewReader(body[a:b]), bytes.NewReader(body[b:]), &out)
		if err == nil && out.n != 0 {
			t.Fatalf("PatchStreams succeeded short of newSize by %d bytes", out.n)
		}
		if errors.Is(err, errOverWrite) {
			t.Fatal(err)
		}
	})
}

func FuzzDiffPatch(f *testing.F) {
	r := newRand(8)
	small := binaryLike(r, 600)
	f.Add(small, edit(r, small, 5))
	f.Add([]byte{}, []byte("new"))
	f.Add([]byte("old"), []byte{})
	f.Add(bytes.Repeat([]byte("ab"), 100), bytes.Repeat([]byte("ba"), 120))
	f.Fuzz(func(t *testing.T, old, new []byte) {
		if len(old) > 1<<16 || len(new) > 1<<16 {
			return
		}
		roundTripStreams(t, old, new)
		roundTripPatch(t, old, new)
	})
}
