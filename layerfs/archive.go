package layerfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/ctxio"
)

// docker-archive: the tar "docker save" writes (go-containerregistry's
// tarball package), read and written.

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
func writeDockerArchive(ctx context.Context, r Ref, img v1.Image, names []string) error {
	refs := map[name.Reference]v1.Image{}
	if r.Name == "" && len(names) > 0 {
		for _, n := range names {
			t, err := name.NewTag(n)
			if err != nil {
				return fmt.Errorf("write %s: image name %q: %v: %w", r, n, err, ErrBadReference)
			}
			refs[t] = img
		}
	} else {
		ref, err := archiveRef(r, img)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	err := atomicfile.Write(r.Path, func(w io.Writer) error {
		return tarball.MultiRefWrite(refs, ctxio.Writer(ctx, w))
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
