package example

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.json")

type imageDigests struct {
	Manifest string   `json:"manifest"`
	Config   string   `json:"config"`
	DiffIDs  []string `json:"diff_ids"`
	Layers   []string `json:"layers"`
}

func digestsOf(t *testing.T, img v1.Image) imageDigests {
	t.Helper()
	var d imageDigests
	m, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	d.Manifest, d.Config = m.String(), c.String()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		id, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		dg, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		d.DiffIDs = append(d.DiffIDs, id.String())
		d.Layers = append(d.Layers, dg.String())
	}
	return d
}

// written caches one Write for the tests that only read.
var written struct {
	paths Paths
	err   error
}

func writeOnce(t *testing.T) Paths {
	t.Helper()
	if written.paths.OldArchive == "" && written.err == nil {
		dir, err := os.MkdirTemp("", "example-test-")
		if err != nil {
			t.Fatal(err)
		}
		written.paths, written.err = Write(context.Background(), dir)
	}
	if written.err != nil {
		t.Fatal(written.err)
	}
	return written.paths
}

func TestMain(m *testing.M) {
	code := m.Run()
	if written.paths.OldArchive != "" {
		os.RemoveAll(filepath.Dir(written.paths.OldArchive))
	}
	os.Exit(code)
}

func fileSHA(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWriteIsDeterministic(t *testing.T) {
	first := writeOnce(t)
	second, err := Write(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, a, b string }{
		{"old.tar", first.OldArchive, second.OldArchive},
		{"new.tar", first.NewArchive, second.NewArchive},
		{"old/index.json", filepath.Join(first.OldLayout, "index.json"), filepath.Join(second.OldLayout, "index.json")},
		{"new/index.json", filepath.Join(first.NewLayout, "index.json"), filepath.Join(second.NewLayout, "index.json")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if a, b := fileSHA(t, c.a), fileSHA(t, c.b); a != b {
				t.Errorf("sha256 differs between two runs: %s vs %s", a, b)
			}
		})
	}
}

func TestGolden(t *testing.T) {
	old, new, err := Images()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]imageDigests{"old": digestsOf(t, old), "new": digestsOf(t, new)}
	path := filepath.Join("testdata", "golden.json")
	if *update {
		b, _ := json.MarshalIndent(got, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	var want map[string]imageDigests
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("digests changed (-want +got); if intended, run go test -update:\n%s", d)
	}
}

// readLayer reads every member of a layer with archive/tar.
func readLayer(t *testing.T, l v1.Layer) map[string]*tarFile {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]*tarFile{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("layer tar %s: %v", h.Name, err)
		}
		if files[h.Name] != nil {
			t.Errorf("duplicate member %s", h.Name)
		}
		files[h.Name] = &tarFile{h, data}
	}
	return files
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func layersOf(t *testing.T, img v1.Image) []map[string]*tarFile {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 3 {
		t.Fatalf("got %d layers, want 3", len(ls))
	}
	var out []map[string]*tarFile
	for _, l := range ls {
		out = append(out, readLayer(t, l))
	}
	return out
}

func TestLayersAreRealistic(t *testing.T) {
	p := writeOnce(t)
	oldImg, err := tarball.ImageFromPath(p.OldArchive, nil)
	if err != nil {
		t.Fatal(err)
	}
	newImg, err := tarball.ImageFromPath(p.NewArchive, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, new := layersOf(t, oldImg), layersOf(t, newImg)
	lib := libDir + "/"
	size := func(m map[string]*tarFile) (n int) {
		for _, f := range m {
			n += len(f.data)
		}
		return n
	}
	same := func(a, b *tarFile) bool { return a != nil && b != nil && bytes.Equal(a.data, b.data) }
	checks := []struct {
		name string
		ok   bool
	}{
		{"base layer is 6-10 MB", size(old[0]) > 6<<20 && size(old[0]) < 10<<20},
		{"base has a few hundred entries", len(old[0]) > 200 && len(old[0]) < 1000},
		{"base has a hardlink", old[0]["usr/bin/perl5.36.0"] != nil && old[0]["usr/bin/perl5.36.0"].hdr.Typeflag == tar.TypeLink},
		{"base has symlinks", old[0]["bin"] != nil && old[0]["bin"].hdr.Typeflag == tar.TypeSymlink && old[0][lib+"libz.so.1"].hdr.Linkname == "libz.so.1.2.13"},
		{"tmp is sticky", old[0]["tmp/"] != nil && old[0]["tmp/"].hdr.Mode == 0o1777},
		{"root is private", old[0]["root/"] != nil && old[0]["root/"].hdr.Mode == 0o700},
		{"libssl point release", old[1][lib+"libssl.so.3"] != nil && !same(old[1][lib+"libssl.so.3"], new[1][lib+"libssl.so.3"])},
		{"libfoo renamed", old[1][lib+"libfoo.so.1.2.3"] != nil && new[1][lib+"libfoo.so.1.2.3"] == nil && new[1][lib+"libfoo.so.1.2.4"] != nil},
		{"libidn whiteout", new[1][lib+".wh.libidn.so.12.6.3"] != nil && old[0][lib+"libidn.so.12.6.3"] != nil},
		{"libjson-c removed, libyaml added", old[1][lib+"libjson-c.so.5.2.0"] != nil && new[1][lib+"libjson-c.so.5.2.0"] == nil && new[1][lib+"libyaml-0.so.2.0.9"] != nil && old[1][lib+"libyaml-0.so.2.0.9"] == nil},
		{"sqlite unchanged", same(old[1][lib+"libsqlite3.so.0.8.6"], new[1][lib+"libsqlite3.so.0.8.6"])},
		{"server is 4-8 MB", old[2]["app/bin/server"] != nil && len(old[2]["app/bin/server"].data) > 4<<20 && len(old[2]["app/bin/server"].data) < 8<<20},
		{"config changed", old[2]["app/config/app.yaml"] != nil && !same(old[2]["app/config/app.yaml"], new[2]["app/config/app.yaml"])},
		{"css unchanged", same(old[2]["app/static/css/site.css"], new[2]["app/static/css/site.css"])},
		{"logo moved unchanged", same(old[2]["app/static/img/logo.png"], new[2]["app/static/brand/logo.png"]) && new[2]["app/static/img/logo.png"] == nil},
		{"migration added", new[2]["app/migrations/0007.sql"] != nil && old[2]["app/migrations/0007.sql"] == nil},
		{"ca bundle becomes the base one", !same(old[2]["app/certs/ca-bundle.crt"], old[0]["etc/ssl/certs/ca-certificates.crt"]) && same(new[2]["app/certs/ca-bundle.crt"], old[0]["etc/ssl/certs/ca-certificates.crt"])},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Error("not so")
			}
		})
	}
}

