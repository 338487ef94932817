package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/skiff-dev/skiff/layerfs"
)

// fakeCtr is a shell script standing in for ctr over a content store kept
// in an OCI layout directory: `images ls` prints the table in DIR/images
// (ignoring filters: the engine must pick the exact name), `content get`
// prints a blob or fails as ctr does, anything else fails. Each call's
// arguments are appended to DIR/calls. Like ctr 2.2+ on a cgroup-v1 host
// (ignoring CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS), every call prints a
// deprecation warning on stderr first: successful calls must not fail on
// it, and failed ones must not report it as their error.
const fakeCtr = `#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
echo 'time="2026-12-03T19:12:25Z" level=warning msg="DEPRECATION: The support for cgroup v1 is deprecated since containerd v2.2 and will be removed by no later than May 2029. Upgrade the host to use cgroup v2."' >&2
while [ $# -gt 0 ]; do
	case "$1" in
	--address|--namespace|--connect-timeout) shift 2 ;;
	*) break ;;
	esac
done
case "$1 $2" in
"images ls")
	echo "REF TYPE DIGEST SIZE PLATFORMS LABELS "
	cat "$dir/images"
	;;
"content get")
	f="$dir/blobs/sha256/${3#sha256:}"
	if [ -f "$f" ]; then cat "$f"; else echo "ctr: content digest $3: not found" >&2; exit 1; fi
	;;
*)
	echo "ctr: fake: unsupported command $*" >&2
	exit 2
	;;
esac
`

