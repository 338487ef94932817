package bench

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/internal/ctxio"
	"github.com/skiff-dev/skiff/layerfs"
)

// Registry is an ordered set of methods with unique names.
type Registry struct {
	methods []Method
}

// NewRegistry registers methods in table order. Empty and duplicate names
// are errors.
func NewRegistry(ms ...Method) (*Registry, error) {
	r := &Registry{}
	for _, m := range ms {
		n := m.Name()
		if n == "" || strings.ContainsAny(n, " ,\t\n") {
			return nil, fmt.Errorf("method name %q: must be non-empty without spaces or commas", n)
		}
		if slices.Contains(r.Names(), n) {
			return nil, fmt.Errorf("method %q registered twice", n)
		}
		r.methods = append(r.methods, m)
	}
	return r, nil
}

// Names returns the registered names in order.
func (r *Registry) Names() []string {
	var ns []string
	for _, m := range r.methods {
		ns = append(ns, m.Name())
	}
	return ns
}

// Select returns the named methods in registry order, or all of them when
// names is empty. An unknown name is an error wrapping ErrUnknownMethod
// that lists the known ones.
func (r *Registry) Select(names []string) ([]Method, error) {
	if len(names) == 0 {
		return slices.Clone(r.methods), nil
	}
	known := r.Names()
	for _, n := range names {
		if !slices.Contains(known, n) {
			return nil, fmt.Errorf("%q (known: %s): %w", n, strings.Join(known, ", "), ErrUnknownMethod)
		}
	}
	var out []Method
	for _, m := range r.methods {
		if slices.Contains(names, m.Name()) {
			out = append(out, m)
		}
	}
	return out, nil
}

// Config configures DefaultMethods.
type Config struct {
	// Tools finds the external tools; a nil Tools searches PATH only.
	Tools *Tools
	// Skiff is the skiff executable the skiff methods run ("" looks for
	// "skiff" with Tools).
	Skiff string
	// SkiffArgs are global flags given to every skiff child (--insecure,
	// --platform).
	SkiffArgs []string
}

// DefaultMethods returns skiff and every baseline, in table order (see the
// package documentation).
func DefaultMethods(cfg Config) *Registry {
	if cfg.Tools == nil {
		cfg.Tools = &Tools{}
	}
	t := cfg.Tools
	skiff := func(level int) Method {
		return &toolMethod{
			name: fmt.Sprintf("skiff-%d", level), tools: []string{"skiff"}, t: skiffTools(cfg),
			note: fmt.Sprintf("skiff diff --level %d; apply to an OCI layout", level),
			run: func(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
				return runSkiff(ctx, t, exe["skiff"], cfg.SkiffArgs, level, p, dir, r)
			},
		}
	}
	r, err := NewRegistry(
		skiff(4),
		skiff(5),
		&toolMethod{name: "pull-gzip", t: t, run: runPullGzip},
		&toolMethod{name: "pull-zstd19", tools: []string{"zstd"}, t: t, note: "zstd -19 of each changed layer tar", run: runPullZstd},
		&toolMethod{name: "zstd-patch-from", tools: []string{"zstd"}, t: t, note: "zstd -19 --long=31 --patch-from=OLD", run: runZstdPatchFrom},
		&toolMethod{name: "bsdiff", tools: []string{"bsdiff", "bspatch"}, t: t, run: runBsdiff},
		&toolMethod{name: "xdelta3", tools: []string{"xdelta3"}, t: t, note: "xdelta3 -9 -S djw -B <old size>", run: runXdelta3},
		&toolMethod{name: "rdiff-zstd", tools: []string{"rdiff", "zstd"}, t: t, note: "rdiff delta, then zstd -19; extra = signature the device uploads", run: runRdiff},
		&toolMethod{name: "file-dedupe", t: t, note: "new file contents only, each zstd (klauspost best); no tar rebuilt", run: runDedupe},
		&toolMethod{name: "tar-diff", tools: []string{"tar-diff", "tar-patch"}, t: t, note: "tar-diff v0.1.2 -compression-level 19; tar-patch on the extracted old layer", run: runTarDiff},
	)
	if err != nil {
		panic(err) // the names above are fixed and distinct
	}
	return r
}

// skiffTools finds skiff at cfg.Skiff if set, else like any tool.
func skiffTools(cfg Config) *Tools {
	if cfg.Skiff == "" {
		return cfg.Tools
	}
	t := *cfg.Tools
	t.Override = map[string]string{"skiff": cfg.Skiff}
	for k, v := range cfg.Tools.Override {
		if k != "skiff" {
			t.Override[k] = v
		}
	}
	return &t
}

