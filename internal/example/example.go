package example

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// Tags of the two images.
const (
	OldTag = "example/app:1"
	NewTag = "example/app:2"
)

// Paths are the files and directories Write creates.
type Paths struct {
	OldArchive string // docker-archive of example/app:1
	NewArchive string // docker-archive of example/app:2
	OldLayout  string // OCI layout holding example/app:1
	NewLayout  string // OCI layout holding example/app:2
}

// ErrGenerate reports a failure to build the example images.
var ErrGenerate = errors.New("example: cannot generate images")

// LayerTars returns the uncompressed layer tars of both images, base first.
// The base layer is the same in both.
func LayerTars() (old, new [][]byte, err error) {
	base := baseLayer()
	run1, run2 := runtimeLayers(base)
	app1, app2 := appLayers(base)
	var tars [5][]byte
	for i, l := range []*layer{base, run1, run2, app1, app2} {
		if tars[i], err = l.tar(); err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrGenerate, err)
		}
	}
	return [][]byte{tars[0], tars[1], tars[3]}, [][]byte{tars[0], tars[2], tars[4]}, nil
}

// Images returns the two images in memory. Their layers are gzip-compressed
// at compress/gzip's default level.
func Images() (old, new v1.Image, err error) {
	oldTars, newTars, err := LayerTars()
	if err != nil {
		return nil, nil, err
	}
	// oldTars[0] and newTars[0] are the same base layer: compress it once.
	var ol, nl []v1.Layer
	for i, t := range append(oldTars, newTars[1:]...) {
		l, err := gzipLayer(t)
		if err != nil {
			return nil, nil, err
		}
		if i < len(oldTars) {
			ol = append(ol, l)
		}
		if i == 0 || i >= len(oldTars) {
			nl = append(nl, l)
		}
	}
	if old, err = image(ol, "1.4.2", tApp1, tRun1); err != nil {
		return nil, nil, err
	}
	if new, err = image(nl, "1.5.0", tApp2, tRun2); err != nil {
		return nil, nil, err
	}
	return old, new, nil
}

// gzipLayer compresses t at compress/gzip's default level.
func gzipLayer(t []byte) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(t); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	l := &memLayer{tar: t, gz: buf.Bytes()}
	l.diffID, _, _ = v1.SHA256(bytes.NewReader(l.tar))
	l.digest, _, _ = v1.SHA256(bytes.NewReader(l.gz))
	return l, nil
}

// memLayer is a gzip layer held in memory with both digests known.
type memLayer struct {
	tar, gz        []byte
	diffID, digest v1.Hash
}

var _ v1.Layer = (*memLayer)(nil)

func (l *memLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *memLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *memLayer) Size() (int64, error)     { return int64(len(l.gz)), nil }
func (l *memLayer) MediaType() (types.MediaType, error) {
	return types.DockerLayer, nil
}
func (l *memLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.gz)), nil
}
func (l *memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}

func image(layers []v1.Layer, version string, created, runtimeCreated time.Time) (v1.Image, error) {
	cfg := &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: created},
		Config: v1.Config{
			Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "APP_VERSION=" + version},
			Entrypoint: []string{"/app/bin/server"},
			Cmd:        []string{"--config", "/app/config/app.yaml"},
			WorkingDir: "/app",
			User:       "1000:1000",
			ExposedPorts: map[string]struct{}{
				"8080/tcp": {},
			},
			Labels: map[string]string{
				"org.opencontainers.image.title":   "example/app",
				"org.opencontainers.image.version": version,
			},
		},
		RootFS: v1.RootFS{Type: "layers"},
	}
	img, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrGenerate, err)
	}
	history := []v1.History{
		{Created: v1.Time{Time: tBase}, CreatedBy: "/bin/sh -c #(nop) ADD file:5d4e1c0b7a2f in / "},
		{Created: v1.Time{Time: runtimeCreated}, CreatedBy: "RUN /bin/sh -c apt-get update && apt-get install -y --no-install-recommends libssl3 libsqlite3-0 libfoo1 && rm -rf /var/lib/apt/lists/* # buildkit", Comment: "buildkit.dockerfile.v0"},
		{Created: v1.Time{Time: created}, CreatedBy: "COPY dist/ /app/ # buildkit", Comment: "buildkit.dockerfile.v0"},
	}
	var adds []mutate.Addendum
	for i, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, History: history[i]})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("%w: layers: %w", ErrGenerate, err)
	}
	return img, nil
}

// Write writes old.tar and new.tar (docker-archive, gzip layers) and old/
// and new/ OCI layouts into dir, tagged example/app:1 and example/app:2.
// Existing outputs are replaced.
func Write(ctx context.Context, dir string) (Paths, error) {
	p := Paths{
		OldArchive: filepath.Join(dir, "old.tar"),
		NewArchive: filepath.Join(dir, "new.tar"),
		OldLayout:  filepath.Join(dir, "old"),
		NewLayout:  filepath.Join(dir, "new"),
	}
	old, new, err := Images()
	if err != nil {
		return Paths{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Paths{}, err
	}
	for _, out := range []struct {
		img     v1.Image
		tag     string
		archive string
		layout  string
	}{{old, OldTag, p.OldArchive, p.OldLayout}, {new, NewTag, p.NewArchive, p.NewLayout}} {
		if err := ctx.Err(); err != nil {
			return Paths{}, err
		}
		tag, err := name.NewTag(out.tag)
		if err != nil {
			return Paths{}, err
		}
		if err := writeArchive(out.archive, tag, out.img); err != nil {
			return Paths{}, err
		}
		if err := writeLayout(out.layout, tag, out.img); err != nil {
			return Paths{}, err
		}
	}
	return p, nil
}

// writeArchive writes a docker-archive through a temporary file, so a
// failure leaves no partial archive behind.
func writeArchive(path string, tag name.Tag, img v1.Image) error {
	err := atomicfile.Write(path, func(w io.Writer) error { return tarball.Write(tag, img, w) })
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// writeLayout writes a fresh OCI layout holding img, annotated with its
// reference the way containerd and skopeo do.
func writeLayout(dir string, tag name.Tag, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	err = lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name": "docker.io/" + tag.String(),
		ocispec.AnnotationRefName:  tag.TagStr(),
	}))
	if err != nil {
		return fmt.Errorf("write %s: %w", dir, err)
	}
	return nil
}
