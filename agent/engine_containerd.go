package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrContainerd: containerd cannot be reached or refused an operation.
var ErrContainerd = errors.New("containerd error")

// maxMetadataBlob caps manifests, indexes and configs read from the
// content store.
const maxMetadataBlob = 8 << 20

// ContainerdEngine keeps images in containerd (the Go client over its
// socket), in one namespace. Load imports the image as an OCI archive
// whose index names it, so the image record points at the image's own
// manifest: the manifest digest is kept.
type ContainerdEngine struct {
	cfg      ContainerdConfig
	platform platforms.MatchComparer
}

var _ Engine = (*ContainerdEngine)(nil)

// NewContainerdEngine makes an engine for containerd at cfg.Address.
// platform is OS/ARCH[/VARIANT] ("" = this host's).
func NewContainerdEngine(cfg ContainerdConfig, platform string) *ContainerdEngine {
	e := &ContainerdEngine{cfg: cfg, platform: platforms.Default()}
	if platform != "" {
		if p, err := platforms.Parse(platform); err == nil {
			e.platform = platforms.Only(p)
		}
	}
	if e.cfg.Namespace == "" {
		e.cfg.Namespace = DefaultNamespace
	}
	return e
}

func (e *ContainerdEngine) dial(ctx context.Context) (*containerd.Client, context.Context, error) {
	c, err := containerd.New(e.cfg.Address, containerd.WithDefaultNamespace(e.cfg.Namespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		return nil, nil, fmt.Errorf("containerd at %s: %v: %w", e.cfg.Address, err, ErrContainerd)
	}
	return c, namespaces.WithNamespace(ctx, e.cfg.Namespace), nil
}

// resolved is an image record resolved to its platform manifest.
type resolved struct {
	record   images.Image
	manifest ocispec.Descriptor
	raw      []byte // manifest bytes
	m        ocispec.Manifest
}

func readMeta(ctx context.Context, cs content.Provider, d ocispec.Descriptor) ([]byte, error) {
	if d.Size > maxMetadataBlob {
		return nil, fmt.Errorf("blob %s of %d bytes is too large for metadata", d.Digest, d.Size)
	}
	return content.ReadBlob(ctx, cs, d)
}

// resolve finds the record of ref and its manifest for the platform.
func (e *ContainerdEngine) resolve(ctx context.Context, c *containerd.Client, ref string) (*resolved, error) {
	rec, err := c.ImageService().Get(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("containerd image %s (namespace %s): %w", ref, e.cfg.Namespace, ErrNoImage)
		}
		return nil, fmt.Errorf("containerd image %s: %v: %w", ref, err, ErrContainerd)
	}
	cs := c.ContentStore()
	d := rec.Target
	for depth := 0; ; depth++ {
		if depth > 4 {
			return nil, fmt.Errorf("containerd image %s: indexes nested too deep", ref)
		}
		raw, err := readMeta(ctx, cs, d)
		if err != nil {
			return nil, fmt.Errorf("containerd image %s: %v: %w", ref, err, ErrContainerd)
		}
		switch d.MediaType {
		case ocispec.MediaTypeImageManifest, images.MediaTypeDockerSchema2Manifest:
			r := &resolved{record: rec, manifest: d, raw: raw}
			if err := json.Unmarshal(raw, &r.m); err != nil {
				return nil, fmt.Errorf("containerd image %s: manifest %s: %w", ref, d.Digest, err)
			}
			return r, nil
		case ocispec.MediaTypeImageIndex, images.MediaTypeDockerSchema2ManifestList:
			var idx ocispec.Index
			if err := json.Unmarshal(raw, &idx); err != nil {
				return nil, fmt.Errorf("containerd image %s: index %s: %w", ref, d.Digest, err)
			}
			var best *ocispec.Descriptor
			for i := range idx.Manifests {
				m := &idx.Manifests[i]
				if m.Platform == nil || !e.platform.Match(*m.Platform) {
					continue
				}
				if best == nil || e.platform.Less(*m.Platform, *best.Platform) {
					best = m
				}
			}
			if best == nil {
				return nil, fmt.Errorf("containerd image %s: no manifest for this platform: %w", ref, ErrNoImage)
			}
			d = *best
		default:
			return nil, fmt.Errorf("containerd image %s: unsupported media type %q", ref, d.MediaType)
		}
	}
}

