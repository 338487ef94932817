package layerfs

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// annotationRefName is the OCI annotation an oci: REF matches.
const annotationRefName = "org.opencontainers.image.ref.name"

// maxIndexDepth bounds how many nested indexes an OCI layout may chain.
const maxIndexDepth = 8

// Image is an opened image. Its v1.Image methods read lazily from where the
// reference points (for docker:// with the context given to Open). Close
// removes the temporary files Open made (an extracted oci-archive, an image
// saved from the engine); the image must not be read after Close.
type Image struct {
	v1.Image
	// Ref is the parsed reference the image was opened from.
	Ref Ref

	cleanup   func() error
	closeOnce sync.Once
	closeErr  error
}

// Close removes the image's temporary files. It is safe to call more than
// once.
func (i *Image) Close() error {
	i.closeOnce.Do(func() {
		if i.cleanup != nil {
			i.closeErr = i.cleanup()
		}
	})
	return i.closeErr
}

// Open opens the image a reference names (see ParseRef for the syntax).
// Errors name the reference and wrap one of ErrBadReference,
// ErrImageNotFound, ErrAmbiguous, ErrNotImage, ErrUnsafeArchive or
// ErrEngine where one applies. The caller must Close the image.
func Open(ctx context.Context, ref string, opts ...Option) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	o, err := makeRefOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	img, err := openRef(ctx, r, o)
	if err != nil || o.platform == nil {
		return img, err
	}
	if err := checkPlatform(img, *o.platform); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

// checkPlatform refuses an image whose config names another platform than
// the one asked for (WithPlatform): an index picks by platform, but a
// single-platform image is what it is, and a device must not get an image
// it cannot run. A config variant is compared only where both name one
// (arm64 configs often leave v8 out).
func checkPlatform(img *Image, want v1.Platform) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("open %s: config: %w", img.Ref, err)
	}
	if cf.OS == "" && cf.Architecture == "" {
		return nil // nothing to compare (some hand-made images)
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if got.OS != want.OS || got.Architecture != want.Architecture ||
		(got.Variant != "" && want.Variant != "" && got.Variant != want.Variant) {
		return fmt.Errorf("open %s: the image is for %s, not the platform %s asked for: %w", img.Ref, got.String(), want.String(), ErrPlatformMismatch)
	}
	return nil
}

// openRef opens r by its transport.
func openRef(ctx context.Context, r Ref, o *refOptions) (*Image, error) {
	switch r.Transport {
	case TransportDockerArchive:
		img, err := openDockerArchive(r, r.Path, r.Name)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportOCI:
		img, err := openOCILayout(r, r.Path, o)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportOCIArchive:
		return openOCIArchive(ctx, r, o)
	case TransportRegistry:
		img, err := openRegistry(ctx, r, o)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportDaemon:
		return openDaemon(ctx, r, o)
	}
	// ParseRef accepts only the transports above.
	return nil, fmt.Errorf("open %s: unhandled transport %q: %w", r, r.Transport, ErrBadReference)
}

// Write writes img where a reference points:
//
//   - docker-archive: a `docker save` tar, written to a temporary file
//     beside PATH and renamed over it; TAG, if given, becomes its RepoTag;
//   - oci: DIR is created as a layout if needed; the image replaces any
//     entry with the same ref.name annotation (REF), or with the same
//     digest and no ref.name when REF is absent;
//   - oci-archive: a tar of a fresh layout holding the image, written
//     atomically like docker-archive;
//   - docker://: pushed with remote.Write;
//   - docker-daemon: loaded into the engine; its image ID is checked to be
//     the config digest of img.
func Write(ctx context.Context, ref string, img v1.Image, opts ...Option) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	o, err := makeRefOptions(opts)
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	switch r.Transport {
	case TransportDockerArchive:
		return writeDockerArchive(ctx, r, img)
	case TransportOCI:
		return writeOCILayout(ctx, r, r.Path, img)
	case TransportOCIArchive:
		return writeOCIArchive(ctx, r, img, o)
	case TransportRegistry:
		return writeRegistry(ctx, r, img, o)
	case TransportDaemon:
		return writeDaemon(ctx, r, img)
	}
	return fmt.Errorf("write %s: unhandled transport %q: %w", r, r.Transport, ErrBadReference)
}

