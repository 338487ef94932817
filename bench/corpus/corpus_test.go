package corpus

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// writeLayerTar writes a small layer tar whose content depends on seed:
// text (compressible) and random bytes, so gzip levels give different
// output.
func writeLayerTar(t *testing.T, p string, seed uint64, files int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, 7))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "usr/", Mode: 0o755, ModTime: mt})
	for i := range files {
		var data []byte
		for range 200 + r.IntN(2000) {
			data = fmt.Appendf(data, "line %d of file %d: value=%d\n", r.IntN(50), i, r.IntN(1000))
		}
		noise := make([]byte, 4096)
		for j := range noise {
			noise[j] = byte(r.Uint32())
		}
		data = append(data, noise...)
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/f%03d", i), Mode: 0o644, Size: int64(len(data)), ModTime: mt}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// newCorpus writes layers for the pairs given, with old timestamps so that
// outputs are newer.
func newCorpus(t *testing.T, pairs ...string) string {
	t.Helper()
	root := t.TempDir()
	for i, p := range pairs {
		for j, v := range []string{"old", "new"} {
			f := filepath.Join(root, "layers", p, v+".tar")
			writeLayerTar(t, f, uint64(10*i+j), 20+j)
			old := time.Now().Add(-time.Hour)
			os.Chtimes(f, old, old)
		}
	}
	return root
}

func sha(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// treeHashes maps every file under dir to its sha256.
func treeHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			m[rel] = sha(t, p)
		}
		return nil
	})
	return m
}

type ids struct {
	Config  string
	DiffIDs []string
	Layers  []string
}

func idsOf(t *testing.T, img v1.Image) ids {
	t.Helper()
	c, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := ids{Config: c.String()}
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		dg, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out.DiffIDs = append(out.DiffIDs, d.String())
		out.Layers = append(out.Layers, dg.String())
	}
	return out
}

func readArchive(t *testing.T, p string) v1.Image {
	t.Helper()
	img, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatalf("tarball %s: %v", p, err)
	}
	return img
}

func readLayout(t *testing.T, dir, ref string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != ref {
		t.Fatalf("%s: index %+v", dir, im.Manifests)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// gzipXFL returns the XFL byte of a layer's gzip header: compress/gzip
// writes 4 for BestSpeed and 0 for the default level.
func gzipXFL(t *testing.T, l v1.Layer) byte {
	t.Helper()
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := make([]byte, 10)
	if _, err := io.ReadFull(rc, h); err != nil || h[0] != 0x1f || h[1] != 0x8b {
		t.Fatalf("layer is not gzip: % x, %v", h, err)
	}
	return h[8]
}

func fileDiffID(t *testing.T, p string) string { return "sha256:" + sha(t, p) }

func TestBuildImages(t *testing.T) {
	root := newCorpus(t, Pairs...)
	rep, err := BuildImages(context.Background(), root, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Pairs {
		if p.Status != Built {
			t.Errorf("%s: status %s (%s), want built", p.Pair, p.Status, p.Reason)
		}
	}
	osOld := fileDiffID(t, filepath.Join(root, "layers", "os", "old.tar"))
	for _, pair := range Pairs {
		t.Run(pair, func(t *testing.T) {
			dir := filepath.Join(root, "images", pair)
			for _, v := range []string{"old", "new"} {
				a := readArchive(t, filepath.Join(dir, v+".tar"))
				o := readLayout(t, filepath.Join(dir, v+".oci"), v)
				ai, oi := idsOf(t, a), idsOf(t, o)
				if d := cmp.Diff(ai.DiffIDs, oi.DiffIDs); d != "" {
					t.Errorf("%s: diff_ids differ (-archive +layout):\n%s", v, d)
				}
				if ai.Config != oi.Config {
					t.Errorf("%s: config %s in archive, %s in layout", v, ai.Config, oi.Config)
				}
				want := []string{fileDiffID(t, filepath.Join(root, "layers", pair, v+".tar"))}
				if pair != "os" && pair != "apt" && pair != "debarm64" && pair != "debarm64up" {
					want = []string{osOld, want[0]}
				}
				if d := cmp.Diff(want, ai.DiffIDs); d != "" {
					t.Errorf("%s: diff_ids are not the input tars' (-want +got):\n%s", v, d)
				}
				al, _ := a.Layers()
				ol, _ := o.Layers()
				if x := gzipXFL(t, al[len(al)-1]); x != 0 {
					t.Errorf("%s: archive layer gzip XFL %d, want 0 (default level)", v, x)
				}
				if x := gzipXFL(t, ol[len(ol)-1]); x != 4 {
					t.Errorf("%s: layout layer gzip XFL %d, want 4 (BestSpeed)", v, x)
				}
				m, err := o.MediaType()
				if err != nil || !strings.Contains(string(m), "oci") {
					t.Errorf("%s: layout manifest media type %q, %v", v, m, err)
				}
				cf, err := a.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.History) != len(want) {
					t.Errorf("%s: config os %q arch %q history %d", v, cf.OS, cf.Architecture, len(cf.History))
				}
			}
			_, err := os.Stat(filepath.Join(dir, "new-resaved.tar"))
			if (pair == "os") != (err == nil) {
				t.Errorf("new-resaved.tar: %v", err)
			}
		})
	}
}

func memberNames(t *testing.T, p string) ([]string, map[string]time.Time, map[string][]byte) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	mtimes := map[string]time.Time{}
	data := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, mtimes, data
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		mtimes[h.Name] = h.ModTime
		data[h.Name], _ = io.ReadAll(tr)
	}
}