// Inspect describes ref: config digest, diff_ids, the platform manifest
// digest and the record's target (a registry's manifest or index digest).
func (e *ContainerdEngine) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	c, ctx, err := e.dial(ctx)
	if err != nil {
		return ImageInfo{}, err
	}
	defer c.Close()
	r, err := e.resolve(ctx, c, ref)
	if err != nil {
		return ImageInfo{}, err
	}
	ids, err := images.RootFS(ctx, c.ContentStore(), r.m.Config)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("containerd image %s: config: %v: %w", ref, err, ErrContainerd)
	}
	info := ImageInfo{ID: r.m.Config.Digest.String(), ManifestDigest: r.manifest.Digest.String()}
	for _, d := range ids {
		info.DiffIDs = append(info.DiffIDs, d.String())
	}
	info.RepoDigests = []string{ref + "@" + r.record.Target.Digest.String()}
	return info, nil
}

// Base reads the image straight from the content store.
func (e *ContainerdEngine) Base(ctx context.Context, ref string) (v1.Image, func() error, error) {
	c, cctx, err := e.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	r, err := e.resolve(cctx, c, ref)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	core := &ctrdImage{ctx: cctx, cs: c.ContentStore(), r: r}
	img, err := partial.CompressedToImage(core)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return img, c.Close, nil
}

// ctrdImage is an image in containerd's content store.
type ctrdImage struct {
	ctx context.Context
	cs  content.Store
	r   *resolved
}

var _ partial.CompressedImageCore = (*ctrdImage)(nil)

func (i *ctrdImage) RawConfigFile() ([]byte, error) { return readMeta(i.ctx, i.cs, i.r.m.Config) }
func (i *ctrdImage) MediaType() (types.MediaType, error) {
	return types.MediaType(i.r.manifest.MediaType), nil
}
func (i *ctrdImage) RawManifest() ([]byte, error) { return i.r.raw, nil }
func (i *ctrdImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h.String() == i.r.m.Config.Digest.String() {
		return &ctrdBlob{i: i, d: i.r.m.Config}, nil
	}
	for _, l := range i.r.m.Layers {
		if l.Digest.String() == h.String() {
			return &ctrdBlob{i: i, d: l}, nil
		}
	}
	return nil, fmt.Errorf("containerd image: no blob %s", h)
}

type ctrdBlob struct {
	i *ctrdImage
	d ocispec.Descriptor
}

func (b *ctrdBlob) Digest() (v1.Hash, error) { return v1.NewHash(b.d.Digest.String()) }
func (b *ctrdBlob) Size() (int64, error)     { return b.d.Size, nil }
func (b *ctrdBlob) MediaType() (types.MediaType, error) {
	return types.MediaType(b.d.MediaType), nil
}
func (b *ctrdBlob) Compressed() (io.ReadCloser, error) {
	ra, err := b.i.cs.ReaderAt(b.i.ctx, b.d)
	if err != nil {
		return nil, fmt.Errorf("containerd blob %s: %v: %w", b.d.Digest, err, ErrContainerd)
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(ra, 0, ra.Size()), ra}, nil
}

