package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// seededImage is a deterministic random image: layers gzip-compressed
// Docker layers, each holding one file of size bytes.
func seededImage(t testing.TB, seed int64, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(2048, layers, random.WithSource(rand.NewSource(seed)))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imageSummary is what must survive every transport unchanged.
type imageSummary struct {
	ConfigDigest v1.Hash
	DiffIDs      []v1.Hash
	Config       string
	LayerDigests []v1.Hash // compressed blob digests
}

func summarize(t testing.TB, img v1.Image) imageSummary {
	t.Helper()
	var s imageSummary
	var err error
	if s.ConfigDigest, err = img.ConfigName(); err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	s.Config = string(raw)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		s.DiffIDs = append(s.DiffIDs, d)
		cd, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		s.LayerDigests = append(s.LayerDigests, cd)
	}
	return s
}

// checkContent reads every layer of img and checks its uncompressed bytes
// hash to the diff_id (the image is usable, not only its metadata).
func checkContent(t testing.TB, img v1.Image) {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		want, _ := l.DiffID()
		if h != want {
			t.Errorf("layer %d: content hashes to %s, diff_id %s", i, h, want)
		}
	}
}

func TestWriteOpenRoundTrip(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	src := seededImage(t, 42, 3)
	want := summarize(t, src)
	wantManifest, err := src.Digest()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name string
		ref  string
		// sameManifest: the transport keeps the manifest bytes.
		sameManifest bool
	}{
		{"docker-archive tagged", "docker-archive:" + filepath.Join(dir, "t.tar") + ":skiff/rt:1", true},
		{"docker-archive untagged", "docker-archive:" + filepath.Join(dir, "u.tar"), true},
		{"oci with ref", "oci:" + filepath.Join(dir, "layout") + ":v1", true},
		{"oci without ref", "oci:" + filepath.Join(dir, "layout-noref"), true},
		{"oci-archive", "oci-archive:" + filepath.Join(dir, "o.tar") + ":v1", true},
		{"oci-archive without ref", "oci-archive:" + filepath.Join(dir, "o2.tar"), true},
		{"registry tag", "docker://" + host + "/skiff/rt:1", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := Write(ctx, tc.ref, src, WithInsecure(true)); err != nil {
				t.Fatalf("Write: %v", err)
			}
			img, err := Open(ctx, tc.ref, WithInsecure(true), WithTempDir(t.TempDir()))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer img.Close()
			if img.Ref.String() != tc.ref {
				t.Errorf("Ref = %q, want %q", img.Ref, tc.ref)
			}
			if diff := cmp.Diff(want, summarize(t, img)); diff != "" {
				t.Errorf("image changed through %s (-want +got):\n%s", tc.ref, diff)
			}
			if tc.sameManifest {
				if got, err := img.Digest(); err != nil || got != wantManifest {
					t.Errorf("manifest digest = %v, %v; want %s", got, err, wantManifest)
				}
			}
			checkContent(t, img)
			// go-containerregistry's own checks of what Open serves:
			// digests, sizes and diff_ids against the bytes.
			if err := validate.Image(img); err != nil {
				t.Errorf("validate.Image: %v", err)
			}
		})
	}

	t.Run("registry by digest", func(t *testing.T) {
		ref := "docker://" + host + "/skiff/rt@" + wantManifest.String()
		img, err := Open(ctx, ref, WithInsecure(true))
		if err != nil {
			t.Fatal(err)
		}
		defer img.Close()
		if diff := cmp.Diff(want, summarize(t, img)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestOpenUncompressedDockerArchive(t *testing.T) {
	// `docker save` writes layers uncompressed as <id>/layer.tar.
	src := seededImage(t, 7, 2)
	p := filepath.Join(t.TempDir(), "save.tar")
	writeDockerSave(t, p, src, "skiff/plain:1")
	img, err := Open(context.Background(), "docker-archive:"+p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	want, got := summarize(t, src), summarize(t, img)
	// Blob digests are those of ggcr's recompression, not of the source:
	// compare what an uncompressed archive keeps.
	want.LayerDigests, got.LayerDigests = nil, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	checkContent(t, img)
}

// writeDockerSave writes img the way `docker save` does: config JSON,
// uncompressed layer tars in per-layer directories, manifest.json.
func writeDockerSave(t testing.TB, p string, img v1.Image, tag string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Size: int64(len(b)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	cfgName, _ := img.ConfigName()
	raw, _ := img.RawConfigFile()
	add(cfgName.Hex+".json", raw)
	ls, _ := img.Layers()
	var layers []string
	for _, l := range ls {
		d, _ := l.DiffID()
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		add(d.Hex+"/layer.tar", b)
		layers = append(layers, d.Hex+"/layer.tar")
	}
	m, _ := json.Marshal(tarball.Manifest{{Config: cfgName.Hex + ".json", RepoTags: []string{tag}, Layers: layers}})
	add("manifest.json", m)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenMultiImageDockerArchive(t *testing.T) {
	ctx := context.Background()
	a, b := seededImage(t, 1, 1), seededImage(t, 2, 2)
	p := filepath.Join(t.TempDir(), "multi.tar")
	ta, _ := name.NewTag("skiff/a:1")
	tb, _ := name.NewTag("skiff/b:2")
	if err := tarball.MultiWriteToFile(p, map[name.Tag]v1.Image{ta: a, tb: b}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		tag  string
		want v1.Image
	}{{"skiff/a:1", a}, {"skiff/b:2", b}, {"docker.io/skiff/b:2", b}} {
		t.Run(tc.tag, func(t *testing.T) {
			img, err := Open(ctx, "docker-archive:"+p+":"+tc.tag)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if diff := cmp.Diff(summarize(t, tc.want), summarize(t, img)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	_, err := Open(ctx, "docker-archive:"+p)
	if !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "skiff/a:1") || !strings.Contains(err.Error(), "skiff/b:2") {
		t.Errorf("untagged open of a 2-image archive = %v, want ErrAmbiguous listing both tags", err)
	}
	_, err = Open(ctx, "docker-archive:"+p+":skiff/c:3")
	if !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), `"skiff/c:3"`) || !strings.Contains(err.Error(), "skiff/a:1") {
		t.Errorf("open of a missing tag = %v, want ErrImageNotFound naming it and listing tags", err)
	}
}

// platformIndex builds an index of two seeded images for linux/amd64 and
// linux/arm64/v8.
func platformIndex(t testing.TB) (v1.ImageIndex, v1.Image, v1.Image) {
	t.Helper()
	amd, arm := seededImage(t, 10, 1), seededImage(t, 11, 1)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	return idx, amd, arm
}

func TestOpenPlatform(t *testing.T) {
	ctx := context.Background()
	idx, amd, arm := platformIndex(t)

	dir := filepath.Join(t.TempDir(), "layout")
	lp, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "multi"})); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	rref, _ := name.ParseReference(host+"/skiff/multi:1", name.Insecure)
	if err := remote.WriteIndex(rref, idx); err != nil {
		t.Fatal(err)
	}

	for _, base := range []string{"oci:" + dir + ":multi", "oci:" + dir, "docker://" + host + "/skiff/multi:1"} {
		for _, tc := range []struct {
			platform string
			want     v1.Image
		}{{"", amd}, {"linux/amd64", amd}, {"linux/arm64/v8", arm}, {"linux/arm64", arm}} {
			t.Run(base+"/"+tc.platform, func(t *testing.T) {
				opts := []Option{WithInsecure(true)}
				if tc.platform != "" {
					opts = append(opts, WithPlatform(tc.platform))
				}
				img, err := Open(ctx, base, opts...)
				if err != nil {
					t.Fatal(err)
				}
				defer img.Close()
				wd, _ := tc.want.Digest()
				if got, _ := img.Digest(); got != wd {
					t.Errorf("picked %s, want %s", got, wd)
				}
			})
		}
		t.Run(base+"/missing platform", func(t *testing.T) {
			_, err := Open(ctx, base, WithInsecure(true), WithPlatform("linux/s390x"))
			if !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), "s390x") {
				t.Errorf("got %v, want ErrImageNotFound naming the platform", err)
			}
		})
	}
}

// TestOpenPlatformMismatch: --platform on a single-platform image of
// another platform is refused, not silently ignored (a fleet of arm64
// devices must not get an amd64 image).
func TestOpenPlatformMismatch(t *testing.T) {
	src := seededImage(t, 8, 1)
	cf, err := src.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = "linux", "arm64", "v8"
	arm, err := mutate.ConfigFile(src, cf)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "save.tar")
	writeDockerSave(t, p, arm, "skiff/arm:1")
	for _, tc := range []struct {
		platform string
		ok       bool
	}{{"", true}, {"linux/arm64", true}, {"linux/arm64/v8", true}, {"linux/arm64/v9", false}, {"linux/amd64", false}, {"windows/arm64", false}} {
		t.Run(tc.platform, func(t *testing.T) {
			var opts []Option
			if tc.platform != "" {
				opts = append(opts, WithPlatform(tc.platform))
			}
			img, err := Open(context.Background(), "docker-archive:"+p, opts...)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				img.Close()
				return
			}
			if !errors.Is(err, ErrPlatformMismatch) || !strings.Contains(err.Error(), "the image is for linux/arm64/v8, not the platform "+tc.platform) {
				t.Errorf("err = %v, want ErrPlatformMismatch naming both platforms", err)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	notTar := filepath.Join(dir, "not.tar")
	os.WriteFile(notTar, []byte("hello, not a tar"), 0o644)
	gz := filepath.Join(dir, "saved.tar.gz")
	os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0}, 0o644)
	emptyDir := filepath.Join(dir, "empty")
	os.Mkdir(emptyDir, 0o755)
	two := filepath.Join(dir, "two")
	if err := Write(ctx, "oci:"+two+":a", seededImage(t, 1, 1)); err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, "oci:"+two+":b", seededImage(t, 2, 1)); err != nil {
		t.Fatal(err)
	}
	tarNoManifest := filepath.Join(dir, "plain.tar")
	writeTar(t, tarNoManifest, tarMember{name: "hello.txt", body: "hi"})
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "no-engine.sock"))

	tests := []struct {
		ref     string
		want    error
		mention []string
	}{
		{"nope:/x", ErrBadReference, []string{`unknown transport "nope"`, "docker-archive:PATH[:TAG]"}},
		{"docker-archive:" + dir + "/missing.tar", ErrImageNotFound, []string{"missing.tar does not exist"}},
		{"docker-archive:" + dir, ErrNotImage, []string{"is a directory", "oci:"}},
		{"docker-archive:" + notTar, ErrNotImage, []string{"not a docker-archive"}},
		{"docker-archive:" + tarNoManifest, ErrNotImage, []string{"not a docker-archive", "manifest.json"}},
		{"docker-archive:" + gz, ErrNotImage, []string{"gzip-compressed"}},
		{"oci:" + dir + "/missing", ErrImageNotFound, []string{"missing does not exist"}},
		{"oci:" + notTar, ErrNotImage, []string{"is a file", "oci-archive:"}},
		{"oci:" + emptyDir, ErrNotImage, []string{"not an OCI layout"}},
		{"oci:" + two, ErrAmbiguous, []string{"2 manifests", `"a"`, `"b"`}},
		{"oci:" + two + ":c", ErrImageNotFound, []string{`ref "c" is not in the layout`, `"a"`, `"b"`}},
		{"oci-archive:" + dir + "/missing.tar", ErrImageNotFound, []string{"missing.tar does not exist"}},
		{"oci-archive:" + notTar, ErrNotImage, []string{"not a readable tar"}},
		{"oci-archive:" + tarNoManifest, ErrNotImage, []string{"not an OCI layout"}},
		{"docker-daemon:skiff/x:1", ErrEngine, []string{"not reachable", "DOCKER_HOST=unix://" + dir}},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			img, err := Open(ctx, tc.ref, WithTempDir(t.TempDir()))
			if err == nil {
				img.Close()
				t.Fatalf("Open(%q) succeeded", tc.ref)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Open(%q) = %v, want %v", tc.ref, err, tc.want)
			}
			for _, m := range append(tc.mention, tc.ref) {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}

	t.Run("registry not found", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(nilLogger())))
		defer srv.Close()
		ref := "docker://" + strings.TrimPrefix(srv.URL, "http://") + "/skiff/none:1"
		_, err := Open(ctx, ref, WithInsecure(true))
		if !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), ref) {
			t.Errorf("got %v, want ErrImageNotFound naming %s", err, ref)
		}
	})
}

