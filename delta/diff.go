package delta

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/skiff-dev/skiff/delta/gnugzip"
	"github.com/skiff-dev/skiff/layerfs"
)

// Options configure Diff. The zero value is not valid; use DefaultOptions.
type Options struct {
	// Encoders allowed for changed files (plain zstd is always allowed).
	Bsdiff, BsdiffX86, ZstdDict bool
	// Level is the zstd level: 1 fastest .. 4 best (klauspost levels).
	Level int
	// BrotliQuality, when not 0, also compresses the winning bsdiff stream
	// with brotli at this quality (9 costs about what zstd does and is about
	// a fifth smaller on patches; 11 is a tenth smaller again, ~50× slower)
	// and keeps it where smaller.
	BrotliQuality int
	// Gunzip diffs gzip files by their content where delta/gnugzip
	// re-creates them exactly (GNU gzip's output: Debian's changelogs and
	// manual pages), and the device compresses them again.
	Gunzip bool
	// Exhaustive tries every encoder on every file. Otherwise ELF files the
	// x86 transform applies to skip plain bsdiff (it wins by tens of bytes
	// where it wins at all, and costs a second suffix array), and the
	// best-level plain zstd baseline is skipped where a fast zstd shows it
	// cannot win.
	Exhaustive bool
	// Jobs is how many files are encoded at once (default GOMAXPROCS).
	Jobs int
	// MemoryCap bounds the memory of concurrent per-file encoders, in bytes;
	// a file whose encoding alone would need more skips bsdiff.
	MemoryCap int64
	// MaxDictBase is the largest base payload used as a zstd dictionary: a
	// device holds it in memory while applying.
	MaxDictBase int64
	// Manifest makes the delta carry the target's registry manifest and a
	// gzip recipe per layer, so apply reproduces the manifest digest. Only
	// meaningful for targets that came with a real manifest (registry, OCI
	// layout): a docker-archive's is made up by the reader.
	Manifest bool
	// WorkDir holds the content store and temporary blobs (default: a new
	// temporary directory, removed afterwards).
	WorkDir string
	// Signers sign the delta's header (ed25519 keys, e.g. an
	// ed25519.PrivateKey from sign.LoadPrivateKey); none: unsigned.
	Signers []crypto.Signer

	// allowUnsafePaths skips the target layers' path check (tests make
	// deltas that Apply must refuse with it).
	allowUnsafePaths bool
}

// DefaultOptions are the settings `skiff diff` uses.
func DefaultOptions() Options {
	return Options{Bsdiff: true, BsdiffX86: true, ZstdDict: true, Gunzip: true, Level: 4, BrotliQuality: 9, Jobs: runtime.GOMAXPROCS(0),
		MemoryCap: 256 << 20, MaxDictBase: 2 << 20}
}

func (o *Options) check() error {
	if o.Level < 1 || o.Level > 4 {
		return fmt.Errorf("zstd level %d: must be 1..4", o.Level)
	}
	if o.BrotliQuality != 0 && (o.BrotliQuality < 2 || o.BrotliQuality > 11) {
		return fmt.Errorf("brotli quality %d: must be 0 (off) or 2..11", o.BrotliQuality)
	}
	if o.Jobs < 1 {
		return fmt.Errorf("jobs %d: must be at least 1", o.Jobs)
	}
	if o.MemoryCap < 1<<20 {
		return fmt.Errorf("memory cap %d: must be at least 1 MiB", o.MemoryCap)
	}
	return nil
}