// ---------------------------------------------------------------- docker-archive

// openDockerArchive opens the image tagged tag (any image if tag is empty
// and the archive holds one) of the docker-archive at p. Errors name r.
func openDockerArchive(r Ref, p, tag string) (v1.Image, error) {
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: file %s does not exist: %w", r, p, ErrImageNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("open %s: %s is a directory, not a docker-archive tar (an OCI layout? use oci:%s): %w", r, p, p, ErrNotImage)
	}
	opener := func() (io.ReadCloser, error) { return os.Open(p) }
	m, err := tarball.LoadManifest(opener)
	if err != nil {
		why := fmt.Sprintf("no readable manifest.json (%v)", err)
		if isGzipFile(p) {
			why = "the file is gzip-compressed; gunzip it first"
		}
		return nil, fmt.Errorf("open %s: %s is not a docker-archive: %s: %w", r, p, why, ErrNotImage)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("open %s: %s is not a docker-archive: manifest.json lists no images: %w", r, p, ErrNotImage)
	}
	var want *name.Tag
	if tag == "" {
		if len(m) > 1 {
			return nil, fmt.Errorf("open %s: the archive holds %d images, add :TAG to pick one (tags: %s): %w",
				r, len(m), archiveTags(m), ErrAmbiguous)
		}
	} else {
		t, err := name.NewTag(tag)
		if err != nil {
			return nil, fmt.Errorf("open %s: tag %q: %v: %w", r, tag, err, ErrBadReference)
		}
		if !archiveHasTag(m, t) {
			return nil, fmt.Errorf("open %s: tag %q is not in the archive (tags: %s): %w", r, tag, archiveTags(m), ErrImageNotFound)
		}
		want = &t
	}
	img, err := tarball.Image(opener, want)
	if err != nil {
		return nil, fmt.Errorf("open %s: %s is not a readable docker-archive: %v: %w", r, p, err, ErrNotImage)
	}
	return img, nil
}

func archiveHasTag(m tarball.Manifest, t name.Tag) bool {
	for _, d := range m {
		for _, s := range d.RepoTags {
			if rt, err := name.NewTag(s); err == nil && rt.Name() == t.Name() {
				return true
			}
		}
	}
	return false
}

// archiveTags lists the tags of a docker-archive manifest for error messages.
func archiveTags(m tarball.Manifest) string {
	var tags []string
	for i, d := range m {
		if len(d.RepoTags) == 0 {
			tags = append(tags, fmt.Sprintf("image #%d untagged (config %s)", i+1, d.Config))
		}
		tags = append(tags, d.RepoTags...)
	}
	if len(tags) == 0 {
		return "none"
	}
	return strings.Join(tags, ", ")
}

func isGzipFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [2]byte
	_, err = io.ReadFull(f, b[:])
	return err == nil && b[0] == 0x1f && b[1] == 0x8b
}

