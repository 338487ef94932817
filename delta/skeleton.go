package delta

import (
	"bytes"
	"os"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/layerfs"
)

// The target skeletons: how each rebuilt layer's skeleton is coded
// against a base layer's (FORMAT.md, skeleton blobs).

// compressSkeleton returns the compressed skeleton blob, its zstd window,
// the size of what was compressed, and whether that is a skeleton delta.
// With a dictionary layer it tries the raw skeleton and the skeleton delta
// against that layer's skeleton, both with it as zstd dictionary, and keeps
// the smaller: the delta wins when headers changed (say every mtime), the
// raw form when they did not.
func compressSkeleton(path string, baseInfo []*layerInfo, dict int, level zstd.EncoderLevel, sums bool) (blob []byte, window, rawSize int64, isDelta, plain bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, false, false, err
	}
	var base []byte
	if dict >= 0 {
		if base, err = os.ReadFile(baseInfo[dict].skeleton); err != nil {
			return nil, 0, 0, false, false, err
		}
	}
	// A base skeleton too big to be a dictionary within a device's memory
	// budget (its bytes plus a window covering them) is only the base of a
	// skeleton delta, compressed on its own in a small window (SkeletonPlain).
	zdict := base
	plain = len(base) > maxSkeletonDict
	if plain {
		zdict = nil
	}
	compress := func(content []byte) ([]byte, int64, error) {
		window := windowFor(int64(len(zdict)), int64(len(content)))
		if plain {
			window = plainSkeletonWindow
		}
		b, err := zstdBytes(content, level, window, zdict)
		return b, window, err
	}
	blob, window, err = compress(raw)
	if err != nil || dict < 0 {
		return blob, window, int64(len(raw)), false, false, err
	}
	var d bytes.Buffer
	diffSkel := layerfs.DiffSkeleton
	if sums {
		diffSkel = layerfs.DiffSkeletonSums // version 3 readers compute checksums
	}
	if err := diffSkel(base, raw, &d); err != nil {
		return nil, 0, 0, false, false, err
	}
	dblob, dwindow, err := compress(d.Bytes())
	if err != nil {
		return nil, 0, 0, false, false, err
	}
	if len(dblob) < len(blob) {
		return dblob, dwindow, int64(max(d.Len(), len(raw))), true, plain, nil
	}
	return blob, window, int64(len(raw)), false, plain, nil
}

// A base skeleton is a zstd dictionary only up to maxSkeletonDict bytes:
// the device holds the dictionary and a window as big, which for the Go
// toolchain's 5.8 MB skeleton put apply over its 32 MiB budget. Bigger
// ones only serve as the base of a skeleton delta, whose frame has no
// dictionary and a small window (the Go toolchain's skeleton then costs
// 94.5 KB instead of 76.3 KB).
var maxSkeletonDict = 4 << 20 // a variable for tests

const plainSkeletonWindow = 1 << 20

// brotliSkeleton codes the skeleton delta of the target skeleton in file
// path against the base skeleton in file base with brotli (quality 11, a
// window covering it) and returns it when it is smaller than than bytes.
func brotliSkeleton(path, base string, than int) (blob []byte, window int64, ok bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, false, err
	}
	b, err := os.ReadFile(base)
	if err != nil {
		return nil, 0, false, err
	}
	var d bytes.Buffer
	if err := layerfs.DiffSkeletonSums(b, raw, &d); err != nil {
		return nil, 0, false, err
	}
	out, window, err := brotliSkeletonBytes(d.Bytes(), 11)
	if err != nil || len(out) >= than {
		return nil, 0, false, err
	}
	return out, window, true, nil
}

