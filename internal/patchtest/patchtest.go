// Package patchtest measures patches the way skiff's delta encoder makes
// them, for the measurement tests of the transforms (delta/exefilter,
// delta/zsections).
package patchtest

import (
	"bytes"
	"context"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/delta/bsdiff"
)

// ZstdBsdiffSize reproduces delta's bsdiff encoder (streaming bsdiff, one
// zstd frame at SpeedBestCompression, window capped at 8 MiB) and returns
// the patch size.
func ZstdBsdiffSize(t testing.TB, old, new []byte) int {
	t.Helper()
	var buf bytes.Buffer
	window := int64(len(new))*2 + 64
	w := int64(1 << 20)
	for w < window && w < 8<<20 {
		w <<= 1
	}
	enc, err := zstd.NewWriter(&buf, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(int(w)),
		zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
	if err != nil {
		t.Fatal(err)
	}
	bw := bsdiff.NewStreamEmitter(enc)
	if err := bsdiff.Diff(context.Background(), old, new, bw); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Len()
}