// Report summarises a delta.
type Report struct {
	Layers          int              `json:"layers"`
	LayersReused    int              `json:"layers_reused"`
	Files           int              `json:"files"`                    // target payloads in changed layers
	FilesInBase     int              `json:"files_in_base"`            // of those, already on the device
	Ops             map[string]int   `json:"ops"`                      // count per encoder
	OpBytes         map[string]int64 `json:"op_bytes"`                 // delta bytes per encoder
	PayloadBytes    map[string]int64 `json:"payload_bytes"`            // target bytes made per encoder
	SkeletonBytes   int64            `json:"skeleton_bytes"`           // compressed skeletons
	HeaderBytes     int64            `json:"header_bytes"`             // magic, manifest, signature
	DeltaBytes      int64            `json:"delta_bytes"`              // the whole delta
	ChangedBlobs    int64            `json:"changed_layer_blob_bytes"` // compressed size of the target's changed layers
	Reproducible    bool             `json:"manifest_reproducible"`
	NotReproducible string           `json:"not_reproducible,omitempty"` // why not, when asked for
	// Gunzipped counts the gzip files diffed by their content (and
	// compressed again by the device with GNU gzip's algorithm).
	Gunzipped int `json:"gunzipped"`
	// Largest lists the files that cost the most, largest first.
	Largest []FileCost `json:"largest"`
}

// FileCost is what one changed file costs in the delta. Files that share a
// frame are counted at what they cost on their own.
type FileCost struct {
	Path    string `json:"path"`
	Encoder string `json:"encoder"`
	Size    int64  `json:"size"`
	Bytes   int64  `json:"bytes"`
}

// Source is an image to diff, as layerfs opens it.
type Source = v1.Image

// Diff writes a delta from base to target into w.
func Diff(ctx context.Context, base, target Source, w io.Writer, opts Options) (*Report, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	work := opts.WorkDir
	if work == "" {
		dir, err := os.MkdirTemp("", "skiff-diff-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		work = dir
	}
	store, err := layerfs.OpenStore(filepath.Join(work, "store"))
	if err != nil {
		return nil, err
	}
	d := &differ{opts: opts, store: store, work: work, rep: &Report{
		Ops: map[string]int{}, OpBytes: map[string]int64{}, PayloadBytes: map[string]int64{}}}
	return d.run(ctx, base, target, w)
}

type differ struct {
	opts  Options
	store *layerfs.Store
	work  string
	rep   *Report
}

// layerInfo is a disassembled layer.
type layerInfo struct {
	diffID   digest.Digest
	size     int64
	skeleton string // raw skeleton file
	files    []layerfs.File
}

// disassemble takes layer l apart into the store and a skeleton file;
// paths, if set, checks every entry (target layers, FORMAT.md "Path
// safety").
func (d *differ) disassemble(ctx context.Context, l v1.Layer, name string, paths *layerfs.PathChecker) (*layerInfo, error) {
	p := filepath.Join(d.work, name+".skel")
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := layerfs.DisassembleLayer(ctx, l, d.store, f)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	li := &layerInfo{diffID: st.DiffID, size: st.TarSize, skeleton: p}
	err = layerfs.Walk(f, func(file layerfs.File) error {
		if paths != nil {
			if err := paths.Check(&file.Entry); err != nil {
				return err
			}
		}
		if file.Payload != "" {
			li.files = append(li.files, file)
		}
		return nil
	})
	return li, err
}

// disassembleAll disassembles every base layer and every target layer the
// base lacks (by the configs' diff_ids), in parallel.
func (d *differ) disassembleAll(ctx context.Context, baseLayers, targetLayers []v1.Layer) (baseInfo, targetInfo []*layerInfo, err error) {
	baseInfo = make([]*layerInfo, len(baseLayers))
	targetInfo = make([]*layerInfo, len(targetLayers))
	var baseIDs, targetIDs []v1.Hash
	for _, l := range baseLayers {
		h, err := l.DiffID()
		if err != nil {
			return nil, nil, fmt.Errorf("base layer: %w", err)
		}
		baseIDs = append(baseIDs, h)
	}
	for i, l := range targetLayers {
		h, err := l.DiffID()
		if err != nil {
			return nil, nil, fmt.Errorf("target layer %d: %w", i, err)
		}
		targetIDs = append(targetIDs, h)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, d.opts.Jobs))
	for i, l := range baseLayers {
		g.Go(func() error {
			li, err := d.disassemble(gctx, l, fmt.Sprintf("base-%d", i), nil)
			if err != nil {
				return fmt.Errorf("base layer %d: %w", i, err)
			}
			baseInfo[i] = li
			return nil
		})
	}
	for i, l := range targetLayers {
		if slices.Contains(baseIDs, targetIDs[i]) {
			continue
		}
		g.Go(func() error {
			var paths *layerfs.PathChecker
			if !d.opts.allowUnsafePaths {
				paths = layerfs.NewPathChecker(i)
			}
			li, err := d.disassemble(gctx, l, fmt.Sprintf("target-%d", i), paths)
			if err != nil {
				return fmt.Errorf("target layer %d: %w", i, err)
			}
			targetInfo[i] = li
			return nil
		})
	}
	return baseInfo, targetInfo, g.Wait()
}

