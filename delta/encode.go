package delta

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/zsections"
)

// zstd settings shared by the encoders.
const (
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
	if n <= format.MinWindow {
		return format.MinWindow
	}
	w := int64(1) << (64 - bits.LeadingZeros64(uint64(n-1)))
	return min(w, format.MaxWindowLimit)
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

// encKey is what a zstd encoder cannot change on reset.
type encKey struct {
	level  zstd.EncoderLevel
	window int64
	dict   bool
}

// encoderPools holds idle encoders by encKey. Making an encoder at the best
// level allocates and clears tens of MB of tables: with one per file, that
// was most of the time of a diff of many small files.
var encoderPools sync.Map // encKey -> *sync.Pool

// pooledEncoder is a zstd encoder borrowed from encoderPools; Close
// finishes the frame and returns it.
type pooledEncoder struct {
	*zstd.Encoder
	key encKey
}

// getEncoder is newEncoder reusing an idle encoder where one fits. The
// output is the same: a reset encoder starts a new, independent frame, and
// a new dictionary (a new *dict) makes it rebuild its dictionary tables.
func getEncoder(w io.Writer, level zstd.EncoderLevel, window int64, dict []byte) (*pooledEncoder, error) {
	k := encKey{level, window, dict != nil}
	pool, _ := encoderPools.LoadOrStore(k, &sync.Pool{})
	if e, ok := pool.(*sync.Pool).Get().(*zstd.Encoder); ok {
		if dict == nil {
			e.Reset(w)
		} else if err := e.ResetWithOptions(w, zstd.WithEncoderDictRaw(0, dict)); err != nil {
			return nil, err
		}
		return &pooledEncoder{e, k}, nil
	}
	e, err := newEncoder(w, level, window, dict)
	if err != nil {
		return nil, err
	}
	return &pooledEncoder{e, k}, nil
}

// Close finishes the frame; the encoder goes back to its pool (also after
// an error: getEncoder resets it). It keeps its writer and dictionary
// until then: resetting here would cost a second copy of the tables.
func (p *pooledEncoder) Close() error {
	err := p.Encoder.Close()
	pool, _ := encoderPools.Load(p.key)
	pool.(*sync.Pool).Put(p.Encoder)
	p.Encoder = nil
	return err
}

func newDecoder(r io.Reader, window int64, dict []byte) (*zstd.Decoder, error) {
	opts := []zstd.DOption{
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(uint64(max(window, format.MinWindow))),
		zstd.WithDecoderMaxMemory(uint64(max(window, format.MinWindow)) * 2),
	}
	if dict != nil {
		opts = append(opts, zstd.WithDecoderDictRaw(0, dict))
	}
	return zstd.NewReader(r, opts...)
}

// smallDict is the base size below which a file's own zstd-dict frame uses
// at most the "better" level: the best level's encoder copies 34 MB of
// tables per dictionary, which cost 60% of a Debian diff's time (600 small
// files), and compressed no smaller there (489.7 KB at "better" against
// 565.0 KB). Shared frames (dictGroups) are few and keep the level.
const smallDict = 1 << 20

// encodeZstdDict compresses target with base as raw dictionary, in a
// frame whose window is window (what a device must allow).
func encodeZstdDict(base, target []byte, level zstd.EncoderLevel) (blob []byte, window int64, err error) {
	window = windowFor(int64(len(base)), int64(len(target)))
	var buf bytes.Buffer
	enc, err := getEncoder(&buf, level, window, base)
	if err != nil {
		return nil, 0, err
	}
	if _, err := enc.Write(target); err != nil {
		enc.Close()
		return nil, 0, err
	}
	if err := enc.Close(); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), window, nil
}

// brotliWindowBits is the brotli window (1 MiB): a device decodes in it.
const brotliWindowBits = 20

// patchCoder says how to compress bsdiff streams: zstd at a level, or
// brotli at a quality.
type patchCoder struct {
	name    string // CoderZstd or CoderBrotli
	level   zstd.EncoderLevel
	quality int
}

// patchWindow is the zstd window of a compressed patch of raw bytes.
func patchWindow(raw int64) int64 { return windowFor(0, raw*2+64) } // capped: see windowFor

