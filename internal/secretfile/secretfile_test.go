package secretfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode    os.FileMode
		exposed bool
	}{{0o600, false}, {0o400, false}, {0o640, true}, {0o644, true}, {0o604, true}, {0o610, true}} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p := filepath.Join(dir, tc.mode.String())
			if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			perm, exposed := Exposed(p)
			if perm != tc.mode || exposed != tc.exposed {
				t.Errorf("Exposed = %v, %v; want %v, %v", perm, exposed, tc.mode, tc.exposed)
			}
			err := Check(p)
			if got := errors.Is(err, ErrExposed); got != tc.exposed {
				t.Fatalf("Check = %v, want exposed %v", err, tc.exposed)
			}
			if err != nil && !strings.Contains(err.Error(), p) {
				t.Errorf("Check = %v, want the path named", err)
			}
		})
	}
	if _, exposed := Exposed(filepath.Join(dir, "missing")); exposed {
		t.Error("a missing file is reported exposed")
	}
	if err := Check(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("Check of a missing file = %v, want nil (reading it reports why)", err)
	}
}
