package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// CorpusPairs are the corpus pairs `skiff bench --corpus` measures, in
// table order.
var CorpusPairs = []string{"toolchain", "os", "app", "npm", "apt", "python", "goarm64", "armapp", "armv7app", "goamd64", "debarm64", "debarm64up"}

// Corpus returns the corpus pairs of root (see package corpus): the
// docker-archives images/<pair>/{old,new}.tar. A missing image is an error
// wrapping ErrBadPair that names it and how to build it.
func Corpus(root string) ([]Pair, error) {
	var ps []Pair
	for _, name := range CorpusPairs {
		p := Pair{Name: name}
		for _, side := range []struct {
			file string
			ref  *string
		}{{"old.tar", &p.From}, {"new.tar", &p.To}} {
			f := filepath.Join(root, "images", name, side.file)
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("corpus image %s: %w (build the corpus with `make corpus`, or set SKIFF_CORPUS): %w", f, err, ErrBadPair)
			}
			*side.ref = "docker-archive:" + f
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// ParsePair parses a --pair flag: FROM=TO or NAME=FROM=TO, where FROM and
// TO are image references. Without NAME, the pair is called pair<n>.
func ParsePair(spec string, n int) (Pair, error) {
	parts := strings.Split(spec, "=")
	var p Pair
	switch len(parts) {
	case 2:
		p = Pair{Name: fmt.Sprintf("pair%d", n), From: parts[0], To: parts[1]}
	case 3:
		p = Pair{Name: parts[0], From: parts[1], To: parts[2]}
	default:
		return Pair{}, fmt.Errorf("pair %q: want FROM=TO or NAME=FROM=TO: %w", spec, ErrBadPair)
	}
	if p.From == "" || p.To == "" || p.Name == "" {
		return Pair{}, fmt.Errorf("pair %q: empty name, base or target: %w", spec, ErrBadPair)
	}
	return p, nil
}

// ReadPairs reads a pairs file: one "NAME FROM TO" per line, separated by
// blanks; empty lines and lines starting with # are skipped. Errors name
// the file and line.
func ReadPairs(name string, r io.Reader) ([]Pair, error) {
	var ps []Pair
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		f := strings.Fields(text)
		if len(f) != 3 {
			return nil, fmt.Errorf("%s:%d: want NAME FROM TO, got %d fields: %w", name, line, len(f), ErrBadPair)
		}
		ps = append(ps, Pair{Name: f[0], From: f[1], To: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, err, ErrBadPair)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("%s: no pairs: %w", name, ErrBadPair)
	}
	return ps, nil
}

// ReadPairsFile reads a pairs file from disk (see ReadPairs).
func ReadPairsFile(path string) ([]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pairs file: %w: %w", err, ErrBadPair)
	}
	defer f.Close()
	return ReadPairs(path, f)
}