type tarMember struct {
	name     string
	typ      byte
	linkname string
	body     string
}

func writeTar(t testing.TB, p string, members ...tarMember) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Typeflag: typ, Linkname: m.linkname, Mode: 0o644, Format: tar.FormatPAX}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := io.WriteString(tw, m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenOCIArchiveHostile(t *testing.T) {
	ctx := context.Background()
	layoutFile := tarMember{name: "oci-layout", body: `{"imageLayoutVersion":"1.0.0"}`}
	tests := []struct {
		name    string
		members []tarMember
		mention string
	}{
		{"dotdot", []tarMember{layoutFile, {name: "../x", body: "evil"}}, `"../x" climbs out`},
		{"nested dotdot", []tarMember{{name: "blobs/../../x", body: "evil"}}, `climbs out`},
		{"absolute", []tarMember{{name: "/tmp/skiff-evil", body: "evil"}}, "absolute path"},
		{"symlink out", []tarMember{{name: "blobs", typ: tar.TypeSymlink, linkname: "../../"}, {name: "blobs/x", body: "evil"}}, "is a symlink"},
		{"absolute symlink", []tarMember{{name: "index.json", typ: tar.TypeSymlink, linkname: "/etc/passwd"}}, "is a symlink"},
		{"hardlink out", []tarMember{{name: "index.json", typ: tar.TypeLink, linkname: "../../etc/passwd"}}, "hard link"},
		{"device", []tarMember{{name: "dev", typ: tar.TypeChar}}, "never holds"},
		{"fifo", []tarMember{{name: "fifo", typ: tar.TypeFifo}}, "never holds"},
		{"duplicate", []tarMember{layoutFile, layoutFile}, "cannot be created"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			work := filepath.Join(base, "a", "b")
			tmp := filepath.Join(base, "tmp")
			for _, d := range []string{work, tmp} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			p := filepath.Join(work, "hostile.tar")
			writeTar(t, p, tc.members...)
			img, err := Open(ctx, "oci-archive:"+p, WithTempDir(tmp))
			if err == nil {
				img.Close()
				t.Fatal("hostile archive opened")
			}
			if !errors.Is(err, ErrUnsafeArchive) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("got %v, want ErrUnsafeArchive mentioning %q", err, tc.mention)
			}
			// Nothing escaped, and the extraction directory is gone.
			for _, p := range []string{filepath.Join(base, "x"), filepath.Join(base, "a", "x"), filepath.Join(tmp, "x")} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was written outside the extraction directory", p)
				}
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("temp dir left behind: %v", ents)
			}
		})
	}
}