// planned is one op being encoded.
type planned struct {
	op   Op
	path string
	// content is what the op makes (size bytes): the target payload, or
	// for a gzip op its decompressed content; base (baseSize bytes) is
	// what it is encoded against: the base payload or its content.
	content, base  digest.Digest
	size, baseSize int64
	zstdSize       int64  // plain zstd size on its own
	expanded       int64  // bsdiff-x86: size of the transformed target
	window         int64  // zstd window the blob needs
	blob           []byte // encoded bytes (nil for the pack members)
}

func (d *differ) run(ctx context.Context, base, target Source, w io.Writer) (*Report, error) {
	m := &Manifest{Version: 1}
	// Base identity and content.
	cd, err := base.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("base config: %w", err)
	}
	m.Base.ConfigDigest = digest.Digest(cd.String())
	baseLayers, err := layerfs.ConfigLayers(base)
	if err != nil {
		return nil, fmt.Errorf("base layers: %w", err)
	}
	cfg, err := target.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("target config: %w", err)
	}
	targetLayers, err := layerfs.ConfigLayers(target)
	if err != nil {
		return nil, fmt.Errorf("target layers: %w", err)
	}
	baseInfo, targetInfo, err := d.disassembleAll(ctx, baseLayers, targetLayers)
	if err != nil {
		return nil, err
	}
	idx := newBaseIndex()
	inBase := map[digest.Digest]bool{}
	for _, li := range baseInfo {
		m.Base.DiffIDs = append(m.Base.DiffIDs, li.diffID)
		for _, f := range li.files {
			inBase[f.Payload] = true
			if f.IsRegular() && !f.Sparse {
				idx.add(baseFile{path: f.Name, digest: f.Payload, size: f.DataSize})
			}
		}
	}
	baseList := sortedDigests(inBase)
	m.Base.Payloads = len(baseList)
	baseIdx := make(map[digest.Digest]int, len(baseList))
	for i, dg := range baseList {
		baseIdx[dg] = i
	}
	// Target identity.
	m.Target.Config = cfg
	m.Target.ConfigDigest = digest.FromBytes(cfg)
	d.rep.Layers = len(targetLayers)
	var plans []*planned
	planOf := map[digest.Digest]bool{}
	for i, l := range targetLayers {
		h, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("target layer %d: %w", i, err)
		}
		did := digest.Digest(h.String())
		m.Target.DiffIDs = append(m.Target.DiffIDs, did)
		if j := slices.Index(m.Base.DiffIDs, did); j >= 0 {
			m.Layers = append(m.Layers, Layer{DiffID: did, Size: baseInfo[j].size, BaseLayer: &j, DictLayer: -1})
			m.Limits.TotalOutput += baseInfo[j].size
			d.rep.LayersReused++
			continue
		}
		if sz, err := l.Size(); err == nil {
			d.rep.ChangedBlobs += sz
		}
		li := targetInfo[i]
		m.Layers = append(m.Layers, Layer{DiffID: did, Size: li.size})
		m.Limits.TotalOutput += li.size
		for _, f := range li.files {
			d.rep.Files++
			if inBase[f.Payload] {
				d.rep.FilesInBase++
				continue
			}
			if planOf[f.Payload] {
				continue
			}
			planOf[f.Payload] = true
			p := &planned{op: Op{Target: f.Payload, Size: f.DataSize, Encoder: EncZstd, Base: -1}, path: f.Name,
				content: f.Payload, size: f.DataSize}
			if f.IsRegular() && !f.Sparse {
				if b, ok := idx.lookup(f.Name, f.DataSize); ok {
					p.op.BaseDigest, p.op.Base = b.digest, baseIdx[b.digest]
					p.base, p.baseSize = b.digest, b.size
				}
			}
			plans = append(plans, p)
		}
	}
	if err := d.encodeAll(ctx, plans); err != nil {
		return nil, err
	}
	if d.opts.Manifest {
		dist, why, err := distribution(ctx, target)
		if err != nil {
			return nil, err
		}
		m.Target.Distribution = dist
		d.rep.Reproducible, d.rep.NotReproducible = dist != nil, why
	}
	return d.write(ctx, m, plans, baseInfo, targetInfo, w)
}

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
	for _, p := range order {
		if p.base == "" {
			continue // plain zstd, in the pack
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
			return d.encodeOne(ctx, p, useBsdiff, chunk)
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
// bounded-memory (chunked) bsdiff only.
func (d *differ) encodeOne(ctx context.Context, p *planned, useBsdiff bool, chunk int) error {
	base, err := d.readPayload(ctx, p.base)
	if err != nil {
		return err
	}
	tgt, err := d.readPayload(ctx, p.content)
	if err != nil {
		return err
	}
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
		if len(b) < bestSize {
			bestSize, p.op.Encoder, p.blob, p.expanded, p.window, winner = len(b), enc, b, rp.expanded, window, rp
		}
		return nil
	}
	switch {
	case useBsdiff && chunk > 0:
		raw, err := bsdiffChunkedRaw(ctx, base, tgt, chunk)
		if err != nil {
			return fmt.Errorf("%s: chunked bsdiff: %w", p.path, err)
		}
		if err := consider(EncBsdiff, &rawPatch{raw: raw}); err != nil {
			return err
		}
	case useBsdiff:
		x86 := false
		if d.opts.BsdiffX86 {
			prefix, raw, expanded, ok, err := bsdiffX86Raw(ctx, base, tgt)
			if err != nil {
				return fmt.Errorf("%s: bsdiff-x86: %w", p.path, err)
			}
			if ok {
				x86 = true
				if err := consider(EncBsdiffX86, &rawPatch{prefix: prefix, raw: raw, expanded: expanded}); err != nil {
					return err
				}
			}
		}
		if d.opts.Bsdiff && (!x86 || d.opts.Exhaustive) {
			raw, err := bsdiffRaw(ctx, base, tgt)
			if err != nil {
				return fmt.Errorf("%s: bsdiff: %w", p.path, err)
			}
			if err := consider(EncBsdiff, &rawPatch{raw: raw}); err != nil {
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
	if z < bestSize {
		bestSize, p.op.Encoder, p.blob, p.expanded, winner = z, EncZstd, nil, 0, nil
	}
	p.zstdSize = int64(z)
	if d.opts.BrotliQuality != 0 && winner != nil {
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

// dropBase makes p a plain op: no base.
func (p *planned) dropBase() {
	p.op.Base, p.op.BaseDigest, p.base, p.baseSize = -1, "", "", 0
	if p.op.Gzip != nil {
		p.op.Gzip.BaseSize = 0
	}
}

// maxGunzip bounds the gzip payloads diffed by their content: the
// compressed size, and the content held in memory while ingesting it.
const (
	maxGunzipPayload = 16 << 20
	maxGunzipContent = 64 << 20
)

// gunzipOp turns p into a gzip op where its payload is a gzip file that
// gnugzip re-creates exactly: the op then makes the decompressed content,
// encoded against the base's decompressed content (or the pack's zstd
// where the base is not gzip). Files it does not apply to are left alone.
func (d *differ) gunzipOp(ctx context.Context, p *planned) error {
	if p.size < 18 || p.size > maxGunzipPayload {
		return nil
	}
	content, n, recipe, ok, err := d.gunzip(ctx, p.content, p.size, true)
	if err != nil || !ok {
		return err
	}
	p.op.Gzip = &GzipOp{Level: recipe.Level, Header: recipe.Header, Size: n}
	p.content, p.size = content, n
	if p.base == "" {
		return nil
	}
	bc, bn, _, ok, err := d.gunzip(ctx, p.base, p.baseSize, false)
	if err != nil {
		return err
	}
	if !ok {
		p.dropBase() // a gzip file whose base is not one: its content goes to the pack
		return nil
	}
	p.base, p.baseSize, p.op.Gzip.BaseSize = bc, bn, bn
	return nil
}

// gunzip stores the content of the gzip payload dg (size bytes) and
// returns its digest and size; with recipe, only where gnugzip re-creates
// the payload from it. ok is false for payloads that are not such gzip
// files (or are too big to hold).
func (d *differ) gunzip(ctx context.Context, dg digest.Digest, size int64, recipe bool) (content digest.Digest, n int64, rc gnugzip.Recipe, ok bool, err error) {
	if size > maxGunzipPayload {
		return "", 0, rc, false, nil
	}
	r, err := d.store.Open(ctx, dg)
	if err != nil {
		return "", 0, rc, false, err
	}
	defer r.Close()
	f, isFile := r.(*os.File)
	if !isFile {
		return "", 0, rc, false, fmt.Errorf("content store returned %T", r)
	}
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || magic != [2]byte{0x1f, 0x8b} {
		return "", 0, rc, false, nil
	}
	if recipe {
		if rc, err = gnugzip.DetectAt(f, size); err != nil {
			return "", 0, rc, false, nil // not reproducible: diff the gzip bytes
		}
	}
	cr, err := gnugzip.NewContentReader(f, size)
	if err != nil {
		return "", 0, rc, false, nil
	}
	defer cr.Close()
	b, err := io.ReadAll(io.LimitReader(cr, maxGunzipContent+1))
	if err != nil || len(b) > maxGunzipContent {
		return "", 0, rc, false, nil
	}
	content, err = d.store.Ingest(ctx, bytes.NewReader(b), int64(len(b)))
	return content, int64(len(b)), rc, err == nil, err
}

// write lays out the blobs (skeletons, pack, op blobs), then writes header
// and body.
func (d *differ) write(ctx context.Context, m *Manifest, plans []*planned, baseInfo, targetInfo []*layerInfo, w io.Writer) (*Report, error) {
	type blobSrc struct {
		data []byte // in memory
		file string // or on disk
	}
	var srcs []blobSrc
	addBlob := func(b []byte, file string) (int, error) {
		var dg digest.Digest
		var size int64
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			v := digest.SHA256.Digester()
			n, err := io.Copy(v.Hash(), f)
			if err != nil {
				return 0, err
			}
			dg, size = v.Digest(), n
		} else {
			dg, size = digest.FromBytes(b), int64(len(b))
		}
		m.Blobs = append(m.Blobs, Blob{Digest: dg, Size: size})
		srcs = append(srcs, blobSrc{data: b, file: file})
		return len(m.Blobs) - 1, nil
	}
	track := func(window int64) { m.Limits.MaxWindow = max(m.Limits.MaxWindow, window) }

	// Skeletons first: the device learns from them which payloads the ops make.
	for i, li := range targetInfo {
		if li == nil {
			continue
		}
		dict := bestDictLayer(li, baseInfo)
		m.Layers[i].DictLayer = dict
		b, window, rawSize, isDelta, plain, err := compressSkeleton(li.skeleton, baseInfo, dict, d.level())
		if err != nil {
			return nil, fmt.Errorf("skeleton of layer %d: %w", i, err)
		}
		m.Layers[i].SkeletonDelta, m.Layers[i].SkeletonPlain = isDelta, plain
		m.Limits.MaxSkeleton = max(m.Limits.MaxSkeleton, rawSize)
		j, err := addBlob(b, "")
		if err != nil {
			return nil, err
		}
		m.Layers[i].Skeleton = &j
		track(window)
		d.rep.SkeletonBytes += int64(len(b))
		sizes := []string{li.skeleton}
		if dict >= 0 {
			sizes = append(sizes, baseInfo[dict].skeleton)
		}
		for _, p := range sizes {
			if st, err := os.Stat(p); err == nil {
				m.Limits.MaxSkeleton = max(m.Limits.MaxSkeleton, st.Size())
			}
		}
	}
	// The pack: every plain-zstd payload, in ops order, as one frame.
	var packMembers []*planned
	for _, p := range plans {
		if p.op.Encoder == EncZstd {
			packMembers = append(packMembers, p)
		}
	}
	if len(packMembers) > 0 {
		packFile := filepath.Join(d.work, "pack.zst")
		window, err := d.writePack(ctx, packFile, packMembers)
		if err != nil {
			return nil, err
		}
		i, err := addBlob(nil, packFile)
		if err != nil {
			return nil, err
		}
		track(window)
		for _, p := range packMembers {
			p.op.Blob = i
		}
		d.rep.OpBytes[EncZstd] = m.Blobs[i].Size
	}
	// Small zstd-dict payloads share frames: their bases, concatenated, are
	// the dictionary of their targets, concatenated.
	groups, err := d.dictGroups(ctx, plans)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if p.op.Encoder == EncZstd {
			continue
		}
		if g := groups[p]; g != nil {
			if g.blob >= 0 {
				p.op.Blob = g.blob
				continue
			}
			i, err := addBlob(g.data, "")
			if err != nil {
				return nil, err
			}
			g.blob, p.op.Blob = i, i
			track(g.window)
			d.rep.OpBytes[EncZstdDict] += int64(len(g.data))
			continue
		}
		i, err := addBlob(p.blob, "")
		if err != nil {
			return nil, err
		}
		p.op.Blob = i
		d.rep.OpBytes[p.op.Encoder] += int64(len(p.blob))
		track(p.window)
	}
	for _, p := range plans {
		cost := int64(len(p.blob))
		if p.op.Encoder == EncZstd {
			cost = p.zstdSize
		}
		d.rep.Largest = append(d.rep.Largest, FileCost{Path: p.path, Encoder: p.op.Encoder, Size: p.op.Size, Bytes: cost})
	}
	sort.SliceStable(d.rep.Largest, func(i, j int) bool { return d.rep.Largest[i].Bytes > d.rep.Largest[j].Bytes })
	if len(d.rep.Largest) > 20 {
		d.rep.Largest = d.rep.Largest[:20]
	}
	for _, p := range plans {
		m.Ops = append(m.Ops, p.op)
		m.Limits.MaxPayload = max(m.Limits.MaxPayload, p.op.Size)
		m.Limits.MaxExpanded = max(m.Limits.MaxExpanded, p.op.Size, p.expanded)
		if g := p.op.Gzip; g != nil {
			m.Version = max(m.Version, 2)
			m.Limits.MaxExpanded = max(m.Limits.MaxExpanded, g.Size, g.BaseSize)
			d.rep.Gunzipped++
		}
		d.rep.Ops[p.op.Encoder]++
		d.rep.PayloadBytes[p.op.Encoder] += p.op.Size
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("internal error: the delta written would be invalid: %w", err)
	}
	hn, err := writeHeader(w, m, d.opts.Signers...)
	if err != nil {
		return nil, err
	}
	total := hn
	for _, s := range srcs {
		var n int64
		if s.file != "" {
			f, err := os.Open(s.file)
			if err != nil {
				return nil, err
			}
			n, err = io.Copy(w, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		} else {
			k, err := w.Write(s.data)
			if err != nil {
				return nil, err
			}
			n = int64(k)
		}
		total += n
	}
	d.rep.HeaderBytes = hn
	d.rep.DeltaBytes = total
	return d.rep, nil
}

// writePack writes the pack: the members' contents as one zstd frame,
// whose window (returned) is no bigger than the content needs.
func (d *differ) writePack(ctx context.Context, path string, members []*planned) (int64, error) {
	var total int64
	for _, p := range members {
		total += p.size
	}
	window := windowFor(0, total)
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	enc, err := newEncoder(f, d.level(), window, nil)
	if err != nil {
		return 0, err
	}
	for _, p := range members {
		rc, err := d.store.Open(ctx, p.content)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(enc, rc)
		rc.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := enc.Close(); err != nil {
		return 0, err
	}
	return window, f.Close()
}

// dictGroup is a zstd frame shared by several zstd-dict payloads.
type dictGroup struct {
	members        []*planned
	dictSize, size int64
	data           []byte
	window         int64
	blob           int
}

// groupMax is the largest payload put in a shared dictionary frame.
const groupMax = 256 << 10

// dictGroups gathers the small zstd-dict payloads, in ops order, into groups
// whose dictionaries stay within MaxDictBase, and compresses each group;
// a group is kept only where it is smaller than its members on their own.
func (d *differ) dictGroups(ctx context.Context, plans []*planned) (map[*planned]*dictGroup, error) {
	var groups []*dictGroup
	var cur *dictGroup
	for _, p := range plans {
		if p.op.Encoder != EncZstdDict || p.size > groupMax || p.baseSize > groupMax {
			continue
		}
		if cur == nil || cur.dictSize+p.baseSize > d.opts.MaxDictBase {
			cur = &dictGroup{blob: -1}
			groups = append(groups, cur)
		}
		cur.members = append(cur.members, p)
		cur.dictSize += p.baseSize
		cur.size += p.size
	}
	out := map[*planned]*dictGroup{}
	for _, g := range groups {
		if len(g.members) < 2 {
			continue
		}
		var dict, content []byte
		alone := 0
		for _, p := range g.members {
			b, err := d.readPayload(ctx, p.base)
			if err != nil {
				return nil, err
			}
			t, err := d.readPayload(ctx, p.content)
			if err != nil {
				return nil, err
			}
			dict, content = append(dict, b...), append(content, t...)
			alone += len(p.blob)
		}
		data, window, err := encodeZstdDict(dict, content, d.level())
		if err != nil {
			return nil, err
		}
		if len(data) >= alone {
			continue
		}
		g.data, g.window = data, window
		for _, p := range g.members {
			out[p] = g
		}
	}
	return out, nil
}

// bestDictLayer picks the base layer sharing the most payloads with li
// (ties: the lowest index); -1 when there is no base layer.
func bestDictLayer(li *layerInfo, baseInfo []*layerInfo) int {
	if len(baseInfo) == 0 {
		return -1
	}
	want := make(map[digest.Digest]bool, len(li.files))
	for _, f := range li.files {
		want[f.Payload] = true
	}
	best, bestN := len(baseInfo)-1, -1
	for i, b := range baseInfo {
		n := 0
		for _, f := range b.files {
			if want[f.Payload] {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	return best
}

// compressSkeleton returns the compressed skeleton blob, its zstd window,
// the size of what was compressed, and whether that is a skeleton delta.
// With a dictionary layer it tries the raw skeleton and the skeleton delta
// against that layer's skeleton, both with it as zstd dictionary, and keeps
// the smaller: the delta wins when headers changed (say every mtime), the
// raw form when they did not.
func compressSkeleton(path string, baseInfo []*layerInfo, dict int, level zstd.EncoderLevel) (blob []byte, window, rawSize int64, isDelta, plain bool, err error) {
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
		var buf bytes.Buffer
		enc, err := newEncoder(&buf, level, window, zdict)
		if err != nil {
			return nil, 0, err
		}
		if _, err := enc.Write(content); err != nil {
			return nil, 0, err
		}
		if err := enc.Close(); err != nil {
			return nil, 0, err
		}
		return buf.Bytes(), window, nil
	}
	blob, window, err = compress(raw)
	if err != nil || dict < 0 {
		return blob, window, int64(len(raw)), false, false, err
	}
	var d bytes.Buffer
	if err := layerfs.DiffSkeleton(base, raw, &d); err != nil {
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
