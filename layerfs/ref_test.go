package layerfs

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseRef(t *testing.T) {
	good := []struct {
		in   string
		want Ref
	}{
		{"docker-archive:/tmp/a.tar", Ref{Transport: "docker-archive", Path: "/tmp/a.tar"}},
		{"docker-archive:a.tar:foo:1", Ref{Transport: "docker-archive", Path: "a.tar", Name: "foo:1"}},
		{"docker-archive:a.tar:docker.io/library/foo:1", Ref{Transport: "docker-archive", Path: "a.tar", Name: "docker.io/library/foo:1"}},
		{"oci:/layouts/x", Ref{Transport: "oci", Path: "/layouts/x"}},
		{"oci:/layouts/x:v1.2", Ref{Transport: "oci", Path: "/layouts/x", Name: "v1.2"}},
		{"oci:dir:reg.example/app:1", Ref{Transport: "oci", Path: "dir", Name: "reg.example/app:1"}},
		{"oci-archive:x.tar:latest", Ref{Transport: "oci-archive", Path: "x.tar", Name: "latest"}},
		{"docker://127.0.0.1:5000/a/b:1", Ref{Transport: "docker", Name: "127.0.0.1:5000/a/b:1"}},
		{"docker://alpine", Ref{Transport: "docker", Name: "alpine"}},
		{"docker://reg.example/a@sha256:" + strings.Repeat("ab", 32), Ref{Transport: "docker", Name: "reg.example/a@sha256:" + strings.Repeat("ab", 32)}},
		{"docker-daemon:skiff-it/roundtrip:1", Ref{Transport: "docker-daemon", Name: "skiff-it/roundtrip:1"}},
		{"docker-daemon:localhost:5000/a:b", Ref{Transport: "docker-daemon", Name: "localhost:5000/a:b"}},
		{"docker-daemon:sha256:" + strings.Repeat("0f", 32), Ref{Transport: "docker-daemon", Name: "sha256:" + strings.Repeat("0f", 32)}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseRef(tc.in)
			if err != nil {
				t.Fatalf("ParseRef(%q): %v", tc.in, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseRef(%q) (-want +got):\n%s", tc.in, diff)
			}
			if got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}

	bad := []struct {
		in      string
		mention string // the error must say this
	}{
		{"", "no transport"},
		{"/tmp/a.tar", "no transport"},
		{"tarball:/tmp/a.tar", `unknown transport "tarball" (want one of docker-archive:PATH[:TAG], oci:DIR[:REF]`},
		{"docker-archive:", "missing path"},
		{"oci:", "missing path"},
		{"oci-archive::x", "missing path"},
		{"docker-archive:a.tar:", "empty tag"},
		{"oci:dir:", "empty ref"},
		{"docker-archive:a.tar:Foo:1", `tag "Foo:1"`},
		{"oci:dir:bad ref", `ref "bad ref" is not a valid`},
		{"docker:alpine", `start with "docker://"`},
		{"docker://", "missing HOST/REPO:TAG"},
		{"docker://UPPER/case:1", `registry reference "UPPER/case:1"`},
		{"docker-daemon:", "missing NAME:TAG"},
		{"docker-daemon:alpine", "neither a tag nor a digest"},
		{"docker-daemon:localhost:5000/alpine", "neither a tag nor a digest"},
		{"docker-daemon:a b:1", `engine image name "a b:1"`},
	}
	for _, tc := range bad {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			_, err := ParseRef(tc.in)
			if !errors.Is(err, ErrBadReference) {
				t.Fatalf("ParseRef(%q) = %v, want ErrBadReference", tc.in, err)
			}
			if !strings.Contains(err.Error(), tc.mention) || !strings.Contains(err.Error(), "\""+tc.in+"\"") {
				t.Errorf("error %q should quote the reference and mention %q", err, tc.mention)
			}
		})
	}
}

func TestRefOptionPlatform(t *testing.T) {
	good := []struct {
		in   string
		want v1.Platform
	}{
		{"linux/amd64", v1.Platform{OS: "linux", Architecture: "amd64"}},
		{"linux/arm64/v8", v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}},
		{"linux/arm/v7", v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}},
	}
	for _, tc := range good {
		t.Run(tc.in, func(t *testing.T) {
			o, err := makeRefOptions([]Option{WithPlatform(tc.in)})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, *o.platform); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	for _, in := range []string{"", "linux", "linux/", "/amd64", "linux/amd64/v8/x", "Linux/AMD64", "windows/amd64:10.0", "linux/arm 64"} {
		t.Run("bad/"+in, func(t *testing.T) {
			_, err := makeRefOptions([]Option{WithPlatform(in)})
			if !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), "OS/ARCH") {
				t.Errorf("WithPlatform(%q) = %v, want ErrBadReference explaining OS/ARCH", in, err)
			}
		})
	}
}

func TestRefOptionTempDir(t *testing.T) {
	dir := t.TempDir()
	o, err := makeRefOptions([]Option{WithTempDir(dir)})
	if err != nil || o.tempDir != dir {
		t.Fatalf("WithTempDir(%q) = %+v, %v", dir, o, err)
	}
	if _, err := makeRefOptions([]Option{WithTempDir(dir + "/missing")}); err == nil {
		t.Error("WithTempDir accepted a missing directory")
	}
}
