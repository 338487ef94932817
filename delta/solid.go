package delta

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math/bits"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/ctxio"
	"golang.org/x/sync/errgroup"
)

// Solid streams (FORMAT.md, manifest version 3): the bytes a delta must
// carry — new files' contents and the residues of changed files against
// their bases — are written one after the other into a few streams and
// compressed as one each, so a change repeated in several files (an npm
// package's dist/ copies, the same text in two Debian packages) and
// content shared between new files is paid for about once.

// maxStreamWindow is the largest window a stream's codec may use: the
// device holds this much history while decoding. 4 MiB: the toolchain
// apply peaked at 33.0 MiB RSS with 8 MiB and at 30.9 MiB with 4, for 0.02%
// more bytes (apt pair: 0.3% more).
const maxStreamWindow = 4 << 20

// brotliQuality picks the brotli quality for a stream of raw bytes:
// quality 11 is the smallest and slowest (about 1 MB/s in Go on
// residues), quality 10 about twice as fast and 5-8% bigger, 9 about 7
// times as fast as 10 and another 7% bigger (npm pair's stream: 18.0, 19.5
// and 20.9 KB). Big streams get the faster ones so a diff's time stays
// within about 1.5x of the per-file encoders'.
func brotliQuality(raw int64) int {
	switch {
	case raw <= 32<<20:
		return 11
	case raw <= 96<<20:
		return 10
	}
	return 9
}

// brotliWindowBits is the smallest brotli window covering raw bytes, within
// maxStreamWindow.
func streamWindowBits(raw int64) int {
	b := 10
	if raw > 1<<10 {
		b = 64 - bits.LeadingZeros64(uint64(raw-1))
	}
	return min(b, bits.TrailingZeros64(maxStreamWindow))
}

// compressedStream is a stream compressed with one codec.
type compressedStream struct {
	path   string
	size   int64
	codec  string
	window int64
}

// compressStream compresses the raw stream in file raw (n bytes) with every
// candidate codec at once and keeps the smallest (ties: zstd, which
// decodes faster). The losers' files are removed.
func compressStream(ctx context.Context, raw string, n int64, level zstd.EncoderLevel, brotliOn bool, work string) (compressedStream, error) {
	type cand struct {
		codec string
		run   func(w io.Writer) (int64, error)
	}
	zwin := windowFor(0, n)
	cands := []cand{{CodecZstd, func(w io.Writer) (int64, error) {
		enc, err := newEncoder(w, level, zwin, nil)
		if err != nil {
			return 0, err
		}
		if err := copyFile(ctx, enc, raw); err != nil {
			enc.Close()
			return 0, err
		}
		return zwin, enc.Close()
	}}}
	if brotliOn {
		lgwin := streamWindowBits(n)
		cands = append(cands, cand{CodecBrotli, func(w io.Writer) (int64, error) {
			enc := brotli.NewWriterOptions(w, brotli.WriterOptions{Quality: brotliQuality(n), LGWin: lgwin})
			// Pieces: andybalholm/brotli compresses one huge Write worse.
			if err := copyFile(ctx, &pieceWriter{w: enc, piece: 64 << 10}, raw); err != nil {
				return 0, err
			}
			return 1 << lgwin, enc.Close()
		}})
	}
	out := make([]compressedStream, len(cands))
	g, ctx := errgroup.WithContext(ctx)
	for i, c := range cands {
		g.Go(func() error {
			f, err := os.CreateTemp(work, "stream-"+c.codec+"-")
			if err != nil {
				return err
			}
			defer f.Close()
			bw := bufio.NewWriterSize(f, 256<<10)
			cw := &countingWriter{w: bw}
			window, err := c.run(cw)
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return fmt.Errorf("stream with %s: %w", c.codec, err)
			}
			out[i] = compressedStream{path: f.Name(), size: cw.n, codec: c.codec, window: window}
			return f.Close()
		})
	}
	err := g.Wait()
	best := -1
	for i, c := range out {
		if c.path == "" {
			continue
		}
		if err == nil && (best < 0 || c.size < out[best].size) {
			best = i
		}
	}
	for i, c := range out {
		if c.path != "" && i != best {
			os.Remove(c.path)
		}
	}
	if err != nil {
		return compressedStream{}, err
	}
	return out[best], nil
}