func symbols(t *testing.T, b []byte) (map[string]bool, []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("debug/elf: %v", err)
	}
	syms, err := f.Symbols()
	if err != nil {
		t.Fatalf("symbols: %v", err)
	}
	names := map[string]bool{}
	for _, s := range syms {
		names[s.Name] = true
	}
	ro, err := f.Section(".rodata").Data()
	if err != nil {
		t.Fatal(err)
	}
	return names, ro
}

// TestServerIsARecompile checks that the new server binary relates to the
// old one as a rebuild does: most functions kept, some added and removed,
// the version string changed, and the code moved.
func TestServerIsARecompile(t *testing.T) {
	o, n, err := LayerTars()
	if err != nil {
		t.Fatal(err)
	}
	get := func(layerTar []byte) []byte {
		tr := tar.NewReader(bytes.NewReader(layerTar))
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("app/bin/server not found: %v", err)
			}
			if h.Name == "app/bin/server" {
				b, _ := io.ReadAll(tr)
				return b
			}
		}
	}
	ob, nb := get(o[2]), get(n[2])
	os, oro := symbols(t, ob)
	ns, nro := symbols(t, nb)
	kept, added := 0, 0
	for s := range ns {
		if os[s] {
			kept++
		} else {
			added++
		}
	}
	if frac := float64(kept) / float64(len(ns)); frac < 0.9 || added == 0 || kept == len(os) {
		t.Errorf("kept %d of %d old functions, added %d: not a plausible rebuild", kept, len(os), added)
	}
	if !strings.Contains(string(oro), "version 1.4.2") || !strings.Contains(string(nro), "version 1.5.0") {
		t.Error("version strings not found in .rodata")
	}
	// Addresses shift: most aligned 8-byte words differ at the same offset,
	// though the binaries are of similar size.
	diff := 0
	for i := 0; i+8 <= min(len(ob), len(nb)); i += 8 {
		if !bytes.Equal(ob[i:i+8], nb[i:i+8]) {
			diff++
		}
	}
	if frac := float64(diff) / float64(len(nb)/8); frac < 0.5 {
		t.Errorf("only %.0f%% of words moved or changed", 100*frac)
	}
}

func TestArchiveMatchesLayout(t *testing.T) {
	p := writeOnce(t)
	for _, c := range []struct{ archive, layout, ref string }{
		{p.OldArchive, p.OldLayout, "1"},
		{p.NewArchive, p.NewLayout, "2"},
	} {
		t.Run(filepath.Base(c.archive), func(t *testing.T) {
			a, err := tarball.ImageFromPath(c.archive, nil)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := layout.ImageIndexFromPath(c.layout)
			if err != nil {
				t.Fatal(err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != c.ref {
				t.Fatalf("layout index: %+v", im.Manifests)
			}
			l, err := idx.Image(im.Manifests[0].Digest)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(digestsOf(t, a), digestsOf(t, l)); d != "" {
				t.Errorf("archive and layout differ (-archive +layout):\n%s", d)
			}
			cf, err := a.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.History) != 3 || cf.Created.IsZero() {
				t.Errorf("config: os %q arch %q, %d history entries, created %v", cf.OS, cf.Architecture, len(cf.History), cf.Created)
			}
		})
	}
}
