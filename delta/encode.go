package delta

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/delta/zsections"
)

// zstd settings shared by the encoders.
const (
	minWindow = 1 << 20
	// maxPlainWindow is the window of the pack and of bsdiff streams: they
	// need no dictionary, so a device decodes them in this much memory.
	maxPlainWindow = 8 << 20
)

// windowFor returns the zstd window for content compressed against a raw
// dictionary of dict bytes. Matches into the dictionary lie about its length
// back (the target resembles the base at the same offsets), so the window
// covers the dictionary plus a margin, and at most maxPlainWindow of content
// besides: a device decodes in about this much memory.
func windowFor(dict, content int64) int64 {
	n := max(dict+dict/8+(1<<20), min(content, maxPlainWindow))
	if n <= minWindow {
		return minWindow
	}
	w := int64(1) << (64 - bits.LeadingZeros64(uint64(n-1)))
	return min(w, maxWindowLimit)
}

func newEncoder(w io.Writer, level zstd.EncoderLevel, window int64, dict []byte) (*zstd.Encoder, error) {
	opts := []zstd.EOption{
		zstd.WithEncoderLevel(level),
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(int(window)),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true),
	}
	if dict != nil {
		opts = append(opts, zstd.WithEncoderDictRaw(0, dict))
	}
	return zstd.NewWriter(w, opts...)
}

func newDecoder(r io.Reader, window int64, dict []byte) (*zstd.Decoder, error) {
	opts := []zstd.DOption{
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(max(window, minWindow))),
		zstd.WithDecoderMaxMemory(uint64(max(window, minWindow)) * 2),
	}
	if dict != nil {
		opts = append(opts, zstd.WithDecoderDictRaw(0, dict))
	}
	return zstd.NewReader(r, opts...)
}

// encodeZstdDict compresses target with base as raw dictionary.
func encodeZstdDict(base, target []byte, level zstd.EncoderLevel) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := newEncoder(&buf, level, windowFor(int64(len(base)), int64(len(target))), base)
	if err != nil {
		return nil, err
	}
	if _, err := enc.Write(target); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Coders of bsdiff streams (Op.Coder).
const (
	CoderZstd   = ""       // one zstd frame (the default)
	CoderBrotli = "brotli" // brotli, 1 MiB window: smaller than zstd on patches
)

// brotliWindowBits is the brotli window (1 MiB): a device decodes in it.
const brotliWindowBits = 20

// patchCoder says how to compress bsdiff streams: zstd at a level, or
// brotli at a quality.
type patchCoder struct {
	name    string // CoderZstd or CoderBrotli
	level   zstd.EncoderLevel
	quality int
}

// patchCompressor returns the writer that compresses a bsdiff stream.
func patchCompressor(w io.Writer, c patchCoder, size int64) (io.WriteCloser, error) {
	if c.name == CoderBrotli {
		return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: c.quality, LGWin: brotliWindowBits}), nil
	}
	level := c.level
	return newEncoder(w, level, windowFor(0, size*2+64), nil) // capped: see windowFor
}

// patchDecompressor reads a bsdiff stream compressed by patchCompressor.
func patchDecompressor(r io.Reader, coder string, window int64) (io.ReadCloser, error) {
	switch coder {
	case CoderBrotli:
		return io.NopCloser(brotli.NewReader(r)), nil
	case CoderZstd:
		d, err := newDecoder(r, window, nil)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("%w: unknown coder %q", ErrBadDelta, coder)
}

// encodeBsdiff computes the streaming bsdiff of target against base
// (FORMAT.md), compressed by coder.
func encodeBsdiff(ctx context.Context, base, target []byte, coder patchCoder) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := patchCompressor(&buf, coder, int64(len(target)))
	if err != nil {
		return nil, err
	}
	em := bsdiff.NewStreamEmitter(enc)
	if err := bsdiff.Diff(ctx, base, target, em); err != nil {
		return nil, err
	}
	if err := em.Flush(); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeBsdiffChunked is encodeBsdiff with bounded memory for files too
// big to diff whole: the target is cut into chunks, each diffed against the
// base window around the same offset (half a chunk either side), and the
// results are joined into one ordinary streaming bsdiff by control triples
// that only move the base position. Memory is that of a 2-chunk diff.
func encodeBsdiffChunked(ctx context.Context, base, target []byte, chunk int, coder patchCoder) ([]byte, error) {
	if chunk < 1 {
		return nil, fmt.Errorf("chunk size %d", chunk)
	}
	var buf bytes.Buffer
	enc, err := patchCompressor(&buf, coder, int64(len(target)))
	if err != nil {
		return nil, err
	}
	em := bsdiff.NewStreamEmitter(enc)
	for off := 0; off < len(target); off += chunk {
		end := min(off+chunk, len(target))
		lo := min(max(0, off-chunk/2), len(base))
		hi := min(len(base), end+chunk/2)
		// Move the base position to the window's start.
		if err := em.EmitControl(bsdiff.Control{Seek: int64(lo) - em.Pos}); err != nil {
			return nil, err
		}
		if err := bsdiff.Diff(ctx, base[lo:hi], target[off:end], em); err != nil {
			return nil, err
		}
	}
	if err := em.Flush(); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// encodeBsdiffX86 is encodeBsdiff on ELF files made diffable by two exact,
// reversible transforms (FORMAT.md, encoder bsdiff-x86): exefilter (x86-64
// call and RIP-relative targets made absolute, symbol values delta-coded),
// then zsections (zlib-compressed sections such as Go's DWARF expanded).
// Blob = uvarint(n) ‖ exefilter.Params of the target ‖ uvarint(n) ‖
// zsections.Params of the base ‖ uvarint(n) ‖ zsections.Params of the
// target ‖ the compressed streaming bsdiff of E(T(base)) to E(T(target)).
// ok is false for files neither transform applies to; expanded is the size
// of E(T(target)), what the patcher writes.
func encodeBsdiffX86(ctx context.Context, base, target []byte, coder patchCoder) (blob []byte, expanded int64, ok bool, err error) {
	lo := exefilter.Analyze(bytes.NewReader(base), int64(len(base)), exefilter.DefaultForms)
	tBase, _, err := exefilter.EncodeLayout(base, lo)
	if err != nil {
		return nil, 0, false, nil
	}
	tTarget, xp, err := exefilter.Encode(target, exefilter.DefaultForms)
	if err != nil {
		return nil, 0, false, nil
	}
	eBase, zBase, okB, err := zsections.Expand(tBase)
	if err != nil || !okB {
		eBase, zBase = tBase, zsections.Params{}
	}
	eTarget, zTarget, okT, err := zsections.Expand(tTarget)
	if err != nil || !okT {
		eTarget, zTarget = tTarget, zsections.Params{}
	}
	if len(lo.Code) == 0 && len(xp.Layout.Code) == 0 && !okB && !okT {
		return nil, 0, false, nil
	}
	tBase, tTarget = nil, nil // let the collector have them before the suffix array
	for _, m := range []encoding.BinaryMarshaler{xp, zBase, zTarget} {
		pb, err := m.MarshalBinary()
		if err != nil {
			return nil, 0, false, err
		}
		blob = binary.AppendUvarint(blob, uint64(len(pb)))
		blob = append(blob, pb...)
	}
	patch, err := encodeBsdiff(ctx, eBase, eTarget, coder)
	if err != nil {
		return nil, 0, false, err
	}
	return append(blob, patch...), int64(len(eTarget)), true, nil
}