// platformImage is a random image whose config names platform p.
func platformImage(t *testing.T, p v1.Platform) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// fakeStore writes the fake ctr and a layout holding an index of an
// amd64 and an arm64 image; images lists the ctr image records.
func fakeStore(t *testing.T) (ctr string, idx v1.ImageIndex, amd, arm v1.Image, dir string) {
	t.Helper()
	dir = t.TempDir()
	amd = platformImage(t, v1.Platform{OS: "linux", Architecture: "amd64"})
	arm = platformImage(t, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	idx = mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	lp, err := layout.Write(dir, idx)
	if err != nil {
		t.Fatal(err)
	}
	// layout.Write keeps the index as index.json only; containerd keeps
	// it as a blob.
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.WriteBlob(v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(digestOf(t, idx), "sha256:")}, io.NopCloser(bytes.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	ctr = filepath.Join(dir, "ctr")
	if err := os.WriteFile(ctr, []byte(fakeCtr), 0o755); err != nil {
		t.Fatal(err)
	}
	return ctr, idx, amd, arm, dir
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func configOf(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestContainerdInspect(t *testing.T) {
	ctr, idx, amd, arm, dir := fakeStore(t)
	idxDigest, amdDigest := digestOf(t, idx), digestOf(t, amd)
	// A record whose target blob holds other bytes than its digest says.
	corrupt := "sha256:" + strings.Repeat("ab", 32)
	if err := os.WriteFile(filepath.Join(dir, "blobs/sha256", strings.Repeat("ab", 32)), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	images := "docker.io/skiff/web:stable-2 application/vnd.oci.image.index.v1+json " + digestOf(t, arm) + " 1.0 KiB linux/arm64 - \n" +
		"docker.io/skiff/web:stable application/vnd.oci.image.index.v1+json " + idxDigest + " 3.4 KiB linux/amd64,linux/arm64/v8 - \n" +
		"docker.io/skiff/amd:1 application/vnd.oci.image.manifest.v1+json " + amdDigest + " 1.7 KiB linux/amd64 - \n" +
		"docker.io/skiff/gone:1 application/vnd.oci.image.manifest.v1+json sha256:" + strings.Repeat("00", 32) + " 1.7 KiB linux/amd64 - \n" +
		"docker.io/skiff/corrupt:1 application/vnd.oci.image.manifest.v1+json " + corrupt + " 1.7 KiB linux/amd64 - \n" +
		"docker.io/skiff/odd:1 application/x-tar " + amdDigest + " 1.7 KiB linux/amd64 - \n"
	if err := os.WriteFile(filepath.Join(dir, "images"), []byte(images), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, platform, ref string
		want                ImageInfo
		wantErr             error
		errHas              string
	}{
		{name: "index amd64", platform: "linux/amd64", ref: "docker.io/skiff/web:stable",
			want: ImageInfo{ID: configOf(t, amd), ManifestDigest: amdDigest, RepoDigests: []string{"docker.io/skiff/web:stable@" + idxDigest}}},
		{name: "index arm64", platform: "linux/arm64", ref: "docker.io/skiff/web:stable",
			want: ImageInfo{ID: configOf(t, arm), ManifestDigest: digestOf(t, arm), RepoDigests: []string{"docker.io/skiff/web:stable@" + idxDigest}}},
		{name: "index without the platform", platform: "linux/s390x", ref: "docker.io/skiff/web:stable",
			wantErr: ErrNoImage, errHas: "no manifest for platform linux/s390x"},
		{name: "manifest", platform: "linux/amd64", ref: "docker.io/skiff/amd:1",
			want: ImageInfo{ID: configOf(t, amd), ManifestDigest: amdDigest, RepoDigests: []string{"docker.io/skiff/amd:1@" + amdDigest}}},
		{name: "no such image", platform: "linux/amd64", ref: "docker.io/skiff/web:stable-", wantErr: ErrNoImage,
			errHas: "docker.io/skiff/web:stable- (namespace skiff-test)"},
		{name: "target blob missing", platform: "linux/amd64", ref: "docker.io/skiff/gone:1", wantErr: ErrNoImage, errHas: "not found"},
		{name: "target blob corrupt", platform: "linux/amd64", ref: "docker.io/skiff/corrupt:1", wantErr: ErrContainerd, errHas: "read 2 bytes"},
		{name: "unsupported media type", platform: "linux/amd64", ref: "docker.io/skiff/odd:1", errHas: `unsupported media type "application/x-tar"`},
		{name: "bad platform", platform: "linux", ref: "docker.io/skiff/amd:1", wantErr: ErrConfig, errHas: `platform "linux"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewContainerdEngine(ContainerdConfig{Address: "/run/x.sock", Namespace: "skiff-test"}, tc.platform)
			e.Ctr = ctr
			got, err := e.Inspect(context.Background(), tc.ref)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
					t.Fatalf("error %v, want one wrapping %v and containing %q", err, tc.wantErr, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != tc.want.ID || got.ManifestDigest != tc.want.ManifestDigest ||
				strings.Join(got.RepoDigests, ",") != strings.Join(tc.want.RepoDigests, ",") {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			cf, _ := map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm}[tc.platform].ConfigFile()
			if len(got.DiffIDs) != len(cf.RootFS.DiffIDs) || got.DiffIDs[0] != cf.RootFS.DiffIDs[0].String() {
				t.Errorf("diff IDs %v, want %v", got.DiffIDs, cf.RootFS.DiffIDs)
			}
		})
	}
	calls, err := os.ReadFile(filepath.Join(dir, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	first := strings.SplitN(string(calls), "\n", 2)[0]
	if want := `--address /run/x.sock --namespace skiff-test --connect-timeout 10s images ls name=="docker.io/skiff/web:stable"`; first != want {
		t.Errorf("first ctr call %q, want %q", first, want)
	}
}

func TestContainerdCtrErrors(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	failing := script("failing", "echo '  ctr: failed to dial: connection refused  ' >&2\nexit 3\n")
	silent := script("silent", "exit 1\n")
	badTable := script("badtable", "echo 'NAME DIGEST'\n")
	for _, tc := range []struct {
		name, ctr, env string
		errHas         []string
	}{
		{name: "missing binary", ctr: "/nonexistent/skiff-ctr",
			errHas: []string{`command "/nonexistent/skiff-ctr" not found`, "SKIFF_CTR"}},
		{name: "missing binary from the environment", env: "skiff-no-such-ctr",
			errHas: []string{`command "skiff-no-such-ctr" not found`}},
		{name: "exit status and stderr", ctr: failing,
			errHas: []string{failing + " --namespace default --connect-timeout 10s images ls", "exit status 3: ctr: failed to dial: connection refused"}},
		{name: "command from the environment", env: failing, errHas: []string{failing, "exit status 3"}},
		{name: "command with arguments", ctr: "sh " + failing, errHas: []string{"sh " + failing + " --namespace", "exit status 3"}},
		{name: "no stderr", ctr: silent, errHas: []string{"exit status 1: no error output"}},
		{name: "unexpected table", ctr: badTable, errHas: []string{`unexpected header "NAME DIGEST"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(ctrEnv, tc.env)
			e := NewContainerdEngine(ContainerdConfig{}, "linux/amd64")
			e.Ctr = tc.ctr
			_, err := e.Inspect(context.Background(), "web:stable")
			if !errors.Is(err, ErrContainerd) {
				t.Fatalf("error %v, want one wrapping ErrContainerd", err)
			}
			for _, s := range tc.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestParseImageList(t *testing.T) {
	const d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, out string
		want      []imageRecord
		errHas    string
	}{
		{name: "empty", out: "REF TYPE DIGEST SIZE PLATFORMS LABELS \n"},
		{name: "records", out: "REF                      TYPE                                    DIGEST SIZE PLATFORMS LABELS \n" +
			"docker.io/library/a:1    application/vnd.oci.image.index.v1+json " + d + " 3.0 MiB  linux/amd64,linux/arm64 -      \n\n" +
			"b@" + d + " application/vnd.docker.distribution.manifest.v2+json " + d + " 12.5 KiB linux/amd64 io.cri-containerd.image=managed \n",
			want: []imageRecord{
				{Name: "docker.io/library/a:1", MediaType: "application/vnd.oci.image.index.v1+json", Digest: d},
				{Name: "b@" + d, MediaType: "application/vnd.docker.distribution.manifest.v2+json", Digest: d},
			}},
		{name: "no header", out: "", want: nil},
		{name: "bad header", out: "IMAGE DIGEST\n", errHas: "unexpected header"},
		{name: "short line", out: "REF TYPE DIGEST\nweb:1 application/x\n", errHas: `unexpected line "web:1 application/x"`},
		{name: "bad digest", out: "REF TYPE DIGEST\nweb:1 application/x sha256:zz\n", errHas: `image web:1: target digest "sha256:zz"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseImageList([]byte(tc.out))
			if tc.errHas != "" {
				if !errors.Is(err, ErrContainerd) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want ErrContainerd containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("record %d: %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseContainerList(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      string
		errHas    string
	}{
		{name: "none", out: "CONTAINER    IMAGE    RUNTIME    \n"},
		{name: "some", out: "CONTAINER    IMAGE                         RUNTIME                  \n" +
			"web          docker.io/skiff/web:stable    io.containerd.runc.v2    \n" +
			"bare         -                             io.containerd.runc.v2    \n" +
			"db           docker.io/library/pg:16       io.containerd.runc.v2    \n",
			want: "web=docker.io/skiff/web:stable,db=docker.io/library/pg:16"},
		{name: "bad header", out: "ID IMAGE\n", errHas: "unexpected header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseContainerList([]byte(tc.out))
			if tc.errHas != "" {
				if !errors.Is(err, ErrContainerd) || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want ErrContainerd containing %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var pairs []string
			for _, c := range got {
				pairs = append(pairs, c.ID+"="+c.Image)
			}
			if s := strings.Join(pairs, ","); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

// The archive Load streams to `ctr images import` names ref both ways and
// holds the image with its own manifest.
func TestContainerdWriteOCIArchive(t *testing.T) {
	img := platformImage(t, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"})
	const ref = "docker.io/skiff/web:stable"
	var buf bytes.Buffer
	if err := writeOCIArchive(&buf, img, ref); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	var idx ocispec.Index
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "index.json" {
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index.json has %d manifests, want 1", len(idx.Manifests))
	}
	d := idx.Manifests[0]
	if d.Annotations[annotationImageName] != ref || d.Annotations[ocispec.AnnotationRefName] != ref {
		t.Errorf("annotations %v, want both names %s", d.Annotations, ref)
	}
	if d.Platform == nil || d.Platform.Architecture != "arm64" || d.Platform.Variant != "v8" {
		t.Errorf("platform %+v, want linux/arm64/v8", d.Platform)
	}
	p := filepath.Join(t.TempDir(), "a.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := layerfs.Open(context.Background(), "oci-archive:"+p+":"+ref, layerfs.WithPlatform("linux/arm64"))
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	if g, w := digestOf(t, got), digestOf(t, img); g != w || d.Digest.String() != w {
		t.Errorf("manifest %s (index says %s), want %s", g, d.Digest, w)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, rc) // the layout verifies digests on read
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestContainerdBaseStreams: Base reads the layers straight from the
// content store (no archive on disk), and a blob that is not what its
// digest says, or is missing, fails the read with ErrContainerd.
func TestContainerdBaseStreams(t *testing.T) {
	ctr, _, amd, _, dir := fakeStore(t)
	amdDigest := digestOf(t, amd)
	images := "docker.io/skiff/amd:1 application/vnd.oci.image.manifest.v1+json " + amdDigest + " 1.7 KiB linux/amd64 - \n"
	if err := os.WriteFile(filepath.Join(dir, "images"), []byte(images), 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	e := NewContainerdEngine(ContainerdConfig{Namespace: "skiff-test"}, "linux/amd64")
	e.Ctr = ctr
	img, cleanup, err := e.Base(context.Background(), "docker.io/skiff/amd:1")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if got, want := configOf(t, img), configOf(t, amd); got != want {
		t.Fatalf("config %s, want %s", got, want)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := amd.Layers()
	if len(layers) != len(want) {
		t.Fatalf("%d layers, want %d", len(layers), len(want))
	}
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if wd, _ := want[i].DiffID(); h != wd {
			t.Errorf("layer %d: content %s, diff_id %s", i, h, wd)
		}
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("Base staged files in TMPDIR: %v", left)
	}

	// The first layer's blob replaced by other bytes of the same size,
	// the second removed.
	d0, _ := want[0].Digest()
	p0 := filepath.Join(dir, "blobs", "sha256", d0.Hex)
	b, err := os.ReadFile(p0)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(p0, b, 0o644); err != nil {
		t.Fatal(err)
	}
	d1, _ := want[1].Digest()
	if err := os.Remove(filepath.Join(dir, "blobs", "sha256", d1.Hex)); err != nil {
		t.Fatal(err)
	}
	for i, errHas := range []string{"another digest", "not found"} {
		rc, err := layers[i].Compressed()
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if !errors.Is(err, ErrContainerd) || !strings.Contains(err.Error(), errHas) {
			t.Errorf("layer %d: read error %v, want ErrContainerd saying %q", i, err, errHas)
		}
	}
}

func TestParseCtrMajor(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want int
	}{
		{"ctr github.com/containerd/containerd/v2 2.4.2+unknown\n", 2},
		{"ctr github.com/containerd/containerd/v2 v2.2.0\n", 2},
		{"ctr github.com/containerd/containerd 1.6.20~ds1\n", 1},
		{"ctr github.com/k3s-io/containerd v1.7.27-k3s1\n", 1},
		{"", 0},
		{"ctr version unknown", 0},
	} {
		if got := parseCtrMajor(tc.out); got != tc.want {
			t.Errorf("parseCtrMajor(%q) = %d, want %d", tc.out, got, tc.want)
		}
	}
}

// ctr 2.2+ on a cgroup-v1 host prints a deprecation warning before any
// error: the error text is the error.
func TestCtrMessageDropsDeprecations(t *testing.T) {
	stderr := `time="2026-12-03T19:12:25Z" level=warning msg="DEPRECATION: The support for cgroup v1 is deprecated since containerd v2.2 and will be removed by no later than May 2029. Upgrade the host to use cgroup v2."
ctr: image "x": not found`
	e := &ctrError{cmd: "ctr images ls", status: 1, stderr: stderr}
	if got, want := e.Error(), `ctr images ls: exit status 1: ctr: image "x": not found`; got != want {
		t.Errorf("error %q, want %q", got, want)
	}
	if got := ctrMessage(`time="x" level=warning msg="DEPRECATION: cgroup v1"`); got != "" {
		t.Errorf("only a warning: %q, want empty", got)
	}
}