func TestResaved(t *testing.T) {
	root := newCorpus(t, "os")
	if _, err := BuildImages(context.Background(), root, []string{"os"}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "images", "os")
	newTar, resaved := filepath.Join(dir, "new.tar"), filepath.Join(dir, "new-resaved.tar")
	a, r := idsOf(t, readArchive(t, newTar)), idsOf(t, readArchive(t, resaved))
	if a.Config != r.Config || !slices.Equal(a.DiffIDs, r.DiffIDs) {
		t.Errorf("resaved is another image: %+v vs %+v", r, a)
	}
	if sha(t, newTar) == sha(t, resaved) {
		t.Error("resaved archive has the same bytes as new.tar")
	}
	an, amt, _ := memberNames(t, newTar)
	rn, rmt, rdata := memberNames(t, resaved)
	if slices.Equal(an, rn) {
		t.Errorf("same member names in the same order: %v", an)
	}
	cfgHex := strings.TrimPrefix(a.Config, "sha256:")
	posA := func(names []string, suffix string) int {
		return slices.IndexFunc(names, func(n string) bool { return strings.HasSuffix(n, suffix) })
	}
	if (posA(an, "manifest.json") < posA(an, cfgHex)) == (posA(rn, "manifest.json") < posA(rn, cfgHex)) {
		t.Errorf("manifest.json and config in the same relative order: %v vs %v", an, rn)
	}
	if amt["manifest.json"].Equal(rmt["manifest.json"]) {
		t.Errorf("manifest.json has the same mtime %v in both", amt["manifest.json"])
	}
	// Layers are stored uncompressed, named by diff_id.
	for _, id := range r.DiffIDs {
		b := rdata["blobs/sha256/"+strings.TrimPrefix(id, "sha256:")]
		if s := sha256.Sum256(b); "sha256:"+hex.EncodeToString(s[:]) != id {
			t.Errorf("layer member %s is not the uncompressed layer", id)
		}
	}
	for _, m := range []string{"index.json", "oci-layout", "manifest.json"} {
		if rdata[m] == nil {
			t.Errorf("resaved archive lacks %s", m)
		}
	}
}

