package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestStatePersistence(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Load()
	if err != nil || len(st.Images) != 0 {
		t.Fatalf("fresh state: %+v, %v", st, err)
	}
	when := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	want := ImageState{
		LastCheck: when, LastUpdate: when.Add(-time.Hour), NextCheck: when.Add(24 * time.Hour),
		Current:   Current{ConfigDigest: "sha256:aa", ManifestDigest: "sha256:bb", Ref: "web:stable"},
		LastError: "boom", Previous: []string{"sha256:cc"},
	}
	if _, err := s.Update("web", func(is *ImageState) { *is = want }); err != nil {
		t.Fatal(err)
	}
	// A new store (a restarted agent) reads the same state back.
	s2, _ := OpenState(dir)
	st, err = s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, *st.Images["web"]); diff != "" {
		t.Errorf("reloaded (-want +got):\n%s", diff)
	}
	// The file is plain JSON with the documented field names, and no
	// temporary file is left.
	b, _ := os.ReadFile(filepath.Join(dir, StateFile))
	var raw map[string]map[string]map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"last_check", "last_update", "next_check", "current", "last_error"} {
		if _, ok := raw["images"]["web"][k]; !ok {
			t.Errorf("state.json lacks %q: %s", k, b)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".state.json.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestStateConcurrentUpdates(t *testing.T) {
	s, _ := OpenState(t.TempDir())
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.Update("web", func(is *ImageState) { is.Failures++ }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st, _ := s.Load()
	if got := st.Images["web"].Failures; got != 20 {
		t.Errorf("failures = %d, want 20 (lost updates)", got)
	}
}

func TestStateErrors(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenState(dir)
	if _, err := s.Update("web", func(is *ImageState) { is.LastError = "x" }); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(s.Path())
	// A failed write (the directory is gone) reports ErrState.
	gone := filepath.Join(dir, "gone")
	sg, _ := OpenState(gone)
	os.RemoveAll(gone)
	if _, err := sg.Update("web", func(*ImageState) {}); !errors.Is(err, ErrState) {
		t.Errorf("write into a missing dir: %v", err)
	}
	// A write that cannot rename over the file leaves the old state intact.
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o755)
	if os.Geteuid() != 0 {
		if _, err := s.Update("web", func(is *ImageState) { is.LastError = "y" }); !errors.Is(err, ErrState) {
			t.Errorf("write into a read-only dir: %v", err)
		}
		if b, _ := os.ReadFile(s.Path()); string(b) != string(good) {
			t.Error("a failed write changed the state file")
		}
	}
	os.Chmod(dir, 0o755)
	os.WriteFile(s.Path(), []byte("{not json"), 0o644)
	if _, err := s.Load(); !errors.Is(err, ErrState) {
		t.Errorf("corrupt state: %v", err)
	}
}
