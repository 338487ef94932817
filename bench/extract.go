package bench

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// extractTree extracts a layer tar into dir, as a device that runs the
// image holds it, for tools that patch against a file tree (tar-patch).
// Writes are confined to dir (os.Root): absolute names, ".." and symlinks
// cannot reach outside. Regular files, directories, symlinks and hard links
// are created; devices and fifos are skipped (no tool reads them), and
// ownership and times are not restored.
func extractTree(ctx context.Context, tarPath, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", tarPath, err)
		}
		name := cleanName(h.Name)
		if name == "" {
			continue
		}
		if h.Typeflag != tar.TypeDir {
			if err := root.MkdirAll(path.Dir(name), 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if err := root.RemoveAll(name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeReg:
			perm := os.FileMode(0o644)
			if h.Mode&0o111 != 0 {
				perm = 0o755
			}
			out, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeSymlink:
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		case tar.TypeLink:
			if target := cleanName(h.Linkname); target != "" {
				// A link to something not extracted (or through a
				// symlink leaving dir) is left out, as with devices.
				_ = root.Link(target, name)
			}
		}
	}
}

// cleanName makes a tar member name relative; "" for names that are the
// root itself or climb out of it.
func cleanName(n string) string {
	n = path.Clean("/" + n)[1:]
	if n == "" || n == "." || strings.HasPrefix(n, "../") {
		return ""
	}
	return n
}