func TestDeterministicAndCached(t *testing.T) {
	root := newCorpus(t, "os", "app")
	ctx := context.Background()
	if _, err := BuildImages(ctx, root, nil); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(root, "images")
	first := treeHashes(t, images)
	st, _ := os.Stat(filepath.Join(images, "os", "old.tar"))

	rep, err := BuildImages(ctx, root, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Status{}
	for _, p := range rep.Pairs {
		got[p.Pair] = p.Status
	}
	want := map[string]Status{}
	for _, p := range Pairs {
		want[p] = Skipped
	}
	want["os"], want["app"] = Cached, Cached
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("second run (-want +got):\n%s", d)
	}
	if st2, _ := os.Stat(filepath.Join(images, "os", "old.tar")); !st2.ModTime().Equal(st.ModTime()) {
		t.Error("cached output was rewritten")
	}

	// A newer input rebuilds the pairs that use it.
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(root, "layers", "app", "new.tar"), future, future)
	rep, err = BuildImages(ctx, root, []string{"os", "app"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Pairs[0].Status != Cached || rep.Pairs[1].Status != Built {
		t.Errorf("after touching app/new.tar: %+v", rep.Pairs)
	}

	if _, err := BuildImages(ctx, root, nil, WithForce(true)); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(first, treeHashes(t, images)); d != "" {
		t.Errorf("rebuild changed outputs (-first +second):\n%s", d)
	}
	// No work directories are left behind.
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".mkimages-") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestSpecFor(t *testing.T) {
	root := filepath.Join("corpus", "root")
	l := func(p, v string) string { return filepath.Join(root, "layers", p, v+".tar") }
	base := l("os", "old")
	for _, c := range []struct {
		pair     string
		old, new []string
	}{
		{"os", []string{l("os", "old")}, []string{l("os", "new")}},
		{"toolchain", []string{base, l("toolchain", "old")}, []string{base, l("toolchain", "new")}},
		{"app", []string{base, l("app", "old")}, []string{base, l("app", "new")}},
		{"npm", []string{base, l("npm", "old")}, []string{base, l("npm", "new")}},
		{"apt", []string{l("apt", "old")}, []string{l("apt", "new")}},
		{"python", []string{base, l("python", "old")}, []string{base, l("python", "new")}},
		{"goarm64", []string{base, l("goarm64", "old")}, []string{base, l("goarm64", "new")}},
		{"armapp", []string{base, l("armapp", "old")}, []string{base, l("armapp", "new")}},
		{"armv7app", []string{base, l("armv7app", "old")}, []string{base, l("armv7app", "new")}},
		{"goamd64", []string{base, l("goamd64", "old")}, []string{base, l("goamd64", "new")}},
		{"debarm64", []string{l("debarm64", "old")}, []string{l("debarm64", "new")}},
		{"debarm64up", []string{l("debarm64up", "old")}, []string{l("debarm64up", "new")}},
	} {
		t.Run(c.pair, func(t *testing.T) {
			s, err := specFor(root, c.pair)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.old, s.old); d != "" {
				t.Errorf("old layers (-want +got):\n%s", d)
			}
			if d := cmp.Diff(c.new, s.new); d != "" {
				t.Errorf("new layers (-want +got):\n%s", d)
			}
		})
	}
	// Every pair has a spec, and nothing else does.
	for _, p := range Pairs {
		if _, err := specFor(root, p); err != nil {
			t.Errorf("specFor(%q): %v", p, err)
		}
	}
	if _, err := specFor(root, "kernel"); !errors.Is(err, ErrUnknownPair) {
		t.Errorf("specFor(kernel) = %v, want ErrUnknownPair", err)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("unknown pair", func(t *testing.T) {
		_, err := BuildImages(ctx, t.TempDir(), []string{"kernel"})
		if !errors.Is(err, ErrUnknownPair) {
			t.Errorf("got %v, want ErrUnknownPair", err)
		}
	})
	t.Run("missing layers are skipped", func(t *testing.T) {
		rep, err := BuildImages(ctx, t.TempDir(), []string{"os", "app"})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range rep.Pairs {
			if p.Status != Skipped || !strings.Contains(p.Reason, "old.tar") {
				t.Errorf("%s: %s %q", p.Pair, p.Status, p.Reason)
			}
		}
	})
	for _, c := range []struct {
		name string
		data func() []byte
		want string
	}{
		{"gzip", func() []byte {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(make([]byte, 2048))
			zw.Close()
			return b.Bytes()
		}, "gzip-compressed"},
		{"not a tar", func() []byte { return bytes.Repeat([]byte("hello "), 200) }, "os/old.tar"},
		{"empty tar", func() []byte { return make([]byte, 1024) }, "no entries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := newCorpus(t, "os")
			if err := os.WriteFile(filepath.Join(root, "layers", "os", "old.tar"), c.data(), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := BuildImages(ctx, root, []string{"os"})
			if !errors.Is(err, ErrBadLayer) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want ErrBadLayer mentioning %q", err, c.want)
			}
		})
	}
}
