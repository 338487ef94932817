package delta

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/skiff-dev/skiff/internal/example"
	"github.com/skiff-dev/skiff/layerfs"
)

// recompressed is img with every layer re-compressed by ggcr (another gzip
// level than the example's), written as a docker-archive and opened again:
// the same content, saved differently.
func recompressed(t *testing.T, img v1.Image, dir, name string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	out, err := mutate.ConfigFile(mutate.MediaType(emptyLike(t), "application/vnd.docker.distribution.manifest.v2+json"), cf)
	if err != nil {
		t.Fatal(err)
	}
	var adds []mutate.Addendum
	for _, l := range layers {
		l := l
		nl, err := tarball.LayerFromOpener(l.Uncompressed, tarball.WithCompressionLevel(9))
		if err != nil {
			t.Fatal(err)
		}
		adds = append(adds, mutate.Addendum{Layer: nl})
	}
	// Keep the config (history, rootfs) byte for byte: set it after the layers.
	out, err = mutate.Append(out, adds...)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := img.RawConfigFile()
	out = &rawConfigImage{Image: out, raw: raw}
	p := filepath.Join(dir, name)
	if err := layerfs.Write(context.Background(), "docker-archive:"+p, out); err != nil {
		t.Fatal(err)
	}
	return "docker-archive:" + p
}

// TestStableAcrossTransports: the same images given as docker-archive, OCI
// layout and a re-compressed docker-archive give byte-identical deltas.
func TestStableAcrossTransports(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p, err := example.Write(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	open := func(ref string) v1.Image {
		img, err := layerfs.Open(ctx, ref)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { img.Close() })
		return img
	}
	oldA, newA := open("docker-archive:"+p.OldArchive), open("docker-archive:"+p.NewArchive)
	pairs := map[string][2]v1.Image{
		"docker-archive": {oldA, newA},
		"oci-layout":     {open("oci:" + p.OldLayout), open("oci:" + p.NewLayout)},
		"recompressed":   {open(recompressed(t, oldA, dir, "old-re.tar")), open(recompressed(t, newA, dir, "new-re.tar"))},
	}
	var want []byte
	for _, name := range []string{"docker-archive", "oci-layout", "recompressed"} {
		var buf bytes.Buffer
		if _, err := Diff(ctx, pairs[name][0], pairs[name][1], &buf, DefaultOptions()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want == nil {
			want = buf.Bytes()
			continue
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: delta differs from the docker-archive one (%d vs %d bytes)", name, buf.Len(), len(want))
		}
	}
}

type rawConfigImage struct {
	v1.Image
	raw []byte
}

func (r *rawConfigImage) RawConfigFile() ([]byte, error) { return r.raw, nil }

func emptyLike(t *testing.T) v1.Image {
	t.Helper()
	return empty.Image
}

// applyWithManifest diffs with the target's manifest carried, applies, and
// checks the result has the target's manifest digest. The caller closes it.
func applyWithManifest(t *testing.T, oldImg, newImg v1.Image) *Result {
	t.Helper()
	ctx := context.Background()
	opts := DefaultOptions()
	opts.Manifest = true
	var buf bytes.Buffer
	rep, err := Diff(ctx, oldImg, newImg, &buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Reproducible {
		t.Fatalf("manifest not reproducible: %s", rep.NotReproducible)
	}
	res, err := Apply(ctx, oldImg, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	want, _ := newImg.Digest()
	if got, err := res.Image.Digest(); err != nil || got != want {
		t.Fatalf("manifest digest %s, want %s (%v)", got, want, err)
	}
	return res
}

// exampleLayouts opens the built-in example pair as OCI layouts (real
// manifests, gzip blobs); they are closed when the test ends.
func exampleLayouts(t *testing.T) (oldImg, newImg *layerfs.Image) {
	t.Helper()
	ctx := context.Background()
	p, err := example.Write(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if oldImg, err = layerfs.Open(ctx, "oci:"+p.OldLayout); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oldImg.Close() })
	if newImg, err = layerfs.Open(ctx, "oci:"+p.NewLayout); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { newImg.Close() })
	return oldImg, newImg
}

// TestManifestReproduced: from OCI layouts (a real manifest, gzip blobs),
// apply rebuilds the target's exact blobs and manifest digest.
func TestManifestReproduced(t *testing.T) {
	ctx := context.Background()
	oldImg, newImg := exampleLayouts(t)
	res := applyWithManifest(t, oldImg, newImg)
	// go-containerregistry's own checks of the registry form: every
	// digest, size and diff_id against the bytes served.
	if err := validate.Image(res.Image); err != nil {
		t.Errorf("rebuilt image in its registry form: %v", err)
	}
	want, _ := newImg.Digest()
	// Write it out as an OCI layout and read it back: same digest.
	out := t.TempDir()
	if err := layerfs.Write(ctx, "oci:"+out+":app:2", res.Image); err != nil {
		t.Fatal(err)
	}
	back, err := layerfs.Open(ctx, "oci:"+out+":app:2")
	if err != nil {
		t.Fatal(err)
	}
	defer back.Close()
	if d, _ := back.Digest(); d != want {
		t.Fatalf("written layout has manifest %s, want %s", d, want)
	}
}
