package gzrecipe

import (
	"bytes"
	"context"
	"testing"
)

func TestSmoke(t *testing.T) {
	tar := layerTar(t, 1, 3<<20)
	for _, blob := range [][]byte{goGzip(t, tar, 6, gzHeader{}), goGzip(t, tar, 3, gzHeader{}), kpGzip(t, tar, 5, gzHeader{}), pgz(t, tar, 5, 0, gzHeader{}), pgz(t, tar, 9, 200000, gzHeader{name: "x"})} {
		r, err := Find(context.Background(), opener(tar), opener(blob), WithAttempts(func(a Attempt) { t.Logf("  %v %v %d %v", a.Recipe, a.Matched, a.Equal, a.Elapsed) }))
		t.Logf("%v %v", r, err)
		var buf bytes.Buffer
		if err := r.Compress(context.Background(), bytes.NewReader(tar), &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), blob) {
			t.Fatal("differs")
		}
	}
}