func TestOpenOCIArchiveTempDirRemovedOnClose(t *testing.T) {
	ctx := context.Background()
	tmp := t.TempDir()
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := Write(ctx, "oci-archive:"+p, seededImage(t, 3, 1), WithTempDir(tmp)); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("Write left %v in the temp dir", ents)
	}
	img, err := Open(ctx, "oci-archive:"+p, WithTempDir(tmp))
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
		t.Fatalf("want one extraction dir while open, have %v", ents)
	}
	checkContent(t, img)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("Close left %v", ents)
	}
}

// failingImage serves the first bytes of its last layer, then fails.
type failingImage struct{ v1.Image }

type failingLayer struct{ v1.Layer }

var errInjected = errors.New("injected read failure")

func (l failingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, 100), iotestErr{}), rc}, nil
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errInjected }

func (f failingImage) Layers() ([]v1.Layer, error) {
	ls, err := f.Image.Layers()
	if err != nil {
		return nil, err
	}
	ls[len(ls)-1] = failingLayer{ls[len(ls)-1]}
	return ls, nil
}

func TestWriteArchiveAtomic(t *testing.T) {
	ctx := context.Background()
	for _, tr := range []string{"docker-archive", "oci-archive"} {
		t.Run(tr, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "img.tar")
			old := seededImage(t, 5, 1)
			if err := Write(ctx, tr+":"+p, old); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(p)
			err := Write(ctx, tr+":"+p, failingImage{seededImage(t, 6, 2)}, WithTempDir(dir))
			if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), tr+":"+p) {
				t.Fatalf("Write of a failing image = %v, want the injected error naming the reference", err)
			}
			after, _ := os.ReadFile(p)
			if !bytes.Equal(before, after) {
				t.Error("a failed Write changed the existing archive")
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("a failed Write left files behind: %v", ents)
			}
		})
	}
}

