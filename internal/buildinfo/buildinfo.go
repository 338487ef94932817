package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/skiff-dev/skiff/delta/format"
)

// Release is the release name, set at link time by release builds
// (-ldflags "-X github.com/skiff-dev/skiff/internal/buildinfo.Release=v1.2.0");
// otherwise the module version Go recorded, "(devel)" for a source build.
var Release string

// Commit is the commit, set at link time (`make build` does: the git
// revision, "+dirty" after it for a work tree with changes) where Go's
// own VCS stamp is off (-buildvcs=false).
var Commit string

// Info describes this build.
type Info struct {
	Release  string `json:"release"`
	Commit   string `json:"commit,omitempty"`   // VCS revision, if Go recorded one
	Modified bool   `json:"modified,omitempty"` // built from a work tree with changes
	Go       string `json:"go"`
	Platform string `json:"platform"` // os/arch[/variant] of this binary
	// Container is the delta container version (the magic's last byte);
	// ManifestMin and ManifestMax the manifest versions read. Writers use
	// the lowest version that can express a delta, ManifestMax by default.
	Container   int `json:"container_version"`
	ManifestMin int `json:"manifest_min"`
	ManifestMax int `json:"manifest_max"`
}

// Get returns this build's Info.
func Get() Info {
	in := Info{Release: Release, Go: runtime.Version(), Platform: platform(), Commit: strings.TrimSuffix(Commit, "+dirty"), Modified: strings.HasSuffix(Commit, "+dirty"),
		Container: format.ContainerVersion, ManifestMin: format.MinVersion, ManifestMax: format.MaxVersion}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		if in.Release == "" {
			in.Release = "(unknown)"
		}
		return in
	}
	if in.Release == "" {
		in.Release = bi.Main.Version
	}
	if in.Release == "" {
		in.Release = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if Commit == "" {
				in.Commit = s.Value
			}
		case "vcs.modified":
			if Commit == "" {
				in.Modified = s.Value == "true"
			}
		case "GOARM":
			if runtime.GOARCH == "arm" {
				in.Platform += "/v" + s.Value
			}
		}
	}
	return in
}

func platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Short is one line: release, commit (12 digits, "+dirty" if modified)
// and Go version.
func (in Info) Short() string {
	s := in.Release
	if in.Commit != "" {
		c := in.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if in.Modified {
			c += "+dirty"
		}
		s += " (" + c + ")"
	}
	return s + " " + in.Go + " " + in.Platform
}