// toolMethod is a method that needs some executables. It reports those
// that are missing as not installed instead of running.
type toolMethod struct {
	name  string
	tools []string
	t     *Tools
	note  string
	run   func(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error
}

func (m *toolMethod) Name() string { return m.name }

func (m *toolMethod) Run(ctx context.Context, p *Prepared, dir string) Result {
	r := Result{Method: m.name, Note: m.note}
	exe := map[string]string{}
	for _, name := range m.tools {
		path, err := m.t.Find(name)
		if err != nil {
			r.NotInstalled = append(r.NotInstalled, name)
			continue
		}
		exe[name] = path
	}
	if len(r.NotInstalled) > 0 {
		return r
	}
	if err := m.run(ctx, m.t, exe, p, dir, &r); err != nil {
		r.Error = err.Error()
		if r.Verified == Exact {
			r.Verified = NotChecked
		}
	}
	return r
}

// eachLayer runs fn for every changed layer in a directory of its own,
// checks the tar fn rebuilt against the layer's diff_id and sets
// r.Verified.
func eachLayer(p *Prepared, dir string, r *Result, fn func(c Change, dir string) (rebuilt string, err error)) error {
	r.Verified = Exact
	for _, c := range p.Changed {
		ldir := filepath.Join(dir, fmt.Sprintf("layer%02d", c.Index))
		if err := os.MkdirAll(ldir, 0o755); err != nil {
			return err
		}
		out, err := fn(c, ldir)
		if err != nil {
			os.RemoveAll(ldir)
			return fmt.Errorf("layer %d: %w", c.Index, err)
		}
		got, err := sha256File(out)
		os.RemoveAll(ldir)
		if err != nil {
			return fmt.Errorf("layer %d: %w", c.Index, err)
		}
		if got != c.New.DiffID.String() {
			r.Verified = Mismatch
		}
	}
	return nil
}

func (r *Result) addWire(p string) error {
	n, err := fileSize(p)
	r.WireBytes += n
	return err
}

func runZstdPatchFrom(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		patch, out := filepath.Join(dir, "patch.zst"), filepath.Join(dir, "out.tar")
		if err := s.diff(ctx, exe["zstd"], "-q", "-f", "-19", "--long=31", "--patch-from="+c.Old.Path, c.New.Path, "-o", patch); err != nil {
			return "", err
		}
		if err := r.addWire(patch); err != nil {
			return "", err
		}
		return out, s.apply(ctx, exe["zstd"], "-q", "-f", "-d", "--long=31", "--patch-from="+c.Old.Path, patch, "-o", out)
	})
}

func runBsdiff(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		patch, out := filepath.Join(dir, "patch.bsdiff"), filepath.Join(dir, "out.tar")
		if err := s.diff(ctx, exe["bsdiff"], c.Old.Path, c.New.Path, patch); err != nil {
			return "", err
		}
		if err := r.addWire(patch); err != nil {
			return "", err
		}
		return out, s.apply(ctx, exe["bspatch"], c.Old.Path, out, patch)
	})
}

// xdelta3's smallest source window (-B).
const xdeltaMinWindow = 1 << 19

func runXdelta3(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		patch, out := filepath.Join(dir, "patch.vcdiff"), filepath.Join(dir, "out.tar")
		b := strconv.FormatInt(max(c.Old.Size, xdeltaMinWindow), 10)
		if err := s.diff(ctx, exe["xdelta3"], "-e", "-f", "-9", "-S", "djw", "-B", b, "-s", c.Old.Path, c.New.Path, patch); err != nil {
			return "", err
		}
		if err := r.addWire(patch); err != nil {
			return "", err
		}
		return out, s.apply(ctx, exe["xdelta3"], "-d", "-f", "-B", b, "-s", c.Old.Path, patch, out)
	})
}

func runRdiff(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	r.ExtraWhat = "signature"
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		sig, delta, zst := filepath.Join(dir, "old.sig"), filepath.Join(dir, "delta"), filepath.Join(dir, "delta.zst")
		got, out := filepath.Join(dir, "delta.got"), filepath.Join(dir, "out.tar")
		if err := s.diff(ctx, exe["rdiff"], "signature", c.Old.Path, sig); err != nil {
			return "", err
		}
		if err := s.diff(ctx, exe["rdiff"], "delta", sig, c.New.Path, delta); err != nil {
			return "", err
		}
		if err := s.diff(ctx, exe["zstd"], "-q", "-f", "-19", delta, "-o", zst); err != nil {
			return "", err
		}
		if err := r.addWire(zst); err != nil {
			return "", err
		}
		n, err := fileSize(sig)
		if err != nil {
			return "", err
		}
		r.Extra += n
		if err := s.apply(ctx, exe["zstd"], "-q", "-f", "-d", zst, "-o", got); err != nil {
			return "", err
		}
		return out, s.apply(ctx, exe["rdiff"], "patch", c.Old.Path, got, out)
	})
}

func runTarDiff(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		patch, tree, out := filepath.Join(dir, "patch.tardiff"), filepath.Join(dir, "old"), filepath.Join(dir, "out.tar")
		if err := s.diff(ctx, exe["tar-diff"], "-compression-level", "19", c.Old.Path, c.New.Path, patch); err != nil {
			return "", err
		}
		if err := r.addWire(patch); err != nil {
			return "", err
		}
		// The device holds the old layer extracted: not timed.
		if err := extractTree(ctx, c.Old.Path, tree); err != nil {
			return "", fmt.Errorf("extract old layer: %w", err)
		}
		return out, s.apply(ctx, exe["tar-patch"], patch, tree, out)
	})
}

