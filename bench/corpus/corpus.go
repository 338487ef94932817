package corpus

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Pairs are the corpus pairs, in build order.
var Pairs = []string{"os", "toolchain", "app", "npm", "apt", "python", "goarm64", "armapp", "armv7app", "goamd64", "debarm64", "debarm64up"}

var (
	// ErrUnknownPair reports a pair name that is not one of Pairs.
	ErrUnknownPair = errors.New("corpus: unknown pair")
	// ErrBadLayer reports an input that is not an uncompressed layer tar.
	ErrBadLayer = errors.New("corpus: not an uncompressed layer tar")
	// ErrBadOption reports an invalid option.
	ErrBadOption = errors.New("corpus: bad option")
)

// DefaultRoot is $SKIFF_CORPUS, or $HOME/.cache/skiff/corpus.
func DefaultRoot() string {
	if r := os.Getenv("SKIFF_CORPUS"); r != "" {
		return r
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(".cache", "skiff", "corpus")
	}
	return filepath.Join(home, ".cache", "skiff", "corpus")
}

type options struct {
	force bool
}

// Option configures BuildImages.
type Option func(*options) error

// WithForce rebuilds outputs even when they are newer than the inputs.
// The default is false.
func WithForce(force bool) Option {
	return func(o *options) error { o.force = force; return nil }
}

// Status says what BuildImages did with a pair.
type Status string

const (
	Built   Status = "built"
	Cached  Status = "cached"  // outputs were newer than the inputs
	Skipped Status = "skipped" // some input layer is missing
)

// Output is one file or directory written for a pair.
type Output struct {
	Path string
	Size int64 // bytes; for a directory, the total of its files
}

// PairReport is the outcome for one pair.
type PairReport struct {
	Pair     string
	Status   Status
	Reason   string // why it was skipped
	Outputs  []Output
	Duration time.Duration
}

// Report is the outcome of BuildImages, one entry per requested pair.
type Report struct {
	Pairs []PairReport
}

// pairSpec is how a pair's images are assembled from layer tars.
type pairSpec struct {
	old, new []string // layer tars, bottom first
}

func specFor(root, pair string) (pairSpec, error) {
	layer := func(p, v string) string { return filepath.Join(root, "layers", p, v+".tar") }
	switch pair {
	case "os", "apt", "debarm64", "debarm64up":
		// One layer per side: a rebuilt base image (apt: minbase, then the same
		// rootfs with packages installed, as one new layer; debarm64: an arm64
		// minbase, then one with more packages; debarm64up: that minbase, then
		// one with upgraded packages).
		return pairSpec{[]string{layer(pair, "old")}, []string{layer(pair, "new")}}, nil
	case "toolchain", "app", "npm", "python", "goarm64", "armapp", "armv7app", "goamd64":
		// The pair's layer on top of the old Debian rootfs, shared by both sides
		// (the amd64 one for the arm Go binaries too, as for goarm64).
		base := layer("os", "old")
		return pairSpec{[]string{base, layer(pair, "old")}, []string{base, layer(pair, "new")}}, nil
	}
	return pairSpec{}, fmt.Errorf("%q (want one of %v): %w", pair, Pairs, ErrUnknownPair)
}

// Fixed creation times of the two images of every pair.
var (
	oldCreated = time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	newCreated = time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
)

// BuildImages writes $root/images/<pair>/{old,new}.tar (docker-archive, gzip
// layers) and {old,new}.oci/ (OCI layout) for each pair whose layers exist,
// plus for pair "os" the variant new-resaved.tar: the same image as new.tar
// saved like `docker save` does (uncompressed layers), with the outer
// archive's members in a different order and different member mtimes.
// A nil or empty pairs means all of Pairs.
func BuildImages(ctx context.Context, root string, pairs []string, opts ...Option) (Report, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return Report{}, err
		}
	}
	if len(pairs) == 0 {
		pairs = Pairs
	}
	specs := make([]pairSpec, len(pairs))
	for i, p := range pairs {
		s, err := specFor(root, p)
		if err != nil {
			return Report{}, err
		}
		if slices.Index(pairs, p) != i {
			return Report{}, fmt.Errorf("pair %q given twice: %w", p, ErrBadOption)
		}
		specs[i] = s
	}
	work, err := os.MkdirTemp(filepath.Join(root), ".mkimages-")
	if err != nil {
		return Report{}, fmt.Errorf("corpus: work dir: %w", err)
	}
	defer os.RemoveAll(work)
	b := &builder{work: work, cache: map[layerKey]*fileLayer{}}
	var rep Report
	for i, pair := range pairs {
		start := time.Now()
		pr, err := b.buildPair(ctx, root, pair, specs[i], o.force)
		pr.Pair, pr.Duration = pair, time.Since(start)
		rep.Pairs = append(rep.Pairs, pr)
		if err != nil {
			return rep, fmt.Errorf("corpus: pair %s: %w", pair, err)
		}
	}
	return rep, nil
}

