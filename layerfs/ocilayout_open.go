package layerfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// oci: an OCI image layout directory, opened by reference (writing is
// ocilayout.go).

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