func runPullZstd(ctx context.Context, t *Tools, exe map[string]string, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	return eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		zst, out := filepath.Join(dir, "layer.tar.zst"), filepath.Join(dir, "out.tar")
		if err := s.diff(ctx, exe["zstd"], "-q", "-f", "-19", c.New.Path, "-o", zst); err != nil {
			return "", err
		}
		if err := r.addWire(zst); err != nil {
			return "", err
		}
		return out, s.apply(ctx, exe["zstd"], "-q", "-f", "-d", zst, "-o", out)
	})
}

// runPullGzip counts the changed layers' blobs as the registry stores
// them. Where the image holds a layer uncompressed, it is gzipped here
// (compress/gzip, default level: what docker push writes) and that time is
// the diff time. The apply time is decompressing and hashing the blob, in
// the harness process (memory not measured).
func runPullGzip(ctx context.Context, _ *Tools, _ map[string]string, p *Prepared, dir string, r *Result) error {
	layers, err := p.Target.Layers()
	if err != nil {
		return err
	}
	stored, gzipped := 0, 0
	err = eachLayer(p, dir, r, func(c Change, dir string) (string, error) {
		out := filepath.Join(dir, "out.tar")
		if c.Blob.Compressed {
			stored++
			r.WireBytes += c.Blob.Size
			start := time.Now()
			rc, err := layers[c.Index].Uncompressed()
			if err != nil {
				return "", err
			}
			defer rc.Close()
			if err := copyToFile(ctx, out, rc); err != nil {
				return "", err
			}
			r.ApplyTime += time.Since(start)
			return out, nil
		}
		gzipped++
		gz := filepath.Join(dir, "layer.tar.gz")
		start := time.Now()
		if err := gzipFile(ctx, c.New.Path, gz); err != nil {
			return "", err
		}
		r.DiffTime += time.Since(start)
		if err := r.addWire(gz); err != nil {
			return "", err
		}
		start = time.Now()
		f, err := os.Open(gz)
		if err != nil {
			return "", err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", err
		}
		if err := copyToFile(ctx, out, zr); err != nil {
			return "", err
		}
		r.ApplyTime += time.Since(start)
		return out, nil
	})
	switch {
	case gzipped == 0:
		r.Note = "the target's compressed layer blobs"
	case stored == 0:
		r.Note = "the image stores layers uncompressed: gzip (Go, default level) as docker push"
	default:
		r.Note = fmt.Sprintf("%d stored blobs, %d layers gzipped as docker push", stored, gzipped)
	}
	return err
}

func gzipFile(ctx context.Context, src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(out)
	_, err = io.Copy(zw, ctxio.Reader(ctx, in))
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

func copyToFile(ctx context.Context, dst string, r io.Reader) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, ctxio.Reader(ctx, r))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// runSkiff runs skiff diff and skiff apply as child processes, then checks
// the rebuilt image: its config digest is the target's and every layer
// hashes to the target's diff_id.
func runSkiff(ctx context.Context, t *Tools, exe string, global []string, level int, p *Prepared, dir string, r *Result) error {
	s := steps{r, t}
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	g := append(slices.Clone(global), "--tmpdir", tmp)
	d := filepath.Join(dir, "update.skiff")
	if err := s.diff(ctx, exe, append(g, "diff", "--from", p.Pair.From, "--to", p.Pair.To, "-o", d, "--level", strconv.Itoa(level))...); err != nil {
		return err
	}
	if err := r.addWire(d); err != nil {
		return err
	}
	out := "oci:" + filepath.Join(dir, "out")
	// Unsigned: the bench measures the engine, not the trust setup (a
	// signature adds 74 bytes and one ed25519 verification).
	if err := s.apply(ctx, exe, append(g, "apply", "--base", p.Pair.From, "--delta", d, "--output", out, "--allow-unsigned")...); err != nil {
		return err
	}
	ok, err := verifyImage(ctx, out, p)
	if err != nil {
		return fmt.Errorf("check the rebuilt image: %w", err)
	}
	r.Verified = Mismatch
	if ok {
		r.Verified = Exact
	}
	return nil
}

// verifyImage reports whether the image at ref has the target's config
// digest and layers whose tars hash to the target's diff_ids.
func verifyImage(ctx context.Context, ref string, p *Prepared) (bool, error) {
	img, err := layerfs.Open(ctx, ref)
	if err != nil {
		return false, err
	}
	defer img.Close()
	cfg, err := img.ConfigName()
	if err != nil {
		return false, err
	}
	if cfg != p.TargetConfig {
		return false, nil
	}
	layers, err := img.Layers()
	if err != nil {
		return false, err
	}
	if len(layers) != len(p.TargetDiffIDs) {
		return false, nil
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			return false, err
		}
		h := sha256.New()
		_, err = io.Copy(h, ctxio.Reader(ctx, rc))
		rc.Close()
		if err != nil {
			return false, err
		}
		if "sha256:"+hex.EncodeToString(h.Sum(nil)) != p.TargetDiffIDs[i].String() {
			return false, nil
		}
	}
	return true, nil
}
