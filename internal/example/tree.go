package example

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"
)

// entry is one member of a layer tar.
type entry struct {
	path  string // relative, no leading or trailing slash
	typ   byte   // tar.TypeDir, TypeReg, TypeSymlink or TypeLink
	mode  int64
	uid   int
	gid   int
	mtime time.Time
	link  string
	data  []byte
}

// layer collects the entries of one layer tar.
type layer struct {
	mtime   time.Time // default for entries and implied parent directories
	entries []*entry
	byPath  map[string]int // index into entries; looked up, never iterated
}

func newLayer(mtime time.Time) *layer {
	return &layer{mtime: mtime, byPath: map[string]int{}}
}

func (l *layer) add(e *entry) {
	if e.mtime.IsZero() {
		e.mtime = l.mtime
	}
	if i, ok := l.byPath[e.path]; ok {
		l.entries[i] = e
		return
	}
	l.byPath[e.path] = len(l.entries)
	l.entries = append(l.entries, e)
}

func (l *layer) file(p string, mode int64, data []byte) *entry {
	e := &entry{path: p, typ: tar.TypeReg, mode: mode, data: data}
	l.add(e)
	return e
}

func (l *layer) dir(p string, mode int64) {
	l.add(&entry{path: p, typ: tar.TypeDir, mode: mode})
}

func (l *layer) symlink(p, target string) {
	l.add(&entry{path: p, typ: tar.TypeSymlink, mode: 0o777, link: target})
}

func (l *layer) hardlink(p, target string) {
	l.add(&entry{path: p, typ: tar.TypeLink, mode: 0o755, link: target})
}

// whiteout records the deletion of p from a lower layer.
func (l *layer) whiteout(p string) {
	l.file(path.Join(path.Dir(p), ".wh."+path.Base(p)), 0o644, nil)
}

func (l *layer) get(p string) *entry {
	if i, ok := l.byPath[p]; ok {
		return l.entries[i]
	}
	return nil
}

func (l *layer) remove(p string) {
	i, ok := l.byPath[p]
	if !ok {
		return
	}
	l.entries = slices.Delete(l.entries, i, i+1)
	delete(l.byPath, p)
	for j := i; j < len(l.entries); j++ {
		l.byPath[l.entries[j].path] = j
	}
}

// size is the total of the regular files' contents.
func (l *layer) size() int {
	n := 0
	for _, e := range l.entries {
		n += len(e.data)
	}
	return n
}

// clone copies the layer; entries are shared until replaced with add.
func (l *layer) clone(mtime time.Time) *layer {
	c := newLayer(mtime)
	for _, e := range l.entries {
		c.add(e)
	}
	return c
}

// comparePaths orders paths the way a directory walk emits them: component
// by component, so a directory's children follow it directly.
func comparePaths(a, b string) int {
	as, bs := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(as) && i < len(bs); i++ {
		if c := strings.Compare(as[i], bs[i]); c != 0 {
			return c
		}
	}
	return len(as) - len(bs)
}

// tar returns the layer as an uncompressed tar, in walk order, with every
// parent directory present, like a layer made by docker build.
func (l *layer) tar() ([]byte, error) {
	all := slices.Clone(l.entries)
	seen := map[string]bool{}
	for _, e := range l.entries {
		seen[e.path] = true
	}
	for _, e := range l.entries {
		for d := path.Dir(e.path); d != "."; d = path.Dir(d) {
			if !seen[d] {
				seen[d] = true
				all = append(all, &entry{path: d, typ: tar.TypeDir, mode: 0o755, mtime: l.mtime})
			}
		}
	}
	slices.SortFunc(all, func(a, b *entry) int { return comparePaths(a.path, b.path) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range all {
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     e.path,
			Linkname: e.link,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  e.mtime,
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			h.Name += "/"
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("tar data %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