// brotliSkeletonBytes compresses a skeleton delta with brotli at quality,
// in a window of at most 1 MiB, as plain zstd skeletons have: the device
// holds the base skeleton besides, and a skeleton delta's matches are near
// (the toolchain's 5.8 MB skeleton in an 8 MiB window put apply at 37 MiB).
func brotliSkeletonBytes(d []byte, quality int) ([]byte, int64, error) {
	lgwin := min(streamWindowBits(int64(len(d))), 20)
	var out bytes.Buffer
	w := brotli.NewWriterOptions(&out, brotli.WriterOptions{Quality: quality, LGWin: lgwin})
	if _, err := (&pieceWriter{w: w, piece: 64 << 10}).Write(d); err != nil {
		return nil, 0, err
	}
	if err := w.Close(); err != nil {
		return nil, 0, err
	}
	return out.Bytes(), 1 << lgwin, nil
}

// zstdBytes compresses content as one zstd frame in window, with dict as
// raw dictionary (nil: none).
func zstdBytes(content []byte, level zstd.EncoderLevel, window int64, dict []byte) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := newEncoder(&buf, level, window, dict)
	if err != nil {
		return nil, err
	}
	if _, err := enc.Write(content); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// leanSkeleton codes the target skeleton in file path as a lean skeleton
// delta (manifest version 5, layerfs/SKELETON.md "Lean skeleton
// deltas") against base layer dict's skeleton, or against nothing when
// dict is -1: payload sizes, zero padding, unchanged files' digests and
// the digests of the payloads made reports true for are left out. It
// keeps the smallest of: zstd with the base skeleton as dictionary (where
// it is small enough to be one), zstd without, brotli (quality brotliQ, if
// not 0) without; without a dictionary the window is at most 1 MiB. It
// returns the blob, its window, the bigger of the raw skeleton and the
// delta (for max_skeleton), whether the frame has no dictionary, and the
// codec ("" for zstd).
func leanSkeleton(path string, baseInfo []*layerInfo, dict int, made func(digest.Digest) bool, level zstd.EncoderLevel, brotliQ int) (blob []byte, window, rawSize int64, plain bool, codec string, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, false, "", err
	}
	var base []byte
	if dict >= 0 {
		if base, err = os.ReadFile(baseInfo[dict].skeleton); err != nil {
			return nil, 0, 0, false, "", err
		}
	}
	var d bytes.Buffer
	if err := layerfs.DiffSkeletonLean(base, raw, &d, made); err != nil {
		return nil, 0, 0, false, "", err
	}
	rawSize = int64(max(d.Len(), len(raw)))
	if blob, err = zstdBytes(d.Bytes(), level, plainSkeletonWindow, nil); err != nil {
		return nil, 0, 0, false, "", err
	}
	window, plain = plainSkeletonWindow, true
	if len(base) > 0 && len(base) <= maxSkeletonDict {
		w := windowFor(int64(len(base)), int64(d.Len()))
		b, err := zstdBytes(d.Bytes(), level, w, base)
		if err != nil {
			return nil, 0, 0, false, "", err
		}
		if len(b) < len(blob) {
			blob, window, plain = b, w, false
		}
	}
	if brotliQ != 0 {
		out, bw, err := brotliSkeletonBytes(d.Bytes(), brotliQ)
		if err != nil {
			return nil, 0, 0, false, "", err
		}
		if len(out) < len(blob) {
			return out, bw, rawSize, true, CodecBrotli, nil
		}
	}
	return blob, window, rawSize, plain, "", nil
}

// madePayloads returns what lean skeleton deltas may leave a payload's
// digest out for: the payloads the ops make that appear once in the
// rebuilt target layers (a second appearance names the digest, which the
// device would not know yet when it pairs payloads with ops).
func madePayloads(plans []*planned, targetInfo []*layerInfo) func(digest.Digest) bool {
	count := map[digest.Digest]int{}
	for _, li := range targetInfo {
		if li == nil {
			continue
		}
		for _, f := range li.files {
			if f.Payload != "" {
				count[f.Payload]++
			}
		}
	}
	made := make(map[digest.Digest]bool, len(plans))
	for _, p := range plans {
		if count[p.op.Target] == 1 {
			made[p.op.Target] = true
		}
	}
	return func(d digest.Digest) bool { return made[d] }
}
