package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/flock"
	"github.com/skiff-dev/skiff/layerfs"
)

// refNameAnnotation is the OCI annotation that names an entry of a layout.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// OCIEngine keeps images in an OCI image layout directory, each under its
// org.opencontainers.image.ref.name. It has no containers.
type OCIEngine struct {
	Dir      string
	Platform string
}

var (
	_ Engine          = (*OCIEngine)(nil)
	_ retainedRemover = (*OCIEngine)(nil)
	_ restorer        = (*OCIEngine)(nil)
)

func (e *OCIEngine) ref(name string) string { return "oci:" + e.Dir + ":" + name }

func (e *OCIEngine) opts() []layerfs.Option {
	if e.Platform != "" {
		return []layerfs.Option{layerfs.WithPlatform(e.Platform)}
	}
	return nil
}

func (e *OCIEngine) open(ctx context.Context, ref string) (*layerfs.Image, error) {
	img, err := layerfs.Open(ctx, e.ref(ref), e.opts()...)
	if errors.Is(err, layerfs.ErrImageNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	if errors.Is(err, layerfs.ErrNotImage) && e.layoutMissing() {
		// Nothing loaded yet: a directory without index.json (or none).
		return nil, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	return img, err
}

// layoutMissing reports whether the layout has no index.json yet.
func (e *OCIEngine) layoutMissing() bool {
	_, err := os.Stat(filepath.Join(e.Dir, "index.json"))
	return errors.Is(err, fs.ErrNotExist)
}

// Inspect describes the image under ref.
func (e *OCIEngine) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	img, err := e.open(ctx, ref)
	if err != nil {
		return ImageInfo{}, err
	}
	defer img.Close()
	info, err := imageInfo(img)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("%s: %w", e.ref(ref), err)
	}
	return info, nil
}

// Base opens the image under ref.
func (e *OCIEngine) Base(ctx context.Context, ref string) (v1.Image, func() error, error) {
	img, err := e.open(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	return img, img.Close, nil
}

// Load writes img under ref; the image ref named before stays in the
// layout under its retained name.
func (e *OCIEngine) Load(ctx context.Context, img v1.Image, ref string) error {
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return err
	}
	newID, err := img.ConfigName()
	if err != nil {
		return err
	}
	if old, err := e.open(ctx, ref); err == nil {
		oldID, err := old.ConfigName()
		if err == nil && oldID != newID {
			err = layerfs.Write(ctx, e.ref(retainedName(ref, oldID.String())), old, e.opts()...)
		}
		old.Close()
		if err != nil {
			return fmt.Errorf("keep the replaced image: %w", err)
		}
	} else if !errors.Is(err, ErrNoImage) && !errors.Is(err, layerfs.ErrNotImage) {
		return err
	}
	return layerfs.Write(ctx, e.ref(ref), img, e.opts()...)
}

// Remove drops the retained entries of image id and the blobs nothing
// references any more. index.json is replaced atomically, before any blob
// goes, under the layout's lock (the one layerfs takes while it writes):
// a kill leaves the old index or the new one, and at worst blobs that no
// entry references.
func (e *OCIEngine) Remove(ctx context.Context, id string) error {
	return e.remove(ctx, id, func(n string) bool { return isRetainedName(n, id) })
}

// RemoveRetained is Remove of only ref's retained entry of image id: other
// images sharing the layout keep theirs.
func (e *OCIEngine) RemoveRetained(ctx context.Context, ref, id string) error {
	want := retainedName(ref, id)
	return e.remove(ctx, id, func(n string) bool { return n == want })
}

func (e *OCIEngine) remove(ctx context.Context, id string, drop func(name string) bool) error {
	return e.editIndex(ctx, func(im *v1.IndexManifest) error {
		keep := make([]v1.Descriptor, 0, len(im.Manifests))
		for _, d := range im.Manifests {
			if !drop(d.Annotations[refNameAnnotation]) {
				keep = append(keep, d)
			}
		}
		if len(keep) == len(im.Manifests) {
			return fmt.Errorf("%w: no retained image %s in %s", ErrNoImage, id, e.Dir)
		}
		im.Manifests = keep
		return nil
	})
}

// editIndex changes the layout's index.json by edit under the layout's
// lock, in one atomic rewrite, then deletes the blobs no entry reaches
// any more.
func (e *OCIEngine) editIndex(ctx context.Context, edit func(*v1.IndexManifest) error) error {
	unlock, err := flock.Dir(ctx, e.Dir, nil)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: no layout %s", ErrNoImage, e.Dir)
		}
		return fmt.Errorf("lock %s: %w", e.Dir, err)
	}
	defer unlock()
	p := filepath.Join(e.Dir, "index.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if err := edit(im); err != nil {
		return err
	}
	out, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(p, out); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return gcLayout(ctx, layout.Path(e.Dir))
}

// Restore puts previous back under ref after a failed load: the retained
// entry is renamed ref (replacing the failed one; with previous "" ref's
// entry is dropped), in one atomic rewrite of index.json under the
// layout's lock, and the blobs only the failed image used are deleted.
func (e *OCIEngine) Restore(ctx context.Context, ref, previous string) error {
	retained := ""
	if previous != "" {
		retained = retainedName(ref, previous)
	}
	return e.editIndex(ctx, func(im *v1.IndexManifest) error {
		found := previous == ""
		keep := make([]v1.Descriptor, 0, len(im.Manifests))
		for _, d := range im.Manifests {
			switch d.Annotations[refNameAnnotation] {
			case ref:
				continue
			case retained:
				if retained != "" {
					ann := maps.Clone(d.Annotations)
					ann[refNameAnnotation] = ref
					d.Annotations = ann
					found = true
				}
			}
			keep = append(keep, d)
		}
		if !found {
			return fmt.Errorf("%w: no retained image %s (%s) in %s", ErrNoImage, previous, retained, e.Dir)
		}
		im.Manifests = keep
		return nil
	})
}

// InUse is empty: a layout has no containers.
func (e *OCIEngine) InUse(context.Context) (map[string]bool, error) { return map[string]bool{}, nil }

// gcLayout removes the blobs of a layout that no index entry reaches
// (among them what an interrupted write left). The caller holds the
// layout's lock.
func gcLayout(ctx context.Context, lp layout.Path) error {
	idx, err := lp.ImageIndex()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	if err := reachable(idx, keep, 0); err != nil {
		return err
	}
	dir := filepath.Join(string(lp), "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !keep["sha256:"+ent.Name()] {
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func reachable(idx v1.ImageIndex, keep map[string]bool, depth int) error {
	if depth > 4 {
		return fmt.Errorf("indexes nested too deep")
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	for _, d := range im.Manifests {
		keep[d.Digest.String()] = true
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return err
			}
			if err := reachable(child, keep, depth+1); err != nil {
				return err
			}
		case d.MediaType.IsImage():
			img, err := idx.Image(d.Digest)
			if err != nil {
				return err
			}
			m, err := img.Manifest()
			if err != nil {
				return err
			}
			keep[m.Config.Digest.String()] = true
			for _, l := range m.Layers {
				keep[l.Digest.String()] = true
			}
		}
	}
	return nil
}
