package delta

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/skiff-dev/skiff/delta/exefilter"
)

func (d *differ) level() zstd.EncoderLevel { return zstd.EncoderLevel(d.opts.Level) }

// encodeAll picks the smallest encoding of every planned op, in parallel,
// within the memory cap. Results do not depend on the schedule.
func (d *differ) encodeAll(ctx context.Context, plans []*planned) error {
	if d.opts.Gunzip {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(d.opts.Jobs)
		for _, p := range plans {
			g.Go(func() error { return d.gunzipOp(gctx, p) })
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	sem := semaphore.NewWeighted(d.opts.MemoryCap)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(d.opts.Jobs)
	// Biggest first, so the long ones overlap instead of ending alone.
	order := slices.Clone(plans)
	slices.SortStableFunc(order, func(a, b *planned) int { return cmp.Compare(b.size, a.size) })
	var encoded atomic.Int64
	total := int64(0)
	for _, p := range order {
		if p.base != "" {
			total++
		}
	}
	d.progress(PhaseEncode, 0, total)
	for _, p := range order {
		if p.base == "" {
			if d.opts.Solid && d.opts.BsdiffX86 && p.size >= minNewExecutable {
				g.Go(func() error { return d.encodeNew(ctx, p, sem) })
			}
			continue // plain zstd, in the pack or a stream
		}
		g.Go(func() error {
			// bsdiff holds base, target, the suffix array (4 bytes per base
			// byte) and its output; bsdiff-x86 also the transformed pair;
			// zstd-dict holds base and target.
			size := max(p.size, p.baseSize)
			need := 9*size + 16<<20
			useBsdiff := (d.opts.Bsdiff || d.opts.BsdiffX86) && need <= d.opts.MemoryCap
			if !useBsdiff {
				need = 3*size + 16<<20
			}
			chunk := 0
			if !useBsdiff && d.opts.Bsdiff {
				// Too big to diff whole: diff it in chunks that fit.
				chunk = int((d.opts.MemoryCap - 16<<20) / 18)
				useBsdiff = chunk >= 1<<20
				need = d.opts.MemoryCap
			}
			need = min(need, d.opts.MemoryCap)
			if err := sem.Acquire(ctx, need); err != nil {
				return err
			}
			defer sem.Release(need)
			if err := d.encodeOne(ctx, p, useBsdiff, chunk); err != nil {
				return err
			}
			d.progress(PhaseEncode, encoded.Add(1), total)
			return nil
		})
	}
	return g.Wait()
}

func (d *differ) readPayload(ctx context.Context, dg digest.Digest) ([]byte, error) {
	rc, err := d.store.Open(ctx, dg)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// plainZstdSize is the size of target on its own in the pack's zstd.
func plainZstdSize(target []byte, level zstd.EncoderLevel) (int, error) {
	n := countingWriter{w: io.Discard}
	enc, err := getEncoder(&n, level, windowFor(0, int64(len(target))), nil)
	if err != nil {
		return 0, err
	}
	if _, err := enc.Write(target); err != nil {
		enc.Close()
		return 0, err
	}
	err = enc.Close()
	return int(n.n), err
}

// encodeOne picks the smallest encoding of one file; chunk > 0 asks for the
// bounded-memory (chunked) bsdiff only. In solid mode (manifest version 3)
// a bsdiff winner keeps its uncompressed split residue for its stream, and
// the choice weighs a residue at what it costs in a stream: solidShare of
// its size compressed alone (the stream's codec is stronger and shares
// context across files).
func (d *differ) encodeOne(ctx context.Context, p *planned, useBsdiff bool, chunk int) error {
	base, err := d.readPayload(ctx, p.base)
	if err != nil {
		return err
	}
	tgt, err := d.readPayload(ctx, p.content)
	if err != nil {
		return err
	}
	solid := d.opts.Solid
	bestSize := math.MaxInt
	p.op.Encoder, p.blob = EncZstd, nil
	// Pick the encoder with zstd-coded patches, then, when asked, try
	// brotli on the winner only (it is slow). Each variant is diffed once:
	// its raw stream is kept for the brotli retry.
	zc := patchCoder{name: CoderZstd, level: d.level()}
	var winner *rawPatch
	consider := func(enc string, rp *rawPatch) error {
		b, window, err := rp.encode(zc)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", p.path, enc, err)
		}
		size := len(b)
		if solid {
			size = int(float64(size) * solidShare)
			b = nil
		}
		if size < bestSize {
			bestSize, p.op.Encoder, p.blob, p.expanded, p.window, winner = size, enc, b, rp.expanded, window, rp
			p.transform = rp.transform()
		}
		return nil
	}
	switch {
	case useBsdiff && chunk > 0:
		raw, n, err := bsdiffChunkedRaw(ctx, base, tgt, chunk, solid)
		if err != nil {
			return fmt.Errorf("%s: chunked bsdiff: %w", p.path, err)
		}
		if err := consider(EncBsdiff, &rawPatch{raw: raw, controls: n}); err != nil {
			return err
		}
	case useBsdiff:
		x86 := false
		if d.opts.BsdiffX86 {
			prefix, raw, n, expanded, ok, err := bsdiffX86Raw(ctx, base, tgt, solid, d.forms())
			if err != nil {
				return fmt.Errorf("%s: bsdiff-x86: %w", p.path, err)
			}
			if ok {
				x86 = true
				if err := consider(EncBsdiffX86, &rawPatch{prefix: prefix, raw: raw, expanded: expanded, controls: n}); err != nil {
					return err
				}
			}
		}
		if d.opts.Bsdiff && (!x86 || d.opts.Exhaustive) {
			raw, n, err := bsdiffRaw(ctx, base, tgt, solid)
			if err != nil {
				return fmt.Errorf("%s: bsdiff: %w", p.path, err)
			}
			if err := consider(EncBsdiff, &rawPatch{raw: raw, controls: n}); err != nil {
				return err
			}
		}
	}
	// zstd-dict: its encoder indexes the whole base first, which on a big
	// base costs more than it can win over a patch already under 1/64 of
	// the file.
	if d.opts.ZstdDict && int64(len(base)) <= d.opts.MaxDictBase &&
		(d.opts.Exhaustive || len(base) <= 256<<10 || bestSize > len(tgt)/64) {
		level := d.level()
		if len(base) < smallDict {
			level = min(level, zstd.SpeedBetterCompression)
		}
		b, window, err := encodeZstdDict(base, tgt, level)
		if err != nil {
			return fmt.Errorf("%s: zstd-dict: %w", p.path, err)
		}
		if len(b) < bestSize {
			bestSize, p.op.Encoder, p.blob, p.window, p.expanded, winner = len(b), EncZstdDict, b, window, 0, nil
		}
	}
	// Plain zstd, the fallback. Its best level costs as much as a suffix
	// array on big files: skip it where even a fast zstd is 4x bigger than
	// the best so far (the best level is never that much smaller).
	z, err := plainZstdSize(tgt, zstd.SpeedFastest)
	if err != nil {
		return err
	}
	if d.level() != zstd.SpeedFastest && (d.opts.Exhaustive || z < 4*bestSize) {
		if z, err = plainZstdSize(tgt, d.level()); err != nil {
			return err
		}
	}
	zs := z
	if solid {
		zs = int(float64(z) * solidShare)
	}
	if zs < bestSize {
		bestSize, p.op.Encoder, p.blob, p.expanded, winner = zs, EncZstd, nil, 0, nil
	}
	p.zstdSize = int64(z)
	if solid {
		if winner != nil {
			p.controls = winner.controls
			if err := d.keepResidue(p, winner); err != nil {
				return err
			}
		}
		p.cost = int64(bestSize)
	} else if d.opts.BrotliQuality != 0 && winner != nil {
		b, _, err := winner.encode(patchCoder{name: CoderBrotli, quality: d.opts.BrotliQuality})
		if err != nil {
			return fmt.Errorf("%s: %s with brotli: %w", p.path, p.op.Encoder, err)
		}
		if len(b) < bestSize {
			bestSize, p.op.Coder, p.blob, p.window = len(b), CoderBrotli, b, 0
		}
	}
	if p.op.Encoder == EncZstd {
		p.dropBase()
	}
	return nil
}

// minNewExecutable is the smallest new file tried as a new executable:
// below it the transform parameters cost about what they win.
const minNewExecutable = 16 << 10

// forms are the executable transforms the delta may use: the ARM ones
// need manifest version 6 (Options.Keep).
func (d *differ) forms() exefilter.Forms {
	if d.opts.Keep && d.opts.Lean && d.opts.Solid {
		return exefilter.DefaultForms
	}
	return exefilter.DefaultForms & exefilter.X86Forms
}

// encodeNew carries a new x86-64 ELF file through bsdiff-x86's transforms
// against the empty base (manifest version 4, FORMAT.md "New
// executables") where that residue compresses smaller than the file: it
// holds the file, its transformed and expanded forms and the residue.
// Other new files stay plain zstd stream members.
func (d *differ) encodeNew(ctx context.Context, p *planned, sem *semaphore.Weighted) error {
	if elf, err := d.isELF(ctx, p.content); err != nil || !elf {
		return err
	}
	need := 6*p.size + 16<<20
	if need > d.opts.MemoryCap {
		return nil
	}
	if err := sem.Acquire(ctx, need); err != nil {
		return err
	}
	defer sem.Release(need)
	tgt, err := d.readPayload(ctx, p.content)
	if err != nil {
		return err
	}
	prefix, raw, n, expanded, ok, err := bsdiffX86Raw(ctx, nil, tgt, true, d.forms())
	if err != nil || !ok {
		return err
	}
	z, err := plainZstdSize(tgt, d.level())
	if err != nil {
		return err
	}
	x, err := plainZstdSize(append(prefix, raw...), d.level())
	if err != nil || x >= z {
		return err
	}
	rp := &rawPatch{prefix: prefix, raw: raw, expanded: expanded, controls: n}
	p.op.Encoder, p.expanded, p.controls, p.zstdSize, p.transform = EncBsdiffX86, expanded, n, int64(z), rp.transform()
	p.cost = int64(float64(x) * solidShare)
	return d.keepResidue(p, rp)
}

// solidShare is what a residue or a new file costs in a solid stream, as a
// share of its size compressed alone with zstd: the stream's codec
// (brotli 11 where it wins) and the context shared across files take about
// a quarter off (0.72-0.80 measured on the npm, apt and toolchain pairs).
const solidShare = 0.75

// keepResidue writes p's residue (prefix ‖ split bsdiff) to a file of the
// work directory, where the stream writer picks it up.
func (d *differ) keepResidue(p *planned, rp *rawPatch) error {
	f, err := os.CreateTemp(d.work, "residue-")
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(rp.prefix); err != nil {
		return err
	}
	if _, err := f.Write(rp.raw); err != nil {
		return err
	}
	p.residue, p.residueSize = f.Name(), int64(len(rp.prefix)+len(rp.raw))
	return f.Close()
}

// dropBase makes p a plain op: no base.
func (p *planned) dropBase() {
	p.op.Base, p.op.BaseDigest, p.base, p.baseSize = -1, "", "", 0
	if p.op.Gzip != nil {
		p.op.Gzip.BaseSize = 0
	}
}
