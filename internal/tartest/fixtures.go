package tartest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// ErrNoFixtures is returned by Fixtures when the fixture directory cannot be
// found.
var ErrNoFixtures = errors.New("tartest: fixture directory not found")

// FixtureDir is the fixture directory relative to the module root.
const FixtureDir = "layerfs/testdata/tars"

// fixtureNotes describes each fixture made by make-fixtures.sh. README.md in
// the fixture directory says the same for people.
var fixtureNotes = map[string]string{
	"gnu-sparse-gnu.tar": "GNU tar --format=gnu --sparse: old GNU 'S' headers; sparse/many has 6 " +
		"fragments plus a trailing-hole entry, so an extension block.",
	"gnu-sparse-oldgnu.tar": "GNU tar --format=oldgnu --sparse: as gnu-sparse-gnu.tar with oldgnu " +
		"magic semantics.",
	"gnu-sparse-pax-0.0.tar": "GNU tar --format=posix --sparse-version=0.0: repeated " +
		"GNU.sparse.offset/numbytes PAX records.",
	"gnu-sparse-pax-0.1.tar": "GNU tar --format=posix --sparse-version=0.1: GNU.sparse.map PAX record.",
	"gnu-sparse-pax-1.0.tar": "GNU tar --format=posix --sparse-version=1.0: sparse map in the data " +
		"block, header names 'sparse/GNUSparseFile.1/...' (tar ran as PID 1).",
	"gnu-longnames-gnu.tar":   "GNU tar --format=gnu: 172- and 271-byte names and a long symlink target ('L', 'K').",
	"gnu-longnames-posix.tar": "GNU tar --format=posix: the same names as PAX path/linkpath records.",
	"gnu-longnames-ustar.tar": "GNU tar --format=ustar: a 172-byte name split into prefix and name, and " +
		"a name of exactly 100 bytes.",
	"gnu-hardlinks-gnu.tar":   "GNU tar --format=gnu: a file with two hardlinks (one in a subdirectory) and symlinks.",
	"gnu-hardlinks-posix.tar": "GNU tar --format=posix: the same tree as gnu-hardlinks-gnu.tar.",
	"gnu-v7.tar": "GNU tar --format=v7: no magic, regular files with typeflag '0' and a " +
		"hardlink, symlink, empty file and directory.",
	"gnu-specials-posix.tar": "GNU tar --format=posix: fifo, char and block devices, empty file, " +
		"files of exactly 512 and 1024 bytes.",
	"gnu-nonutf8-gnu.tar":   "GNU tar --format=gnu: names with raw bytes 0xe9 and 0xff 0xfe.",
	"gnu-nonutf8-posix.tar": "GNU tar --format=posix in the C locale: the same names as raw bytes in PAX path records.",
	"gnu-xattrs-posix.tar": "GNU tar --format=posix --xattrs: SCHILY.xattr.user.* (one binary) and a " +
		"binary security.capability.",
	"bsdtar-pax.tar": "bsdtar (libarchive) --format=pax re-writing the posix names+links+specials " +
		"archive: libarchive's 'PaxHeader/' names, no 10 KiB record padding.",
	"bsdtar-gnutar.tar":     "bsdtar --format=gnutar: the same input, libarchive's GNU 'L'/'K' writer.",
	"bsdtar-ustar.tar":      "bsdtar --format=ustar: the same input less the names ustar cannot hold.",
	"bsdtar-v7.tar":         "bsdtar --format=v7: what v7 can hold of the same input (no devices, fifos, long names).",
	"bsdtar-sparse-pax.tar": "bsdtar --format=pax re-writing gnu-sparse-pax-1.0.tar: libarchive's GNU.sparse 1.0 writer.",
	"bsdtar-xattrs-pax.tar": "bsdtar --format=pax re-writing gnu-xattrs-posix.tar: both LIBARCHIVE.xattr.* " +
		"(base64) and SCHILY.xattr.* records.",
	"busybox.tar": "busybox tar: ustar with GNU 'L'/'K' long names, file list given sorted with --no-recursion.",
}

// Fixtures returns the real-tool tar fixtures in layerfs/testdata/tars, sorted
// by name. Each Case's Name is the file name and Notes says which tool and
// options made it.
//
// The directory is found from this source file's location, or failing that
// (a -trimpath build) by walking up from the working directory to the
// module root.
func Fixtures() ([]Case, error) {
	dir, err := fixtureDir()
	if err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, fmt.Errorf("fixtures in %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no *.tar in %s: %w", dir, ErrNoFixtures)
	}
	sort.Strings(names)
	var out []Case
	for _, p := range names {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
		name := filepath.Base(p)
		notes, ok := fixtureNotes[name]
		if !ok {
			notes = "undocumented fixture: add it to fixtureNotes and README.md"
		}
		out = append(out, Case{Name: name, Data: data, Notes: notes})
	}
	return out, nil
}

// fixtureDir locates the fixture directory.
func fixtureDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		d := filepath.Join(filepath.Dir(file), "..", "..", filepath.FromSlash(FixtureDir))
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return filepath.Clean(d), nil
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("%v: %w", err, ErrNoFixtures)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if isModuleRoot(d) {
			return filepath.Join(d, filepath.FromSlash(FixtureDir)), nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no skiff module root above %s: %w", wd, ErrNoFixtures)
		}
	}
}

func isModuleRoot(d string) bool {
	b, err := os.ReadFile(filepath.Join(d, "go.mod"))
	return err == nil && strings.Contains(string(b), "module github.com/skiff-dev/skiff\n")
}