// writeDockerArchive writes img as a docker-archive at r.Path, tagged
// r.Name if given, through a temporary file renamed into place.
func writeDockerArchive(ctx context.Context, r Ref, img v1.Image) error {
	ref, err := archiveRef(r, img)
	if err != nil {
		return err
	}
	err = atomicfile.Write(r.Path, func(w io.Writer) error {
		return tarball.Write(ref, img, &ctxWriter{ctx: ctx, w: w})
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}

// archiveRef is the reference tarball.Write records: the tag, or for an
// untagged archive a digest reference (tarball.Write records no RepoTags
// for those).
func archiveRef(r Ref, img v1.Image) (name.Reference, error) {
	if r.Name != "" {
		t, err := name.NewTag(r.Name)
		if err != nil {
			return nil, fmt.Errorf("write %s: tag %q: %v: %w", r, r.Name, err, ErrBadReference)
		}
		return t, nil
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("write %s: config digest: %w", r, err)
	}
	d, err := name.NewDigest("untagged@" + cfg.String())
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", r, err)
	}
	return d, nil
}

// ---------------------------------------------------------------- oci

// openOCILayout opens the image r.Name picks (by ref.name annotation) from
// the OCI layout at dir, resolving nested indexes by platform.
func openOCILayout(r Ref, dir string, o *refOptions) (v1.Image, error) {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open %s: directory %s does not exist: %w", r, dir, ErrImageNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open %s: %s is a file, not an OCI layout directory (a tar? use oci-archive:%s): %w", r, dir, dir, ErrNotImage)
	}
	lp, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %s is not an OCI layout (no index.json): %w", r, dir, ErrNotImage)
	}
	idx, err := lp.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("open %s: %s: unreadable index.json: %v: %w", r, dir, err, ErrNotImage)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("open %s: %s: unreadable index.json: %v: %w", r, dir, err, ErrNotImage)
	}
	var desc v1.Descriptor
	if r.Name != "" {
		var found []v1.Descriptor
		for _, d := range im.Manifests {
			if d.Annotations[annotationRefName] == r.Name {
				found = append(found, d)
			}
		}
		switch {
		case len(found) == 0:
			return nil, fmt.Errorf("open %s: ref %q is not in the layout (it holds: %s): %w", r, r.Name, layoutEntries(im), ErrImageNotFound)
		case len(found) > 1 && !sameDigest(found):
			return nil, fmt.Errorf("open %s: ref %q names %d different manifests in the layout: %w", r, r.Name, len(found), ErrAmbiguous)
		}
		desc = found[0]
	} else {
		switch len(im.Manifests) {
		case 0:
			return nil, fmt.Errorf("open %s: the layout holds no manifests: %w", r, ErrImageNotFound)
		case 1:
			desc = im.Manifests[0]
		default:
			return nil, fmt.Errorf("open %s: the layout holds %d manifests, add :REF to pick one (it holds: %s): %w",
				r, len(im.Manifests), layoutEntries(im), ErrAmbiguous)
		}
	}
	return resolveDescriptor(r, idx, desc, o, 0)
}

// resolveDescriptor returns the image desc names in idx; an index is
// resolved to its child for the requested platform.
func resolveDescriptor(r Ref, idx v1.ImageIndex, desc v1.Descriptor, o *refOptions, depth int) (v1.Image, error) {
	switch {
	case desc.MediaType.IsImage():
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("open %s: manifest %s: %v: %w", r, desc.Digest, err, ErrNotImage)
		}
		return img, nil
	case desc.MediaType.IsIndex():
		if depth >= maxIndexDepth {
			return nil, fmt.Errorf("open %s: indexes nested more than %d deep: %w", r, maxIndexDepth, ErrNotImage)
		}
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("open %s: index %s: %v: %w", r, desc.Digest, err, ErrNotImage)
		}
		cm, err := child.IndexManifest()
		if err != nil {
			return nil, fmt.Errorf("open %s: index %s: %v: %w", r, desc.Digest, err, ErrNotImage)
		}
		want := o.platformOrDefault()
		for _, d := range cm.Manifests {
			if d.Platform != nil && d.Platform.Satisfies(want) && (d.MediaType.IsImage() || d.MediaType.IsIndex()) {
				return resolveDescriptor(r, child, d, o, depth+1)
			}
		}
		// An index of one image without a platform (as some tools write)
		// stands for that image when no platform was asked for.
		if o.platform == nil && len(cm.Manifests) == 1 && cm.Manifests[0].Platform == nil {
			return resolveDescriptor(r, child, cm.Manifests[0], o, depth+1)
		}
		return nil, fmt.Errorf("open %s: index %s has no image for platform %s (platforms: %s): %w",
			r, desc.Digest, want.String(), indexPlatforms(cm), ErrImageNotFound)
	}
	return nil, fmt.Errorf("open %s: %s has media type %q, not an image manifest or index: %w", r, desc.Digest, desc.MediaType, ErrNotImage)
}