// openStream returns the decompressed bytes of stream s read from r, as a
// byte reader (the split bsdiff parser reads controls byte by byte), and
// a function releasing the decoder.
func openStream(r io.Reader, s Stream, maxWindow int64) (*bufio.Reader, func(), error) {
	switch s.Codec {
	case CodecZstd:
		dec, err := newDecoder(r, min(s.Window, maxWindow), nil)
		if err != nil {
			return nil, nil, err
		}
		return bufio.NewReaderSize(dec, 32<<10), dec.Close, nil
	case CodecBrotli:
		// The decoder sizes its ring buffer from the stream's own header:
		// check that against the declared window first.
		br := bufio.NewReaderSize(r, 4<<10)
		first, err := br.Peek(2)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: brotli stream header: %v", ErrCorrupt, err)
		}
		if w := brotliWindow(first); w == 0 || w > s.Window {
			return nil, nil, fmt.Errorf("%w: the brotli stream wants a %d-byte window, the delta declares %d", ErrCorrupt, w, s.Window)
		}
		return bufio.NewReaderSize(brotli.NewReader(br), 32<<10), func() {}, nil
	}
	return nil, nil, fmt.Errorf("%w: unknown codec %q", ErrBadDelta, s.Codec)
}

// brotliWindow decodes the window size from the first bits of a brotli
// stream (RFC 7932 section 9.1, WBITS); 0 for the large-window extension,
// which streams here never use.
func brotliWindow(b []byte) int64 {
	x := uint(b[0]) | uint(b[1])<<8
	switch {
	case x&1 == 0:
		return 1 << 16
	case (x>>1)&7 != 0:
		return 1 << (17 + (x>>1)&7)
	}
	switch m := (x >> 4) & 7; m {
	case 0:
		return 1 << 17
	case 1:
		return 0 // large window
	default:
		return 1 << (8 + m)
	}
}

func copyFile(ctx context.Context, w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, ctxio.Reader(ctx, bufio.NewReaderSize(f, 256<<10)))
	return err
}

// pieceWriter hands w at most piece bytes per Write.
type pieceWriter struct {
	w     io.Writer
	piece int
}

func (p *pieceWriter) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		k := min(len(b), p.piece)
		m, err := p.w.Write(b[:k])
		n += m
		if err != nil {
			return n, err
		}
		b = b[k:]
	}
	return n, nil
}

// writeStreams puts every op but the zstd-dict ones into one solid stream,
// similar files next to each other, compresses it with the best codec and
// adds its blob.
func (d *differ) writeStreams(ctx context.Context, m *Manifest, plans []*planned, addBlob func([]byte, string) (int, error), track func(int64)) error {
	var members []int
	for k, p := range plans {
		if p.op.Encoder != EncZstdDict {
			members = append(members, k)
		}
	}
	if len(members) == 0 {
		return nil
	}
	keys := make(map[int]streamKey, len(members))
	for _, k := range members {
		key, err := d.streamKeyOf(ctx, plans[k])
		if err != nil {
			return err
		}
		keys[k] = key
	}
	slices.SortStableFunc(members, func(a, b int) int { return keys[a].compare(keys[b]) })
	for _, k := range members {
		m.Limits.MaxControls = max(m.Limits.MaxControls, plans[k].controls)
	}
	defer func() {
		for _, k := range members {
			if p := plans[k].residue; p != "" {
				os.Remove(p)
			}
		}
	}()
	rawPath := filepath.Join(d.work, "stream.raw")
	var regions []int64
	var n int64
	var err error
	if d.opts.Lean {
		// Version 5: columnar, unless the regions to spill would be more
		// than the device rebuilds (it refuses that).
		regions, n, err = d.writeColumnar(ctx, plans, members, rawPath)
		if err != nil {
			return err
		}
		if spilled := n - regions[format.RegionLiterals]; spilled > m.Limits.TotalOutput {
			regions = nil
		}
	}
	var cs compressedStream
	if regions != nil {
		d.progress(PhaseWrite, 0, n)
		if cs, err = compressStream(ctx, rawPath, n, d.level(), d.opts.BrotliQuality != 0, d.work); err != nil {
			return err
		}
	}
	// The interleaved layout, where it is the only one or may be smaller:
	// a small stream has too few numbers of each kind for the columns to
	// pay for their declared sizes.
	if regions == nil || n <= maxInterleavedTry {
		in, err := d.writeInterleaved(ctx, plans, members, rawPath)
		if err != nil {
			return err
		}
		d.progress(PhaseWrite, 0, in)
		cs2, err := compressStream(ctx, rawPath, in, d.level(), d.opts.BrotliQuality != 0, d.work)
		if err != nil {
			return err
		}
		// The columns' sizes cost about two bytes each in the header.
		if regions == nil || cs2.size <= cs.size+2*format.NumRegions {
			if cs.path != "" {
				os.Remove(cs.path)
			}
			cs, n, regions = cs2, in, nil
		} else {
			os.Remove(cs2.path)
		}
	}
	os.Remove(rawPath)
	d.progress(PhaseWrite, n, n)
	i, err := addBlob(nil, cs.path) // read again when the body is written
	if err != nil {
		return err
	}
	track(cs.window)
	m.Streams = append(m.Streams, Stream{Blob: i, Codec: cs.codec, Window: cs.window, Ops: members, Regions: regions})
	m.Version = max(m.Version, 3)
	if regions != nil {
		m.Version = max(m.Version, 5)
	}
	// Attribute the stream's bytes to the encoders by the members' estimates.
	var est int64
	for _, k := range members {
		est += max(plans[k].cost, 1)
	}
	for _, k := range members {
		p := plans[k]
		p.op.Blob, p.inStream = i, true
		share := cs.size * max(p.cost, 1) / est
		p.cost = share
		d.rep.OpBytes[p.op.Encoder] += share
	}
	d.rep.Streams = append(d.rep.Streams, StreamReport{Codec: cs.codec, Window: cs.window, Files: len(members), Raw: n, Bytes: cs.size})
	return nil
}

