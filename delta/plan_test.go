package delta

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestVersionStem(t *testing.T) {
	for name, want := range map[string]string{
		"libssl.so.3.0.11":         "libssl.so",
		"node_exporter-1.8.0.tar":  "node.exporter.tar",
		"python3.11":               "python",
		"app.e93a4b.js":            "app.js",
		"app.7c2d01.js":            "app.js",
		"vendor.4b1f9e.css":        "vendor.css",
		"deface.txt":               "deface.txt", // a word, not a hash
		"libyaml-0.so.2.0.9":       "libyaml.so",
		"README":                   "README",
		"2024-01-01.log":           "log",
		"chunk-5f3e2a9b1c.min.js":  "chunk.min.js",
		"abcdef.js":                "abcdef.js", // no digit: a name
		"x86_64-linux-gnu.conf":    "x.linux.gnu.conf",
		"libstdc++.so.6.0.30":      "libstdc.so",
		"kernel-6.1.0-18-amd64.gz": "kernel.amd.gz",
	} {
		if got := versionStem(name); got != want {
			t.Errorf("versionStem(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestBaseLookup(t *testing.T) {
	x := newBaseIndex()
	for _, f := range []baseFile{
		{"usr/lib/libssl.so.3.0.11", "sha256:a1", 600_000},
		{"app/static/js/app.7c2d01.js", "sha256:b1", 261_639},
		{"app/static/js/vendor.4b1f9e.js", "sha256:b2", 314_061},
		{"opt/tool/bin/run", "sha256:c1", 1000},
		{"usr/share/doc/tiny/x.txt", "sha256:d1", 10},
	} {
		x.add(f)
	}
	tests := []struct {
		path string
		size int64
		want digest.Digest // "" = none
	}{
		{"usr/lib/libssl.so.3.0.11", 1, "sha256:a1"},          // same path wins whatever the size
		{"usr/lib/libssl.so.3.0.13", 610_000, "sha256:a1"},    // new version, same dir
		{"usr/lib64/libssl.so.3.2.0", 610_000, "sha256:a1"},   // moved: same stem anywhere
		{"app/static/js/app.e93a4b.js", 258_376, "sha256:b1"}, // re-hashed bundle
		{"usr/lib/libssl.so.3.0.13", 5_000_000, ""},           // far too big: not a version of it
		{"other/bin/run", 1000, ""},                           // short stems only match in place
		{"usr/share/doc/other/y.txt", 10, ""},
	}
	for _, tt := range tests {
		got, ok := x.lookup(tt.path, tt.size)
		if ok != (tt.want != "") || got.digest != tt.want {
			t.Errorf("lookup(%q, %d) = %v %v, want %q", tt.path, tt.size, got.digest, ok, tt.want)
		}
	}
}