func sameDigest(ds []v1.Descriptor) bool {
	for _, d := range ds[1:] {
		if d.Digest != ds[0].Digest {
			return false
		}
	}
	return true
}

// layoutEntries lists the entries of an index.json for error messages:
// their ref names, or digests for entries without one.
func layoutEntries(im *v1.IndexManifest) string {
	if len(im.Manifests) == 0 {
		return "nothing"
	}
	var s []string
	for _, d := range im.Manifests {
		if n := d.Annotations[annotationRefName]; n != "" {
			s = append(s, fmt.Sprintf("%q", n))
		} else {
			s = append(s, d.Digest.String()+" (no ref name)")
		}
	}
	return strings.Join(s, ", ")
}

func indexPlatforms(im *v1.IndexManifest) string {
	var s []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			s = append(s, "none given")
		} else {
			s = append(s, d.Platform.String())
		}
	}
	if len(s) == 0 {
		return "the index is empty"
	}
	return strings.Join(s, ", ")
}

// writeOCILayout is in ocilayout.go.

// ---------------------------------------------------------------- oci-archive

// openOCIArchive extracts the archive into a temporary directory, which the
// returned Image's Close removes, and opens it as an OCI layout.
func openOCIArchive(ctx context.Context, r Ref, o *refOptions) (*Image, error) {
	dir, err := os.MkdirTemp(o.tempDir, "skiff-oci-archive-*")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	cleanup := func() error { return os.RemoveAll(dir) }
	if err := extractOCIArchive(ctx, r, r.Path, dir); err != nil {
		_ = cleanup()
		return nil, err
	}
	img, err := openOCILayout(r, dir, o)
	if err != nil {
		_ = cleanup()
		return nil, err
	}
	return &Image{Image: img, Ref: r, cleanup: cleanup}, nil
}

// extractOCIArchive streams the tar (or gzip-compressed tar) at p into dir.
// Members must be relative paths without "..", of type directory, regular
// file, hard link to an earlier member, or symlink whose target is relative
// and has no ".." (so no chain of links can leave dir); anything else fails
// with ErrUnsafeArchive. Writes go through an os.Root on dir as a second
// guard.
func extractOCIArchive(ctx context.Context, r Ref, p, dir string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open %s: file %s does not exist: %w", r, p, ErrImageNotFound)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", r, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Errorf("open %s: %s is a directory, not an oci-archive tar (use oci:%s): %w", r, p, p, ErrNotImage)
	}
	br := bufio.NewReaderSize(f, 1<<16)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("open %s: %s: bad gzip: %v: %w", r, p, err, ErrNotImage)
		}
		defer gz.Close()
		src = gz
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", r, err)
	}
	defer root.Close()

	unsafe := func(member, why string) error {
		return fmt.Errorf("open %s: member %q %s: %w", r, member, why, ErrUnsafeArchive)
	}
	tr := tar.NewReader(src)
	members := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("open %s: %w", r, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("open %s: %s is not a readable tar: %v: %w", r, p, err, ErrNotImage)
		}
		members++
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		member, why := safeMemberPath(hdr.Name)
		if why != "" {
			return unsafe(hdr.Name, why)
		}
		if member == "." {
			continue
		}
		if parent := path.Dir(member); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created: %v", err))
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(member, 0o755); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created: %v", err))
			}
		case tar.TypeReg:
			out, err := root.OpenFile(member, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created (duplicate or through a link?): %v", err))
			}
			_, cerr := io.Copy(out, tr)
			if err := out.Close(); cerr == nil {
				cerr = err
			}
			if cerr != nil {
				return fmt.Errorf("open %s: extract %q: %w", r, hdr.Name, cerr)
			}
		case tar.TypeLink:
			target, why := safeMemberPath(hdr.Linkname)
			if why != "" {
				return unsafe(hdr.Name, "is a hard link whose target "+why)
			}
			if err := root.Link(target, member); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("is a hard link to %q that cannot be made: %v", hdr.Linkname, err))
			}
		case tar.TypeSymlink:
			t := hdr.Linkname
			if t == "" || path.IsAbs(t) || hasDotDot(t) {
				return unsafe(hdr.Name, fmt.Sprintf("is a symlink to %q, which may leave the archive (only relative targets without \"..\" are allowed)", t))
			}
			if err := root.Symlink(t, member); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("is a symlink that cannot be made: %v", err))
			}
		default:
			return unsafe(hdr.Name, fmt.Sprintf("has tar type %q, which an OCI layout never holds", hdr.Typeflag))
		}
	}
	if members == 0 {
		return fmt.Errorf("open %s: %s is an empty tar: %w", r, p, ErrNotImage)
	}
	return nil
}

