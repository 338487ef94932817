package imagetest

import (
	"archive/tar"
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// modTime is the modification time of every entry LayerTar writes:
// 2023-11-14T22:13:20Z.
const modTime = 1700000000

// File is one regular file of a layer.
type File struct {
	Name string // path in the layer, without a leading slash
	Data string // contents
}

// LayerTar returns an uncompressed layer tar holding files, in order, as
// regular files with mode 0644 and modification time 2023-11-14T22:13:20Z,
// in PAX format.
func LayerTar(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: 0o644, Size: int64(len(f.Data)), ModTime: time.Unix(modTime, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("imagetest: tar header for %q: %v", f.Name, err)
		}
		if _, err := io.WriteString(tw, f.Data); err != nil {
			t.Fatalf("imagetest: tar data for %q: %v", f.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatalf("imagetest: close tar: %v", err)
	}
	return buf.Bytes()
}

// Image returns a linux/amd64 image whose layers are the given uncompressed
// tars, bottom first, gzip-compressed by go-containerregistry. Nothing else
// is set in the config (no created time), so equal inputs give equal
// config, layer and manifest digests.
func Image(t testing.TB, layers ...[]byte) v1.Image {
	t.Helper()
	img := empty.Image
	for i, l := range layers {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(l)), nil })
		if err != nil {
			t.Fatalf("imagetest: layer %d: %v", i, err)
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			t.Fatalf("imagetest: append layer %d: %v", i, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("imagetest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("imagetest: set config: %v", err)
	}
	return img
}

// Noise returns n incompressible bytes from a PCG generator seeded with
// (seed, stream). Callers keep their own stream constant so that their
// test data does not change.
func Noise(seed, stream uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, stream))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Ref parses s as an image reference, allowing plain-HTTP registries (as
// httptest servers are), and fails the test if it does not parse.
func Ref(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatalf("imagetest: reference %q: %v", s, err)
	}
	return r
}
