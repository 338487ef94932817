package delta

import (
	"path"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
)

// baseFile is a base payload as found at a path of the base image.
type baseFile struct {
	path   string
	digest digest.Digest
	size   int64
}

// baseIndex finds a base payload to diff a target payload against.
type baseIndex struct {
	byPath    map[string]baseFile   // path -> payload of the topmost base layer holding it
	byStemDir map[string][]baseFile // dir + version-stripped name -> payloads
	byStem    map[string][]baseFile // version-stripped name -> payloads
}

func newBaseIndex() *baseIndex {
	return &baseIndex{
		byPath:    make(map[string]baseFile),
		byStemDir: make(map[string][]baseFile),
		byStem:    make(map[string][]baseFile),
	}
}

// add records a base payload; later layers override earlier ones at a path.
func (x *baseIndex) add(f baseFile) {
	f.path = cleanPath(f.path)
	x.byPath[f.path] = f
	dir, stem := path.Dir(f.path), versionStem(path.Base(f.path))
	x.byStemDir[dir+"/"+stem] = append(x.byStemDir[dir+"/"+stem], f)
	x.byStem[stem] = append(x.byStem[stem], f)
}

// lookup picks the base for a target payload at p of the given size: the
// same path; else a renamed or moved sibling (same directory and
// version-stripped name, similar size); else the same version-stripped name
// anywhere with a similar size. The choice is deterministic.
func (x *baseIndex) lookup(p string, size int64) (baseFile, bool) {
	p = cleanPath(p)
	if f, ok := x.byPath[p]; ok {
		return f, true
	}
	stem := versionStem(path.Base(p))
	if f, ok := closest(x.byStemDir[path.Dir(p)+"/"+stem], size); ok {
		return f, true
	}
	if len(stem) >= 4 { // short names ("a", "run") match too much
		if f, ok := closest(x.byStem[stem], size); ok {
			return f, true
		}
	}
	return baseFile{}, false
}

// closest returns the candidate nearest in size, within a factor of two.
func closest(cands []baseFile, size int64) (baseFile, bool) {
	best, found := baseFile{}, false
	for _, c := range cands {
		if c.size == 0 || c.size > 2*size+4096 || size > 2*c.size+4096 {
			continue
		}
		if !found || absDiff(c.size, size) < absDiff(best.size, size) ||
			(absDiff(c.size, size) == absDiff(best.size, size) && c.path < best.path) {
			best, found = c, true
		}
	}
	return best, found
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

func cleanPath(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	return p
}

// versionStem strips version-like parts from a file name:
// "libssl.so.3.0.11" -> "libssl.so", "node_exporter-1.8.0.tar" -> "node.exporter.tar",
// "python3.11" -> "python", and content hashes of web bundles:
// "app.e93a4b.js" -> "app.js".
func versionStem(name string) string {
	var b strings.Builder
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == '.' || r == '-' || r == '_' || r == '+' || r == '~' })
	for _, part := range parts {
		trimmed := strings.TrimRight(strings.TrimLeft(part, "v"), "0123456789")
		if trimmed == "" || (part[0] >= '0' && part[0] <= '9') || isContentHash(part) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.TrimRight(part, "0123456789"))
	}
	if b.Len() == 0 {
		return name
	}
	return b.String()
}

// isContentHash reports whether a name part looks like the content hash
// bundlers put in file names: 6 or more hex digits, at least one a digit
// and one a letter (so words such as "deface" stay).
func isContentHash(part string) bool {
	if len(part) < 6 {
		return false
	}
	digits, letters := 0, 0
	for _, r := range part {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r >= 'a' && r <= 'f':
			letters++
		default:
			return false
		}
	}
	return digits > 0 && letters > 0
}

// sortedDigests returns the keys of a set, sorted.
func sortedDigests(m map[digest.Digest]bool) []digest.Digest {
	out := make([]digest.Digest, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