// patchCompressor returns the writer that compresses a bsdiff stream of
// size bytes.
func patchCompressor(w io.Writer, c patchCoder, size int64) (io.WriteCloser, error) {
	if c.name == CoderBrotli {
		return brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: c.quality, LGWin: brotliWindowBits}), nil
	}
	return getEncoder(w, c.level, patchWindow(size), nil)
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

// compressPatch compresses a raw streaming bsdiff (FORMAT.md) with coder.
func compressPatch(raw []byte, coder patchCoder) ([]byte, error) {
	var buf bytes.Buffer
	enc, err := patchCompressor(&buf, coder, int64(len(raw)))
	if err != nil {
		return nil, err
	}
	// Feed it in pieces: andybalholm/brotli compresses one huge Write
	// worse (3% on a 1.2 MB binary) than the same bytes in pieces.
	if _, err := (&pieceWriter{w: enc, piece: 64 << 10}).Write(raw); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rawPatch is an uncompressed streaming bsdiff and what goes before it in
// the op's blob (bsdiff-x86's transform parameters).
type rawPatch struct {
	prefix, raw []byte
	expanded    int64 // bsdiff-x86: size of the transformed target
	controls    int64 // control triples
}

// transform names the machine code of bsdiff-x86's target Params (the
// first block of the prefix), "" if none.
func (rp *rawPatch) transform() string {
	n, k := binary.Uvarint(rp.prefix)
	if k <= 0 || uint64(len(rp.prefix)-k) < n {
		return ""
	}
	var xp exefilter.Params
	if xp.UnmarshalBinary(rp.prefix[k:k+int(n)]) != nil || len(xp.Layout.Code) == 0 || xp.Layout.Forms&^exefilter.FormSymtab == 0 {
		return ""
	}
	switch {
	case xp.Layout.Machine == exefilter.MachineARM64:
		return "arm64"
	case xp.Layout.Machine == exefilter.MachineARM && xp.Layout.Forms&exefilter.FormT32Call != 0:
		return "thumb"
	case xp.Layout.Machine == exefilter.MachineARM:
		return "arm"
	}
	return "x86-64"
}

// encode returns the op blob with the patch compressed by coder, and the
// zstd window a device needs for it (0 for brotli, whose window is fixed).
func (rp *rawPatch) encode(coder patchCoder) ([]byte, int64, error) {
	b, err := compressPatch(rp.raw, coder)
	if err != nil {
		return nil, 0, err
	}
	window := int64(0)
	if coder.name == CoderZstd {
		window = patchWindow(int64(len(rp.raw)))
	}
	return append(append([]byte{}, rp.prefix...), b...), window, nil
}

// rawEmitter collects an uncompressed bsdiff in the streaming form (one
// blob per op, manifest versions 1-2) or the split form (solid streams,
// version 3).
type rawEmitter interface {
	bsdiff.Emitter
	pos() int64
	bytes() ([]byte, error)
}

type streamRaw struct {
	buf bytes.Buffer
	em  *bsdiff.StreamEmitter
}

func newStreamRaw(size int) *streamRaw {
	s := &streamRaw{}
	s.buf.Grow(size + size/8 + 64)
	s.em = bsdiff.NewStreamEmitter(&s.buf)
	return s
}
func (s *streamRaw) EmitControl(c bsdiff.Control) error { return s.em.EmitControl(c) }
func (s *streamRaw) EmitDiff(p []byte) error            { return s.em.EmitDiff(p) }
func (s *streamRaw) EmitExtra(p []byte) error           { return s.em.EmitExtra(p) }
func (s *streamRaw) pos() int64                         { return s.em.Pos }
func (s *streamRaw) bytes() ([]byte, error) {
	err := s.em.Flush() // before Bytes: the emitter buffers
	return s.buf.Bytes(), err
}

type splitRaw struct{ bsdiff.SplitEmitter }

func (s *splitRaw) pos() int64             { return s.Pos }
func (s *splitRaw) bytes() ([]byte, error) { return s.Bytes(), nil }

func newRaw(split bool, size int) rawEmitter {
	if split {
		return &splitRaw{}
	}
	return newStreamRaw(size)
}

// bsdiffRaw computes the uncompressed bsdiff of target against base, in
// the split form or the streaming one. Callers compress it once per coder
// tried, so the suffix array is built once per file. controls is the
// number of control triples.
func bsdiffRaw(ctx context.Context, base, target []byte, split bool) (raw []byte, controls int64, err error) {
	em := newRaw(split, len(target))
	c := &controlCounter{rawEmitter: em}
	if err := bsdiff.Diff(ctx, base, target, c); err != nil {
		return nil, 0, err
	}
	raw, err = em.bytes()
	return raw, c.n, err
}

// controlCounter counts the control triples going through it.
type controlCounter struct {
	rawEmitter
	n int64
}

func (c *controlCounter) EmitControl(ctl bsdiff.Control) error {
	c.n++
	return c.rawEmitter.EmitControl(ctl)
}

// bsdiffChunkedRaw is bsdiffRaw with bounded memory for files too big to
// diff whole: the target is cut into chunks, each diffed against the base
// window around the same offset (half a chunk either side), and the results
// are joined into one ordinary bsdiff by control triples that only move
// the base position. Memory is that of a 2-chunk diff.
func bsdiffChunkedRaw(ctx context.Context, base, target []byte, chunk int, split bool) (raw []byte, controls int64, err error) {
	if chunk < 1 {
		return nil, 0, fmt.Errorf("chunk size %d", chunk)
	}
	em := newRaw(split, len(target))
	c := &controlCounter{rawEmitter: em}
	for off := 0; off < len(target); off += chunk {
		end := min(off+chunk, len(target))
		lo := min(max(0, off-chunk/2), len(base))
		hi := min(len(base), end+chunk/2)
		// Move the base position to the window's start.
		if err := c.EmitControl(bsdiff.Control{Seek: int64(lo) - em.pos()}); err != nil {
			return nil, 0, err
		}
		if err := bsdiff.Diff(ctx, base[lo:hi], target[off:end], c); err != nil {
			return nil, 0, err
		}
	}
	raw, err = em.bytes()
	return raw, c.n, err
}

// bsdiffX86Raw is bsdiffRaw on ELF files made diffable by two exact,
// reversible transforms (FORMAT.md, encoder bsdiff-x86): exefilter (x86-64
// call and RIP-relative targets made absolute, symbol values delta-coded),
// then zsections (zlib-compressed sections such as Go's DWARF expanded).
// The op's blob is prefix ‖ the compressed raw patch, where prefix =
// uvarint(n) ‖ exefilter.Params of the target ‖ uvarint(n) ‖
// zsections.Params of the base ‖ uvarint(n) ‖ zsections.Params of the
// target, and raw is the streaming bsdiff of E(T(base)) to E(T(target)).
// ok is false for files neither transform applies to; expanded is the size
// of E(T(target)), what the patcher writes.
func bsdiffX86Raw(ctx context.Context, base, target []byte, split bool, forms exefilter.Forms) (prefix, raw []byte, controls, expanded int64, ok bool, err error) {
	tTarget, xp, err := exefilter.Encode(target, forms)
	if err != nil {
		return nil, nil, 0, 0, false, nil
	}
	// The base under the target's forms, as the device analyzes it.
	lo := exefilter.Analyze(bytes.NewReader(base), int64(len(base)), xp.Layout.Forms)
	tBase, _, err := exefilter.EncodeLayout(base, lo)
	if err != nil {
		return nil, nil, 0, 0, false, nil
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
		return nil, nil, 0, 0, false, nil
	}
	tBase, tTarget = nil, nil // let the collector have them before the suffix array
	for _, m := range []encoding.BinaryMarshaler{xp, zBase, zTarget} {
		pb, err := m.MarshalBinary()
		if err != nil {
			return nil, nil, 0, 0, false, err
		}
		prefix = binary.AppendUvarint(prefix, uint64(len(pb)))
		prefix = append(prefix, pb...)
	}
	raw, controls, err = bsdiffRaw(ctx, eBase, eTarget, split)
	if err != nil {
		return nil, nil, 0, 0, false, err
	}
	return prefix, raw, controls, int64(len(eTarget)), true, nil
}