func TestWriteOCIReplacesRef(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	a, b := seededImage(t, 1, 1), seededImage(t, 2, 1)
	for _, step := range []struct {
		ref string
		img v1.Image
	}{{"oci:" + dir + ":x", a}, {"oci:" + dir + ":y", a}, {"oci:" + dir + ":x", b}} {
		if err := Write(ctx, step.ref, step.img); err != nil {
			t.Fatal(err)
		}
	}
	for ref, want := range map[string]v1.Image{"x": b, "y": a} {
		img, err := Open(ctx, "oci:"+dir+":"+ref)
		if err != nil {
			t.Fatal(err)
		}
		wd, _ := want.Digest()
		if got, _ := img.Digest(); got != wd {
			t.Errorf("ref %s = %s, want %s", ref, got, wd)
		}
		img.Close()
	}
	lp, _ := layout.FromPath(dir)
	idx, _ := lp.ImageIndex()
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 {
		t.Errorf("layout holds %d entries after replacing x, want 2", len(im.Manifests))
	}
	if err := Write(ctx, "oci:"+t.TempDir(), a); err != nil {
		t.Errorf("Write into an empty existing directory: %v", err)
	}
	nonEmpty := t.TempDir()
	os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o644)
	if err := Write(ctx, "oci:"+nonEmpty, a); !errors.Is(err, ErrNotImage) {
		t.Errorf("Write into a non-layout directory = %v, want ErrNotImage", err)
	}
}

func TestOpenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p := filepath.Join(t.TempDir(), "x.tar")
	if err := Write(ctx, "docker-archive:"+p, seededImage(t, 1, 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Write with a cancelled context = %v", err)
	}
	if _, err := Open(ctx, "docker-archive:"+p); !errors.Is(err, context.Canceled) {
		t.Errorf("Open with a cancelled context = %v", err)
	}
}

func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// TestWriteOCIRepairsDamagedBlob: a blob the layout already has under the
// right name and size but with other bytes (a disk error, another writer)
// is written again, not trusted, when an image that needs it is written.
func TestWriteOCIRepairsDamagedBlob(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	a := seededImage(t, 1, 2)
	if err := Write(ctx, "oci:"+dir+":x", a); err != nil {
		t.Fatal(err)
	}
	layers, _ := a.Layers()
	d, _ := layers[1].Digest()
	p := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(ctx, "oci:"+dir+":y", a); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, _, err := v1.SHA256(f)
	if err != nil {
		t.Fatal(err)
	}
	if got != d {
		t.Errorf("blob %s still hashes to %s after the write", d, got)
	}
}
