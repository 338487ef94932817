package corpus

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// writeArchive writes a docker-archive through a temporary file.
func writeArchive(ctx context.Context, p, tag string, img v1.Image) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := tarball.WriteToFile(tmp, t, img); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return os.Rename(tmp, p)
}

// writeLayout writes an OCI layout holding img through a temporary
// directory, annotated with its reference the way containerd and skopeo do.
func writeLayout(ctx context.Context, dir, tag string, img v1.Image) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	err = lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          "docker.io/" + t.String(),
		"org.opencontainers.image.ref.name": t.TagStr(),
	}))
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("write %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// writeResaved writes img the way `docker save` (Docker 25 and later)
// does: an OCI layout in a tar plus manifest.json, uncompressed layers
// named by diff_id, every member's mtime the image's creation time. The
// config bytes and diff_ids are img's. The repositories file of real
// docker save output is left out (readers ignore it).
func writeResaved(ctx context.Context, p, tag string, img v1.Image) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	type blob struct {
		name string
		size int64
		open func() (io.ReadCloser, error)
	}
	bytesBlob := func(name string, b []byte) blob {
		return blob{name, int64(len(b)), func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(string(b))), nil }}
	}
	blobPath := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	blobs := []blob{bytesBlob(blobPath(cfgName), cfg)}
	type desc struct {
		MediaType types.MediaType `json:"mediaType"`
		Digest    v1.Hash         `json:"digest"`
		Size      int64           `json:"size"`
	}
	var layerDescs []desc
	var layerPaths []string
	sources := map[string]desc{}
	for _, l := range layers {
		id, err := l.DiffID()
		if err != nil {
			return err
		}
		size, err := uncompressedSize(l)
		if err != nil {
			return err
		}
		d := desc{types.OCIUncompressedLayer, id, size}
		layerDescs = append(layerDescs, d)
		layerPaths = append(layerPaths, blobPath(id))
		sources[id.String()] = d
		if !slices.ContainsFunc(blobs, func(b blob) bool { return b.name == blobPath(id) }) {
			blobs = append(blobs, blob{blobPath(id), size, l.Uncompressed})
		}
	}
	manifest, err := json.Marshal(struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     types.MediaType `json:"mediaType"`
		Config        desc            `json:"config"`
		Layers        []desc          `json:"layers"`
	}{2, types.OCIManifestSchema1, desc{types.OCIConfigJSON, cfgName, int64(len(cfg))}, layerDescs})
	if err != nil {
		return err
	}
	mh, _, err := v1.SHA256(strings.NewReader(string(manifest)))
	if err != nil {
		return err
	}
	blobs = append(blobs, bytesBlob(blobPath(mh), manifest))
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     types.OCIImageIndex,
		"manifests": []map[string]any{{
			"mediaType": types.OCIManifestSchema1,
			"digest":    mh,
			"size":      len(manifest),
			"annotations": map[string]string{
				"io.containerd.image.name":          "docker.io/" + t.String(),
				"org.opencontainers.image.ref.name": t.TagStr(),
			},
		}},
	})
	if err != nil {
		return err
	}
	dockerManifest, err := json.Marshal([]map[string]any{{
		"Config":       blobPath(cfgName),
		"RepoTags":     []string{t.String()},
		"Layers":       layerPaths,
		"LayerSources": sources,
	}})
	if err != nil {
		return err
	}
	blobs = append(blobs,
		bytesBlob("index.json", index),
		bytesBlob("manifest.json", dockerManifest),
		bytesBlob("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)))
	// The metadata goes first, then the blobs in lexical order: the
	// reverse of ggcr's order (config, layers, manifest.json last), so
	// the two archives of one image always differ in member order.
	slices.SortFunc(blobs, func(a, b blob) int {
		if ab, bb := strings.HasPrefix(a.name, "blobs/"), strings.HasPrefix(b.name, "blobs/"); ab != bb {
			if bb {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})

	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	defer f.Close()
	mtime := cf.Created.Time
	if mtime.IsZero() {
		mtime = time.Unix(1, 0)
	}
	tw := tar.NewWriter(f)
	dirsDone := false
	for _, b := range blobs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !dirsDone && strings.HasPrefix(b.name, "blobs/") {
			dirsDone = true
			for _, d := range []string{"blobs/", "blobs/sha256/"} {
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: b.name, Size: b.size, Mode: 0o644, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		rc, err := b.open()
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("write %s member %s: %w", p, b.name, err)
		}
		if n != b.size {
			return fmt.Errorf("write %s member %s: %d bytes, want %d", p, path.Base(b.name), n, b.size)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func uncompressedSize(l v1.Layer) (int64, error) {
	if fl, ok := l.(*typedLayer); ok {
		return fl.tarSize, nil
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	return io.Copy(io.Discard, rc)
}
