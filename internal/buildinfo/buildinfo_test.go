package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/delta/format"
)

func TestGet(t *testing.T) {
	in := Get()
	if in.Release == "" || in.Go != runtime.Version() || !strings.HasPrefix(in.Platform, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("info %+v", in)
	}
	if in.ManifestMin != format.MinVersion || in.ManifestMax != format.MaxVersion || in.Container != format.ContainerVersion {
		t.Fatalf("format versions %+v", in)
	}
	if s := in.Short(); !strings.Contains(s, in.Release) || !strings.Contains(s, in.Go) {
		t.Fatalf("short %q", s)
	}
}

func TestReleaseSetAtLinkTime(t *testing.T) {
	defer func(old string) { Release = old }(Release)
	Release = "v9.8.7"
	in := Get()
	in.Commit, in.Modified = "0123456789abcdef0123", true
	if in.Release != "v9.8.7" || !strings.HasPrefix(in.Short(), "v9.8.7 (0123456789ab+dirty) ") {
		t.Fatalf("%q", in.Short())
	}
}
