package layerfs

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrUnsafePath: a layer holds an entry that would be written outside the
// root it is extracted into (SKELETON.md, "Path safety").
var ErrUnsafePath = errors.New("unsafe path")

// PathChecker checks the entries of one layer, in tar order, for paths
// that would escape the extraction root: an absolute or ".."-escaping
// name, a hard link to such a target, and a name (or hard link target)
// whose parent goes through a symbolic link defined earlier in the same
// layer. Symbolic link targets themselves may be anything, as they are in
// real images (bin -> usr/bin, /lib/x -> /usr/lib/x); whiteouts are
// ordinary names. Docker and containerd refuse most of these themselves
// while extracting; skiff refuses them earlier, as defense in depth.
//
// The checker keeps the set of symbolic links seen so far in the layer,
// so its memory grows with the layer's symlink count, not its size.
type PathChecker struct {
	layer    int
	symlinks map[string]bool // cleaned names of the layer's symlinks so far
}

// NewPathChecker returns a checker for the entries of layer index layer
// (the index only appears in error messages).
func NewPathChecker(layer int) *PathChecker {
	return &PathChecker{layer: layer, symlinks: map[string]bool{}}
}

// Check checks the next entry of the layer. Its error wraps ErrUnsafePath
// and names the layer and the entry.
func (c *PathChecker) Check(e *Entry) error {
	if e.Type == typePAXGlob {
		return nil // metadata only, never extracted
	}
	name, err := c.resolve(e.Name, "", e.Name)
	if err != nil {
		return err
	}
	isLink := false
	if e.Type == typeLink {
		target, err := c.resolve(e.Name, "hard link target", e.Linkname)
		if err != nil {
			return err
		}
		// A hard link to a symbolic link is a symbolic link too.
		isLink = c.symlinks[target]
	}
	if e.Type == typeSymlink || isLink {
		c.symlinks[name] = true
	} else if len(c.symlinks) > 0 {
		// Extraction replaces a symlink by a later entry of the same name.
		delete(c.symlinks, name)
	}
	return nil
}

// resolve returns p cleaned ("a/./b/" is "a/b", the root is "."), or an
// error when p is absolute (after leading "./"), leaves the root through
// "..", or goes through a symbolic link of this layer: a component that
// such a link names, followed by more (a name or ".."), as extraction
// would follow it. entry names the entry, what says which of its paths p
// is ("": its name) for the message.
func (c *PathChecker) resolve(entry, what, p string) (string, error) {
	s := p
	for strings.HasPrefix(s, "./") {
		s = s[2:]
	}
	if what == "" {
		what = "path"
	} else {
		what = fmt.Sprintf("%s %q", what, p)
	}
	if strings.HasPrefix(s, "/") {
		return "", c.unsafe(entry, what+" is absolute")
	}
	comps := strings.Split(s, "/")
	last := len(comps) - 1 // the last component that moves: a name or ".."
	for last >= 0 && (comps[last] == "" || comps[last] == ".") {
		last--
	}
	var parts []string
	for i := 0; i <= last; i++ {
		switch comps[i] {
		case "", ".":
			continue
		case "..":
			if len(parts) == 0 {
				return "", c.unsafe(entry, what+" leaves the root")
			}
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, comps[i])
		}
		if i < last && len(parts) > 0 && len(c.symlinks) > 0 {
			if dir := strings.Join(parts, "/"); c.symlinks[dir] {
				return "", c.unsafe(entry, fmt.Sprintf("%s goes through %q, a symbolic link defined earlier in the layer", what, dir))
			}
		}
	}
	if len(parts) == 0 {
		return ".", nil
	}
	return strings.Join(parts, "/"), nil
}

func (c *PathChecker) unsafe(entry, why string) error {
	return fmt.Errorf("%w: layer %d, entry %q: %s", ErrUnsafePath, c.layer, entry, why)
}

// CheckPaths walks a skeleton and checks every entry with a PathChecker
// for layer index layer.
func CheckPaths(skel io.Reader, layer int) error {
	c := NewPathChecker(layer)
	return Walk(skel, func(f File) error { return c.Check(&f.Entry) })
}