// Load imports img as ref. The image ref named before is kept under its
// retained name. The archive is streamed: nothing is staged on disk.
func (e *ContainerdEngine) Load(ctx context.Context, img v1.Image, ref string) error {
	c, ctx, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	newID, err := img.ConfigName()
	if err != nil {
		return err
	}
	is := c.ImageService()
	if old, err := e.resolve(ctx, c, ref); err == nil {
		if oldID := old.m.Config.Digest.String(); oldID != newID.String() {
			keep := images.Image{Name: retainedName(ref, oldID), Target: old.record.Target, Labels: old.record.Labels}
			if _, err := is.Update(ctx, keep, "target"); err != nil {
				if !cerrdefs.IsNotFound(err) {
					return fmt.Errorf("keep the replaced image: %v: %w", err, ErrContainerd)
				}
				if _, err := is.Create(ctx, keep); err != nil {
					return fmt.Errorf("keep the replaced image: %v: %w", err, ErrContainerd)
				}
			}
		}
	} else if !errors.Is(err, ErrNoImage) {
		return err
	}

	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := writeOCIArchive(pw, img, ref)
		pw.CloseWithError(err)
		werr <- err
	}()
	imported, err := c.Import(ctx, pr, containerd.WithImportPlatform(e.platform))
	pr.CloseWithError(errors.New("import stopped reading"))
	if werr := <-werr; werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("import %s into containerd: %v: %w", ref, err, ErrContainerd)
	}
	var rec *images.Image
	for i := range imported {
		if imported[i].Name == ref {
			rec = &imported[i]
		}
	}
	if rec == nil {
		return fmt.Errorf("import %s into containerd: no image record made: %w", ref, ErrContainerd)
	}
	r, err := e.resolve(ctx, c, ref)
	if err != nil {
		return err
	}
	if got := r.m.Config.Digest.String(); got != newID.String() {
		return fmt.Errorf("containerd image %s has config %s, want %s: %w", ref, got, newID, ErrVerify)
	}
	if e.cfg.Unpack == nil || *e.cfg.Unpack {
		if err := containerd.NewImageWithPlatform(c, *rec, e.platform).Unpack(ctx, e.cfg.Snapshotter); err != nil {
			return fmt.Errorf("unpack %s (snapshotter %q): %v: %w", ref, e.cfg.Snapshotter, err, ErrContainerd)
		}
	}
	return nil
}

// Remove deletes the retained records of image id.
func (e *ContainerdEngine) Remove(ctx context.Context, id string) error {
	c, ctx, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	is := c.ImageService()
	recs, err := is.List(ctx)
	if err != nil {
		return fmt.Errorf("list containerd images: %v: %w", err, ErrContainerd)
	}
	n := 0
	for _, rec := range recs {
		if !isRetainedName(rec.Name, id) {
			continue
		}
		r, err := e.resolve(ctx, c, rec.Name)
		if err != nil || r.m.Config.Digest.String() != id {
			continue
		}
		if err := is.Delete(ctx, rec.Name, images.SynchronousDelete()); err != nil {
			return fmt.Errorf("delete containerd image %s: %v: %w", rec.Name, err, ErrContainerd)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("containerd: no retained image %s: %w", id, ErrNoImage)
	}
	return nil
}

// InUse lists the config digests of the images of all containers in the
// namespace.
func (e *ContainerdEngine) InUse(ctx context.Context) (map[string]bool, error) {
	c, ctx, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cs, err := c.ContainerService().List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containerd containers: %v: %w", err, ErrContainerd)
	}
	used := map[string]bool{}
	for _, ct := range cs {
		if ct.Image == "" {
			continue
		}
		r, err := e.resolve(ctx, c, ct.Image)
		if errors.Is(err, ErrNoImage) {
			continue
		}
		if err != nil {
			return nil, err
		}
		used[r.m.Config.Digest.String()] = true
	}
	return used, nil
}

// writeOCIArchive writes img as a tar of an OCI layout whose index.json
// names it ref (io.containerd.image.name and org.opencontainers.image.ref.name)
// and gives its platform from the config, so that an import records ref
// with the image's own manifest as target.
func writeOCIArchive(w io.Writer, img v1.Image, ref string) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: %d bytes, want %d", name, n, size)
		}
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	layoutJSON := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	if err := file("oci-layout", int64(len(layoutJSON)), bytes.NewReader(layoutJSON)); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := file(blob(m.Config.Digest), int64(len(cfgRaw)), bytes.NewReader(cfgRaw)); err != nil {
		return err
	}
	for _, ld := range m.Layers {
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blob(ld.Digest), ld.Size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
	}
	md := digest.FromBytes(raw)
	mh, _ := v1.NewHash(md.String())
	if err := file(blob(mh), int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return err
	}
	desc := ocispec.Descriptor{
		MediaType: string(mt),
		Digest:    md,
		Size:      int64(len(raw)),
		Platform:  &ocispec.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		Annotations: map[string]string{
			images.AnnotationImageName: ref,
			ocispec.AnnotationRefName:  ref,
		},
	}
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specsVersioned(),
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	})
	if err != nil {
		return err
	}
	if err := file("index.json", int64(len(idx)), bytes.NewReader(idx)); err != nil {
		return err
	}
	return tw.Close()
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
