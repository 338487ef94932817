package atomicfile

import (
	"bufio"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// File is a write in progress: a temporary file that becomes its
// destination only by Commit, and is removed by Abort (or a failed
// Commit). Writes are buffered.
type File struct {
	f    *os.File
	bw   *bufio.Writer
	path string // destination, for Commit
	done bool
}

// Create starts an atomic write of path: a temporary file beside it, so
// the rename stays on one filesystem. When the directory is missing or
// not writable, the error names path, not the temporary file.
func Create(path string) (*File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, &fs.PathError{Op: "create", Path: path, Err: pe.Err}
		}
		return nil, err
	}
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20), path: path}, nil
}

// CreateIn starts an atomic write whose destination is known only once
// the content is (a content address): the temporary file goes to dir,
// which must be on the destination's filesystem; finish with CommitAs.
func CreateIn(dir string) (*File, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, err
	}
	return &File{f: f, bw: bufio.NewWriterSize(f, 1<<20)}, nil
}

// Write buffers p for the temporary file.
func (f *File) Write(p []byte) (int, error) { return f.bw.Write(p) }

// Name is the temporary file's path.
func (f *File) Name() string { return f.f.Name() }

// Commit publishes the file at the path given to Create: flush, mode
// 0644, fsync, rename, fsync of the directory. On error the temporary
// file is removed and the destination untouched.
func (f *File) Commit() error {
	if f.path == "" {
		f.Abort()
		return errors.New("atomicfile: Commit of a file made by CreateIn (use CommitAs)")
	}
	return f.CommitAs(f.path)
}

// CommitAs is Commit to path, which must be on the temporary file's
// filesystem.
func (f *File) CommitAs(path string) (err error) {
	if f.done {
		return errors.New("atomicfile: file already committed or aborted")
	}
	defer func() {
		if err != nil {
			f.Abort()
		}
	}()
	if err = f.bw.Flush(); err != nil {
		return err
	}
	if err = f.f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
		return err
	}
	if err = f.f.Sync(); err != nil {
		return err
	}
	if err = f.f.Close(); err != nil {
		return err
	}
	if err = Rename(f.f.Name(), path); err != nil {
		return err
	}
	f.done = true
	return nil
}

// Abort closes and removes the temporary file. It does nothing after
// Commit, so `defer f.Abort()` cleans up on every early return.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.f.Close()
	os.Remove(f.f.Name())
}

// Write writes path through fill. On any error, path is untouched and the
// temporary file removed. The file gets mode 0644.
func Write(path string, fill func(io.Writer) error) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if err := fill(f); err != nil {
		return err
	}
	return f.Commit()
}

// WriteFile writes data to path atomically (see Write).
func WriteFile(path string, data []byte) error {
	return Write(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// Rename publishes a complete, already fsynced file at newpath and fsyncs
// newpath's directory so the rename survives a power cut. For files
// written elsewhere (a resumable download's .part); Commit does all of it.
func Rename(oldpath, newpath string) error {
	if err := os.Rename(oldpath, newpath); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(newpath))
}

// SyncDir fsyncs a directory, so that renames in it survive a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
