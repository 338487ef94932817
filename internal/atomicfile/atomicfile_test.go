package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := WriteFile(p, []byte("one")); err != nil {
		t.Fatal(err)
	}
	// A failing fill leaves the old content and no temporary file.
	boom := errors.New("boom")
	err := Write(p, func(w io.Writer) error {
		w.Write([]byte("half of tw"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q after a failed write, want the old one", b)
	}
	if err := WriteFile(p, []byte("two")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "two" {
		t.Fatalf("content %q, want two", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory, want only the target", len(entries))
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
	if err := WriteFile(filepath.Join(dir, "missing", "x"), nil); err == nil {
		t.Error("write into a missing directory: no error")
	}
}

// TestCreateCommit: a File is invisible until Commit, gone after Abort, and
// an error in a missing directory names the destination, not the
// temporary file.
func TestCreateCommit(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.skiff")
	f, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	io.WriteString(f, "delta")
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("destination visible before Commit: %v", err)
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	f.Abort() // after Commit: nothing
	if b, _ := os.ReadFile(p); string(b) != "delta" {
		t.Fatalf("content %q", b)
	}
	g, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(g, "other")
	g.Abort()
	if b, _ := os.ReadFile(p); string(b) != "delta" {
		t.Fatalf("content %q after an aborted write", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files, want only the destination", len(ents))
	}
	// Content-addressed: the name comes after the bytes.
	h, err := CreateIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(h, "abc")
	if err := h.CommitAs(filepath.Join(dir, "abc")); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope", "out.skiff")
	_, err = Create(missing)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Path != missing || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Create in a missing directory: %v, want a *PathError naming %s", err, missing)
	}
}
