package imagetest

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLayerTar(t *testing.T) {
	files := []File{
		{Name: "etc/os-release", Data: "ID=skiff\n"},
		{Name: "app/empty", Data: ""},
		{Name: "app/bin", Data: string(Noise(1, 2, 3000))},
	}
	tr := tar.NewReader(bytes.NewReader(LayerTar(t, files...)))
	var got []File
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || h.Mode != 0o644 || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: type %c mode %o mtime %v, want regular 644 at 1700000000", h.Name, h.Typeflag, h.Mode, h.ModTime)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, File{Name: h.Name, Data: string(b)})
	}
	if diff := cmp.Diff(files, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

// TestImageDigests pins the digests of a small image: the golden deltas in
// delta/testdata/golden are made from images built this way, so a change
// here would change them.
func TestImageDigests(t *testing.T) {
	build := func() (manifest, config string) {
		img := Image(t,
			LayerTar(t, File{Name: "etc/os-release", Data: "ID=skiff\nVERSION=1\n"}),
			LayerTar(t, File{Name: "app/config.yaml", Data: "level: info\n"}, File{Name: "app/new.bin", Data: string(Noise(3, 0x5eed, 1000))}),
		)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.RootFS.DiffIDs) != 2 {
			t.Errorf("config: os %q arch %q %d diff IDs, want linux amd64 2", cf.OS, cf.Architecture, len(cf.RootFS.DiffIDs))
		}
		md, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		cd, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		return md.String(), cd.String()
	}
	m1, c1 := build()
	m2, c2 := build()
	if m1 != m2 || c1 != c2 {
		t.Fatalf("two builds differ: manifest %s vs %s, config %s vs %s", m1, m2, c1, c2)
	}
	const (
		wantManifest = "sha256:c5a281fe93a711707a74830073b9da50835796204ef70ff60e77c943761abbd9"
		wantConfig   = "sha256:66b104d36cdd5b0130feacc3d31a68aeadafe0cc0009ddc092201af014ddc56d"
	)
	if m1 != wantManifest || c1 != wantConfig {
		t.Errorf("manifest %s config %s, want %s %s", m1, c1, wantManifest, wantConfig)
	}
}

func TestNoise(t *testing.T) {
	a, b := Noise(7, 1, 4096), Noise(7, 1, 4096)
	if !bytes.Equal(a, b) {
		t.Error("same seed and stream gave different bytes")
	}
	if bytes.Equal(a, Noise(7, 2, 4096)) || bytes.Equal(a, Noise(8, 1, 4096)) {
		t.Error("another seed or stream gave the same bytes")
	}
	if !bytes.Equal(Noise(7, 1, 100), a[:100]) {
		t.Error("a shorter read is not a prefix of a longer one")
	}
}

func TestRef(t *testing.T) {
	r := Ref(t, "127.0.0.1:5000/web:stable")
	if got := r.Context().Registry.Scheme(); got != "http" {
		t.Errorf("scheme %q, want http for a local registry", got)
	}
	if got := r.Identifier(); got != "stable" {
		t.Errorf("identifier %q, want stable", got)
	}
}