type builder struct {
	work  string
	cache map[layerKey]*fileLayer // looked up, never iterated
}

func (b *builder) buildPair(ctx context.Context, root, pair string, s pairSpec, force bool) (PairReport, error) {
	var newest time.Time
	for _, in := range append(slices.Clone(s.old), s.new...) {
		st, err := os.Stat(in)
		if errors.Is(err, os.ErrNotExist) {
			return PairReport{Status: Skipped, Reason: "missing " + in}, nil
		}
		if err != nil {
			return PairReport{}, err
		}
		if st.ModTime().After(newest) {
			newest = st.ModTime()
		}
	}
	dir := filepath.Join(root, "images", pair)
	outs := []string{"old.tar", "new.tar", "old.oci", "new.oci"}
	if pair == "os" {
		outs = append(outs, "new-resaved.tar")
	}
	if !force && upToDate(dir, outs, newest) {
		return PairReport{Status: Cached, Outputs: sizes(dir, outs)}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return PairReport{}, err
	}
	for _, v := range []struct {
		name    string
		layers  []string
		created time.Time
	}{{"old", s.old, oldCreated}, {"new", s.new, newCreated}} {
		tag := "skiff-corpus/" + pair + ":" + v.name
		archive, err := b.image(ctx, pair, v.layers, v.created, gzipDefault, types.DockerLayer)
		if err != nil {
			return PairReport{}, err
		}
		if err := writeArchive(ctx, filepath.Join(dir, v.name+".tar"), tag, archive); err != nil {
			return PairReport{}, err
		}
		oci, err := b.image(ctx, pair, v.layers, v.created, gzipCrane, types.OCILayer)
		if err != nil {
			return PairReport{}, err
		}
		oci = mutate.ConfigMediaType(mutate.MediaType(oci, types.OCIManifestSchema1), types.OCIConfigJSON)
		if err := writeLayout(ctx, filepath.Join(dir, v.name+".oci"), tag, oci); err != nil {
			return PairReport{}, err
		}
		if pair == "os" && v.name == "new" {
			if err := writeResaved(ctx, filepath.Join(dir, "new-resaved.tar"), tag, archive); err != nil {
				return PairReport{}, err
			}
		}
	}
	return PairReport{Status: Built, Outputs: sizes(dir, outs)}, nil
}

// image assembles the image of a pair from layer tars compressed at level.
func (b *builder) image(ctx context.Context, pair string, tars []string, created time.Time, level int, mt types.MediaType) (v1.Image, error) {
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	for i, t := range tars {
		l, err := b.layer(ctx, t, level)
		if err != nil {
			return nil, err
		}
		by := "/bin/sh -c #(nop) ADD file:os-rootfs.tar in / "
		if i > 0 {
			by = "COPY " + pair + "/ / # buildkit"
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     &typedLayer{l, mt},
			History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: by},
			MediaType: mt,
		})
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

func upToDate(dir string, outs []string, newest time.Time) bool {
	for _, o := range outs {
		p := filepath.Join(dir, o)
		if filepath.Ext(o) == ".oci" {
			p = filepath.Join(p, "index.json")
		}
		st, err := os.Stat(p)
		if err != nil || !st.ModTime().After(newest) {
			return false
		}
	}
	return true
}

func sizes(dir string, outs []string) []Output {
	var r []Output
	for _, o := range outs {
		p := filepath.Join(dir, o)
		var n int64
		filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					n += info.Size()
				}
			}
			return nil
		})
		r = append(r, Output{Path: p, Size: n})
	}
	return r
}
