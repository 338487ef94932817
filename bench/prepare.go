package bench

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiff-dev/skiff/internal/ctxio"
	"github.com/skiff-dev/skiff/layerfs"
)

// emptyTar is an empty tar archive: two zero blocks. It stands in for the
// old counterpart of a changed layer that has none (some tools refuse an
// empty file).
var emptyTar = make([]byte, 1024)

// LayerTar is an uncompressed layer tar extracted to disk.
type LayerTar struct {
	Path   string
	DiffID v1.Hash
	Size   int64
}

// Change is one changed target layer.
type Change struct {
	// Index is the layer's position in the target image.
	Index int
	// New is the target layer.
	New LayerTar
	// Old is the base layer at the same index, or an empty tar (1024 zero
	// bytes, DiffID zero) when the base has fewer layers.
	Old LayerTar
	// Blob is how the target image stores the layer (what docker pull
	// downloads).
	Blob StoredBlob
}

// StoredBlob describes a layer as its image stores it.
type StoredBlob struct {
	// Compressed is false when the image holds the layer as a plain tar
	// (docker save of Docker 25+, an OCI layout with tar layers).
	Compressed bool
	// Size is the stored blob's size in bytes.
	Size int64
}

// Prepared is a pair ready to measure: both images open, the changed layers
// extracted.
type Prepared struct {
	Pair          Pair
	Base, Target  v1.Image
	BaseDiffIDs   []v1.Hash
	TargetDiffIDs []v1.Hash
	// TargetConfig is the target's config digest (its image ID).
	TargetConfig v1.Hash
	Changed      []Change

	dir string
}

// ChangedBytes is the uncompressed size of the changed target layers.
func (p *Prepared) ChangedBytes() int64 {
	var n int64
	for _, c := range p.Changed {
		n += c.New.Size
	}
	return n
}

func (p *Prepared) cleanup() { os.RemoveAll(p.dir) }

// openPair is a pair whose images are open.
type openPair struct {
	pair         Pair
	base, target *layerfs.Image
}

func (o *openPair) close() {
	o.base.Close()
	o.target.Close()
}

// openImages opens both images of a pair and reads their diff_ids, so a
// bad reference or a broken image fails before anything is measured.
func openImages(ctx context.Context, p Pair, refOpts []layerfs.Option) (*openPair, error) {
	base, err := layerfs.Open(ctx, p.From, refOpts...)
	if err != nil {
		return nil, fmt.Errorf("pair %s: base image: %w: %w", p.Name, err, ErrBadPair)
	}
	target, err := layerfs.Open(ctx, p.To, refOpts...)
	if err != nil {
		base.Close()
		return nil, fmt.Errorf("pair %s: target image: %w: %w", p.Name, err, ErrBadPair)
	}
	op := &openPair{pair: p, base: base, target: target}
	for _, side := range []struct {
		what string
		img  v1.Image
	}{{"base " + p.From, base}, {"target " + p.To, target}} {
		if _, err := diffIDs(side.img); err != nil {
			op.close()
			return nil, fmt.Errorf("pair %s: %s: %w: %w", p.Name, side.what, err, ErrBadPair)
		}
	}
	return op, nil
}

func diffIDs(img v1.Image) ([]v1.Hash, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("layers: %w", err)
	}
	if len(ls) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("%d layers but %d diff_ids in the config", len(ls), len(cf.RootFS.DiffIDs))
	}
	return cf.RootFS.DiffIDs, nil
}

// prepare extracts the changed layers of a pair (and their old
// counterparts) into a directory under root.
func prepare(ctx context.Context, op *openPair, root string, i int) (*Prepared, error) {
	p := &Prepared{Pair: op.pair, Base: op.base.Image, Target: op.target.Image, dir: filepath.Join(root, fmt.Sprintf("pair%02d", i))}
	if err := os.MkdirAll(filepath.Join(p.dir, "layers"), 0o755); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			p.cleanup()
		}
	}()
	var err error
	if p.BaseDiffIDs, err = diffIDs(p.Base); err != nil {
		return nil, fmt.Errorf("base: %w", err)
	}
	if p.TargetDiffIDs, err = diffIDs(p.Target); err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	if p.TargetConfig, err = p.Target.ConfigName(); err != nil {
		return nil, fmt.Errorf("target config: %w", err)
	}
	baseLayers, err := p.Base.Layers()
	if err != nil {
		return nil, err
	}
	targetLayers, err := p.Target.Layers()
	if err != nil {
		return nil, err
	}
	blobs, err := storedBlobs(op.target, targetLayers)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", p.Pair.To, err)
	}
	empty := filepath.Join(p.dir, "layers", "empty.tar")
	if err := os.WriteFile(empty, emptyTar, 0o644); err != nil {
		return nil, err
	}
	for idx, d := range p.TargetDiffIDs {
		if slices.Contains(p.BaseDiffIDs, d) {
			continue
		}
		c := Change{Index: idx, Old: LayerTar{Path: empty, Size: int64(len(emptyTar))}, Blob: blobs[idx]}
		c.New, err = extractLayer(ctx, targetLayers[idx], d, filepath.Join(p.dir, "layers", fmt.Sprintf("new%02d.tar", idx)))
		if err != nil {
			return nil, fmt.Errorf("target layer %d: %w", idx, err)
		}
		if idx < len(baseLayers) {
			c.Old, err = extractLayer(ctx, baseLayers[idx], p.BaseDiffIDs[idx], filepath.Join(p.dir, "layers", fmt.Sprintf("old%02d.tar", idx)))
			if err != nil {
				return nil, fmt.Errorf("base layer %d: %w", idx, err)
			}
		}
		p.Changed = append(p.Changed, c)
	}
	ok = true
	return p, nil
}

