package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/tartest"
)

// pathTar writes headers (no contents: regular files are empty) as a tar.
func pathTar(t testing.TB, hdrs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		h.Mode, h.Format = 0o644, tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("header %q: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func reg(name string) tar.Header  { return tar.Header{Name: name, Typeflag: tar.TypeReg} }
func dirH(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeDir} }
func symlink(name, target string) tar.Header {
	return tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink}
}
func hardlink(name, target string) tar.Header {
	return tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeLink}
}

// checkTar disassembles a tar and checks its paths as layer 3.
func checkTar(t testing.TB, data []byte) error {
	t.Helper()
	var skel bytes.Buffer
	if _, err := Disassemble(context.Background(), bytes.NewReader(data), memStore{}, &skel); err != nil {
		t.Fatalf("Disassemble: %v", err)
	}
	return CheckPaths(&skel, 3)
}

func TestPathChecker(t *testing.T) {
	tests := []struct {
		name    string
		entries []tar.Header
		want    string // substring of the error; "" = safe
	}{
		{"plain names", []tar.Header{dirH("./"), dirH("./usr/"), reg("./usr/bin/x"), reg("etc/passwd")}, ""},
		{"image symlinks may point anywhere", []tar.Header{
			symlink("bin", "usr/bin"), symlink("lib/x", "/usr/lib/x"), symlink("up", "../../.."),
			symlink("etc/mtab", "/proc/self/mounts"), reg("usr/bin/sh")}, ""},
		{"whiteouts are names", []tar.Header{reg("app/.wh.old"), reg("app/cache/.wh..wh..opq"), reg(".wh..wh..opq")}, ""},
		{"dot-dot that stays inside", []tar.Header{reg("a/b/../c"), reg("./a/./d")}, ""},
		{"hard links inside", []tar.Header{reg("a/f"), hardlink("a/g", "a/f"), hardlink("b", "./a/f")}, ""},
		{"symlink replaced by a directory", []tar.Header{symlink("a", "/etc"), dirH("a/"), reg("a/passwd")}, ""},
		{"symlink itself named again", []tar.Header{symlink("a", "/etc"), symlink("a", "/usr")}, ""},
		{"trailing slash on a symlink's name", []tar.Header{symlink("a", "/etc"), dirH("a/")}, ""},
		{"a sibling named like a symlink's prefix", []tar.Header{symlink("ab", "/etc"), reg("abc/x"), reg("a/b")}, ""},

		{"absolute name", []tar.Header{reg("/etc/passwd")}, `entry "/etc/passwd": path is absolute`},
		{"absolute after ./", []tar.Header{reg(".//etc/passwd")}, "is absolute"},
		{"dot-dot name", []tar.Header{reg("../evil")}, `entry "../evil": path leaves the root`},
		{"dot-dot alone", []tar.Header{dirH("..")}, "leaves the root"},
		{"dot-dot after cleaning", []tar.Header{reg("a/../../evil")}, "leaves the root"},
		{"dot-dot after ./", []tar.Header{reg("./../evil")}, "leaves the root"},
		{"hard link to an absolute path", []tar.Header{hardlink("x", "/etc/shadow")}, `hard link target "/etc/shadow" is absolute`},
		{"hard link leaving the root", []tar.Header{hardlink("x", "a/../../etc/shadow")}, `entry "x": hard link target "a/../../etc/shadow" leaves the root`},
		{"through an absolute symlink", []tar.Header{symlink("a", "/etc"), reg("a/passwd")},
			`entry "a/passwd": path goes through "a", a symbolic link defined earlier`},
		{"through a relative symlink", []tar.Header{symlink("a", "../../.."), reg("a/x")}, `goes through "a"`},
		{"through a nested symlink", []tar.Header{dirH("d/"), symlink("d/l", "/"), reg("./d/l/etc/x")}, `goes through "d/l"`},
		{"through a symlink, then up", []tar.Header{symlink("a", "/etc/ssl"), reg("a/../passwd")}, `goes through "a"`},
		{"through a symlink with ./", []tar.Header{symlink("./a/", "/etc"), dirH("a/./b/")}, `goes through "a"`},
		{"whiteout through a symlink", []tar.Header{symlink("a", "/etc"), reg("a/.wh.passwd")}, `goes through "a"`},
		{"hard link through a symlink", []tar.Header{symlink("a", "/etc"), hardlink("x", "a/shadow")}, `hard link target "a/shadow" goes through "a"`},
		{"through a hard link to a symlink", []tar.Header{symlink("a", "/etc"), hardlink("b", "a"), reg("b/passwd")}, `goes through "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTar(t, pathTar(t, tt.entries...))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused a safe layer: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("err = %v, want ErrUnsafePath", err)
			}
			if !strings.Contains(err.Error(), "layer 3") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to name layer 3 and say %q", err, tt.want)
			}
		})
	}
}

// TestPathCheckerTricky: none of the tricky tar cases, the real tools'
// fixtures or a realistic generated layer trips the checker.
func TestPathCheckerTricky(t *testing.T) {
	cases := tartest.Cases(1)
	fixtures, err := tartest.Fixtures()
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, fixtures...)
	var layer bytes.Buffer
	if err := tartest.Layer(&layer, 7, 4<<20); err != nil {
		t.Fatal(err)
	}
	cases = append(cases, tartest.Case{Name: "generated-layer", Data: layer.Bytes()})
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			if err := checkTar(t, c.Data); err != nil {
				t.Fatal(err)
			}
		})
	}
}