// safeMemberPath cleans a tar member name; why is non-empty if the name is
// absolute, empty or climbs with "..".
func safeMemberPath(n string) (clean, why string) {
	if n == "" {
		return "", "has an empty name"
	}
	if strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
		return "", "is an absolute path or uses backslashes"
	}
	if hasDotDot(n) {
		return "", `climbs out with ".."`
	}
	return path.Clean(n), ""
}

func hasDotDot(p string) bool {
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return true
		}
	}
	return false
}

// writeOCIArchive writes img into a fresh layout in a temporary directory
// and tars it, in lexical order with fixed metadata, to r.Path atomically.
func writeOCIArchive(ctx context.Context, r Ref, img v1.Image, o *refOptions) error {
	dir, err := os.MkdirTemp(o.tempDir, "skiff-oci-archive-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	defer os.RemoveAll(dir)
	if err := writeOCILayout(ctx, r, dir, img); err != nil {
		return err
	}
	err = atomicfile.Write(r.Path, func(w io.Writer) error {
		return tarDir(ctx, dir, w)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}

// tarDir writes the tree under dir as a tar, members in lexical order,
// with zero timestamps and owners so that the bytes depend on content only.
func tarDir(ctx context.Context, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		hdr := &tar.Header{Name: rel, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, rel+"/", 0o755
			return tw.WriteHeader(hdr)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return fmt.Errorf("%s: unexpected file type %v in layout", p, d.Type())
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// ---------------------------------------------------------------- registry

func registryRef(r Ref, o *refOptions) (name.Reference, error) {
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(r.Name, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%s: registry reference %q: %v: %w", r, r.Name, err, ErrBadReference)
	}
	return ref, nil
}

func remoteOptions(ctx context.Context, o *refOptions) []remote.Option {
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(o.platformOrDefault()),
	}
	return ropts
}

func openRegistry(ctx context.Context, r Ref, o *refOptions) (v1.Image, error) {
	ref, err := registryRef(r, o)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	img, err := remote.Image(ref, remoteOptions(ctx, o)...)
	if err != nil {
		if isRegistryNotFound(err) {
			return nil, fmt.Errorf("open %s: %s is not in the registry: %v: %w", r, ref, err, ErrImageNotFound)
		}
		if strings.Contains(err.Error(), "no child with platform") {
			return nil, fmt.Errorf("open %s: %v: %w", r, err, ErrImageNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	return img, nil
}

func isRegistryNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

func writeRegistry(ctx context.Context, r Ref, img v1.Image, o *refOptions) error {
	ref, err := registryRef(r, o)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	if err := remote.Write(ref, img, remoteOptions(ctx, o)...); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}

// ---------------------------------------------------------------- helpers

// ctxWriter fails writes once ctx is done, so that writers without a
// context (tarball.Write) stop on cancellation.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