// extractLayer writes a layer's uncompressed tar to dst and checks its
// sha256 against the diff_id.
func extractLayer(ctx context.Context, l v1.Layer, want v1.Hash, dst string) (LayerTar, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return LayerTar{}, err
	}
	defer rc.Close()
	f, err := os.Create(dst)
	if err != nil {
		return LayerTar{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxio.Reader(ctx, rc))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return LayerTar{}, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.String() {
		return LayerTar{}, fmt.Errorf("layer content is %s, the image says %s", got, want)
	}
	return LayerTar{Path: dst, DiffID: want, Size: n}, nil
}

// storedBlobs says, per layer, how the image stores it. A docker-archive
// is read directly (go-containerregistry presents an uncompressed archive
// layer as if it were gzip-compressed); other transports go by media type
// and blob size.
func storedBlobs(img *layerfs.Image, layers []v1.Layer) ([]StoredBlob, error) {
	if img.Ref.Transport == layerfs.TransportDockerArchive {
		return archiveBlobs(img.Ref.Path, img.Ref.Name, len(layers))
	}
	out := make([]StoredBlob, len(layers))
	for i, l := range layers {
		mt, err := l.MediaType()
		if err != nil {
			return nil, fmt.Errorf("layer %d media type: %w", i, err)
		}
		switch mt {
		case types.OCIUncompressedLayer, types.DockerUncompressedLayer, types.OCIUncompressedRestrictedLayer:
		default:
			out[i].Compressed = true
		}
		if out[i].Size, err = l.Size(); err != nil {
			return nil, fmt.Errorf("layer %d size: %w", i, err)
		}
	}
	return out, nil
}

// archiveBlobs reads a docker-archive's manifest.json and the first bytes
// of each layer member of the image tagged tag (the only image if tag is
// empty).
func archiveBlobs(p, tag string, n int) ([]StoredBlob, error) {
	type entry struct {
		RepoTags []string
		Layers   []string
	}
	type member struct {
		size  int64
		magic [4]byte
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var manifest []entry
	members := map[string]member{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		name := path.Clean(h.Name)
		if name == "manifest.json" {
			if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&manifest); err != nil {
				return nil, fmt.Errorf("%s: manifest.json: %w", p, err)
			}
			continue
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		m := member{size: h.Size}
		if _, err := io.ReadFull(tr, m.magic[:]); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && err != io.EOF {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		members[name] = m
	}
	var e *entry
	for i := range manifest {
		if tag == "" || matchesTag(manifest[i].RepoTags, tag) {
			if e != nil {
				return nil, fmt.Errorf("%s: several images match %q", p, tag)
			}
			e = &manifest[i]
		}
	}
	if e == nil || len(e.Layers) != n {
		return nil, fmt.Errorf("%s: no image with %d layers for tag %q in manifest.json", p, n, tag)
	}
	out := make([]StoredBlob, n)
	for i, l := range e.Layers {
		m, ok := members[path.Clean(l)]
		if !ok {
			return nil, fmt.Errorf("%s: layer member %s is missing", p, l)
		}
		gzip := m.magic[0] == 0x1f && m.magic[1] == 0x8b
		zstd := m.magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}
		out[i] = StoredBlob{Compressed: gzip || zstd, Size: m.size}
	}
	return out, nil
}

func matchesTag(tags []string, tag string) bool {
	want, err := name.NewTag(tag)
	for _, t := range tags {
		if t == tag {
			return true
		}
		if err != nil {
			continue
		}
		if got, err := name.NewTag(t); err == nil && got.Name() == want.Name() {
			return true
		}
	}
	return false
}

// sha256File returns the "sha256:<hex>" digest of a file.
func sha256File(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
