package secretfile

import (
	"errors"
	"fmt"
	"os"
)

// ErrExposed: a secret file other users may read.
var ErrExposed = errors.New("readable by other users")

// Exposed reports the permission bits of the file at path and whether its
// group or other users have any of them. A file that cannot be stat'ed is
// not reported (reading it reports why).
func Exposed(path string) (perm os.FileMode, exposed bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, false
	}
	perm = fi.Mode().Perm()
	return perm, perm&0o077 != 0
}

// Check returns an error wrapping ErrExposed, naming path and its mode,
// when Exposed reports the file.
func Check(path string) error {
	if perm, exposed := Exposed(path); exposed {
		return fmt.Errorf("%s: mode %#o: %w (chmod 600 it)", path, perm, ErrExposed)
	}
	return nil
}
