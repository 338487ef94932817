package layerfs

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// oci-archive: a tar of an OCI image layout, extracted safely to open it
// and written from a layout.

// openOCIArchive extracts the archive into a temporary directory, which the
// returned Image's Close removes, and opens it as an OCI layout.
func openOCIArchive(ctx context.Context, r Ref, o *refOptions) (*Image, error) {
	dir, err := os.MkdirTemp(o.tempDir, "skiff-oci-archive-*")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	cleanup := func() error { return os.RemoveAll(dir) }
	if err := extractOCIArchive(ctx, r, r.Path, dir); err != nil {
		_ = cleanup()
		return nil, err
	}
	img, err := openOCILayout(r, dir, o)
	if err != nil {
		_ = cleanup()
		return nil, err
	}
	return &Image{Image: img, Ref: r, cleanup: cleanup}, nil
}

// extractOCIArchive streams the tar (or gzip-compressed tar) at p into dir.
// Members must be relative paths without "..", of type directory, regular
// file, hard link to an earlier member, or symlink whose target is relative
// and has no ".." (so no chain of links can leave dir); anything else fails
// with ErrUnsafeArchive. Writes go through an os.Root on dir as a second
// guard.
func extractOCIArchive(ctx context.Context, r Ref, p, dir string) error {
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open %s: file %s does not exist: %w", r, p, ErrImageNotFound)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", r, err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return fmt.Errorf("open %s: %s is a directory, not an oci-archive tar (use oci:%s): %w", r, p, p, ErrNotImage)
	}
	br := bufio.NewReaderSize(f, 1<<16)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("open %s: %s: bad gzip: %v: %w", r, p, err, ErrNotImage)
		}
		defer gz.Close()
		src = gz
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", r, err)
	}
	defer root.Close()

	unsafe := func(member, why string) error {
		return fmt.Errorf("open %s: member %q %s: %w", r, member, why, ErrUnsafeArchive)
	}
	tr := tar.NewReader(src)
	members := 0
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("open %s: %w", r, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("open %s: %s is not a readable tar: %v: %w", r, p, err, ErrNotImage)
		}
		members++
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		member, why := safeMemberPath(hdr.Name)
		if why != "" {
			return unsafe(hdr.Name, why)
		}
		if member == "." {
			continue
		}
		if parent := path.Dir(member); parent != "." {
			if err := root.MkdirAll(parent, 0o755); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created: %v", err))
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(member, 0o755); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created: %v", err))
			}
		case tar.TypeReg:
			out, err := root.OpenFile(member, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("cannot be created (duplicate or through a link?): %v", err))
			}
			_, cerr := io.Copy(out, tr)
			if err := out.Close(); cerr == nil {
				cerr = err
			}
			if cerr != nil {
				return fmt.Errorf("open %s: extract %q: %w", r, hdr.Name, cerr)
			}
		case tar.TypeLink:
			target, why := safeMemberPath(hdr.Linkname)
			if why != "" {
				return unsafe(hdr.Name, "is a hard link whose target "+why)
			}
			if err := root.Link(target, member); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("is a hard link to %q that cannot be made: %v", hdr.Linkname, err))
			}
		case tar.TypeSymlink:
			t := hdr.Linkname
			if t == "" || path.IsAbs(t) || hasDotDot(t) {
				return unsafe(hdr.Name, fmt.Sprintf("is a symlink to %q, which may leave the archive (only relative targets without \"..\" are allowed)", t))
			}
			if err := root.Symlink(t, member); err != nil {
				return unsafe(hdr.Name, fmt.Sprintf("is a symlink that cannot be made: %v", err))
			}
		default:
			return unsafe(hdr.Name, fmt.Sprintf("has tar type %q, which an OCI layout never holds", hdr.Typeflag))
		}
	}
	if members == 0 {
		return fmt.Errorf("open %s: %s is an empty tar: %w", r, p, ErrNotImage)
	}
	return nil
}

// safeMemberPath cleans a tar member name; why is non-empty if the name is
// absolute, empty or climbs with "..".
func safeMemberPath(n string) (clean, why string) {
	if n == "" {
		return "", "has an empty name"
	}
	if strings.HasPrefix(n, "/") || strings.Contains(n, "\\") {
		return "", "is an absolute path or uses backslashes"
	}
	if hasDotDot(n) {
		return "", `climbs out with ".."`
	}
	return path.Clean(n), ""
}

func hasDotDot(p string) bool {
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return true
		}
	}
	return false
}

// writeOCIArchive writes img into a fresh layout in a temporary directory
// and tars it, in lexical order with fixed metadata, to r.Path atomically.
func writeOCIArchive(ctx context.Context, r Ref, img v1.Image, o *refOptions) error {
	dir, err := os.MkdirTemp(o.tempDir, "skiff-oci-archive-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	defer os.RemoveAll(dir)
	if err := writeOCILayout(ctx, r, dir, img); err != nil {
		return err
	}
	err = atomicfile.Write(r.Path, func(w io.Writer) error {
		return tarDir(ctx, dir, w)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}

// tarDir writes the tree under dir as a tar, members in lexical order,
// with zero timestamps and owners so that the bytes depend on content only.
func tarDir(ctx context.Context, dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		hdr := &tar.Header{Name: rel, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, rel+"/", 0o755
			return tw.WriteHeader(hdr)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, fi.Size()
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return fmt.Errorf("%s: unexpected file type %v in layout", p, d.Type())
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