// Streams up to this many raw bytes are also compressed interleaved, and
// written so where that is smaller.
var maxInterleavedTry int64 = 256 << 10 // a variable for tests

// writeInterleaved writes the members' residues, one after the other, to
// a new file at path (FORMAT.md, "Solid streams") and returns its size.
func (d *differ) writeInterleaved(ctx context.Context, plans []*planned, members []int, path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 256<<10)
	var n int64
	for _, k := range members {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		p := plans[k]
		rc, err := d.residueOf(ctx, p)
		if err == nil {
			var c int64
			c, err = io.Copy(bw, rc)
			rc.Close()
			n += c
		}
		if err != nil {
			return 0, fmt.Errorf("stream member %s: %w", p.path, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	return n, f.Close()
}

// residueOf opens what member p puts into its stream: its residue file,
// or for a plain member its content.
func (d *differ) residueOf(ctx context.Context, p *planned) (io.ReadCloser, error) {
	if p.residue == "" {
		return d.store.Open(ctx, p.content)
	}
	return os.Open(p.residue)
}

// streamKey orders a stream's members so similar files are adjacent:
// executables together, then by extension, name without version, path.
type streamKey struct {
	class     int
	ext, stem string
	path      string
}

func (a streamKey) compare(b streamKey) int {
	return cmp.Or(cmp.Compare(a.class, b.class), cmp.Compare(a.ext, b.ext), cmp.Compare(a.stem, b.stem), cmp.Compare(a.path, b.path))
}

func (d *differ) streamKeyOf(ctx context.Context, p *planned) (streamKey, error) {
	name := path.Base(p.path)
	if p.op.Gzip != nil {
		name = strings.TrimSuffix(name, ".gz")
	}
	k := streamKey{class: 1, ext: strings.ToLower(path.Ext(name)), stem: versionStem(name), path: p.path}
	if p.op.Encoder == EncBsdiffX86 {
		k.class = 0
		return k, nil
	}
	elf, err := d.isELF(ctx, p.content)
	if elf {
		k.class = 0
	}
	return k, err
}

// isELF reports whether the stored payload dg starts with the ELF magic.
func (d *differ) isELF(ctx context.Context, dg digest.Digest) (bool, error) {
	rc, err := d.store.Open(ctx, dg)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	var magic [4]byte
	_, err = io.ReadFull(rc, magic[:])
	return err == nil && string(magic[:]) == "\x7fELF", nil
}
