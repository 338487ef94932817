package delta

import (
	"context"
	"crypto"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

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
	// Solid writes manifest version 3: new contents and bsdiff residues
	// go into solid streams compressed with the best of zstd and brotli
	// (FORMAT.md, "Solid streams"). Off: versions 1-2, a pack and one blob
	// per patch.
	Solid bool
	// Lean (with Solid) writes manifest version 5: lean skeleton deltas,
	// which leave out payload sizes, zero padding, the digests of
	// unchanged files and of the payloads the ops make, and which layers
	// without a base layer get too, against nothing (layerfs/SKELETON.md,
	// "Lean skeleton deltas"). Off: versions 3-4.
	Lean bool
	// Keep (with Lean) writes manifest version 6: base.keep names the base
	// payloads the delta reads, so the device stores only those, and
	// limits.scratch counts the rebuild as version 6 readers do it, each
	// payload leaving the store after its last read (FORMAT.md, "Kept base
	// payloads"). Off: versions up to 5.
	Keep bool
	// TargetNames are names (REPO:TAG) to carry for the target (manifest
	// version 5, so Lean): apply writes them into a docker-archive output
	// whose reference names no tag. Sorted and deduplicated in the delta.
	TargetNames []string
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
	// Progress, if set, is told what the diff is doing: phase is one of
	// PhaseLayers (done of total layers taken apart), PhaseEncode (files
	// encoded) and PhaseWrite (the solid stream's raw bytes compressed,
	// done = total once written). Calls may come from several goroutines,
	// one at a time; the delta does not depend on them.
	Progress func(phase string, done, total int64)
	// Signers sign the delta's header (ed25519 keys, e.g. an
	// ed25519.PrivateKey from sign.LoadPrivateKey); none: unsigned.
	Signers []crypto.Signer

	// allowUnsafePaths skips the target layers' path check (tests make
	// deltas that Apply must refuse with it).
	allowUnsafePaths bool
}

// DefaultOptions are the settings `skiff diff` uses.
func DefaultOptions() Options {
	return Options{Bsdiff: true, BsdiffX86: true, ZstdDict: true, Gunzip: true, Solid: true, Lean: true, Keep: true, Level: 4, BrotliQuality: 9, Jobs: runtime.GOMAXPROCS(0),
		MemoryCap: 256 << 20, MaxDictBase: 2 << 20}
}

func (o *Options) check() error {
	if o.Level < 1 || o.Level > 4 {
		return fmt.Errorf("zstd level %d: must be 1..4", o.Level)
	}
	if len(o.TargetNames) > 0 && !(o.Lean && o.Solid) {
		return fmt.Errorf("target names need manifest version 5 (Lean and Solid)")
	}
	for _, n := range o.TargetNames {
		if _, err := name.NewTag(n); err != nil {
			return fmt.Errorf("target name %q: want REPO:TAG: %v", n, err)
		}
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

// Phases reported to Options.Progress.
const (
	PhaseLayers = "taking layers apart"
	PhaseEncode = "encoding files"
	PhaseWrite  = "compressing the solid stream"
)

// progress reports to Options.Progress, serialised.
func (d *differ) progress(phase string, done, total int64) {
	if d.opts.Progress == nil {
		return
	}
	d.progressMu.Lock()
	defer d.progressMu.Unlock()
	d.opts.Progress(phase, done, total)
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
	// Streams are the solid streams (manifest version 3).
	Streams []StreamReport `json:"streams,omitempty"`
	// Largest lists the files that cost the most, largest first.
	Largest []FileCost `json:"largest"`
}

// StreamReport is one solid stream: its codec and window, how many files
// it carries, and its size before and after compression.
type StreamReport struct {
	Codec  string `json:"codec"`
	Window int64  `json:"window"`
	Files  int    `json:"files"`
	Raw    int64  `json:"raw_bytes"`
	Bytes  int64  `json:"bytes"`
}

// FileCost is what one changed file costs in the delta. Files that share a
// frame are counted at what they cost on their own.
type FileCost struct {
	Path    string `json:"path"`
	Encoder string `json:"encoder"`
	// Transform names the machine code bsdiff-x86 transformed: x86-64,
	// arm64, arm or thumb; empty when only compressed sections were
	// expanded, or for other encoders.
	Transform string `json:"transform,omitempty"`
	Size      int64  `json:"size"`
	Bytes     int64  `json:"bytes"`
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
	progressMu sync.Mutex
	opts       Options
	store      *layerfs.Store
	work       string
	rep        *Report
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
	var done atomic.Int64
	total := int64(len(baseLayers))
	for i := range targetLayers {
		if !slices.Contains(baseIDs, targetIDs[i]) {
			total++
		}
	}
	d.progress(PhaseLayers, 0, total)
	for i, l := range baseLayers {
		g.Go(func() error {
			li, err := d.disassemble(gctx, l, fmt.Sprintf("base-%d", i), nil)
			if err != nil {
				return fmt.Errorf("base layer %d: %w", i, err)
			}
			baseInfo[i] = li
			d.progress(PhaseLayers, done.Add(1), total)
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
			d.progress(PhaseLayers, done.Add(1), total)
			return nil
		})
	}
	return baseInfo, targetInfo, g.Wait()
}

// planned is one op being encoded.
type planned struct {
	op   resolvedOp
	path string
	// content is what the op makes (size bytes): the target payload, or
	// for a gzip op its decompressed content; base (baseSize bytes) is
	// what it is encoded against: the base payload or its content.
	content, base  digest.Digest
	size, baseSize int64
	zstdSize       int64  // plain zstd size on its own
	expanded       int64  // bsdiff-x86: size of the transformed target
	transform      string // bsdiff-x86: the machine code transformed (FileCost.Transform)
	window         int64  // zstd window the blob needs
	blob           []byte // encoded bytes (nil for the pack members)
	// Solid mode: residue is the file holding the bsdiff residue (split
	// form, after bsdiff-x86's prefix), residueSize bytes, controls its
	// control triples; cost the estimate the encoder was chosen by.
	residue               string
	residueSize, controls int64
	cost                  int64
	inStream              bool // a member of a solid stream
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
	if len(d.opts.TargetNames) > 0 {
		m.Target.Names = slices.Compact(slices.Sorted(slices.Values(d.opts.TargetNames)))
		m.Version = max(m.Version, 5)
	}
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
			p := &planned{op: resolvedOp{Op: Op{Encoder: EncZstd, Base: -1}, Target: f.Payload, Size: f.DataSize}, path: f.Name,
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
