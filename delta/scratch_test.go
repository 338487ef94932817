package delta

import (
	"errors"
	"strings"
	"testing"
)

// TestCheckScratch: a work directory without the declared scratch space is
// refused up front with the directory, the need and what is free; one
// with it, or a delta declaring none, goes on.
func TestCheckScratch(t *testing.T) {
	dir := t.TempDir()
	free, ok := freeBytes(dir)
	if !ok {
		t.Skip("free space unknown here")
	}
	if err := checkScratch(dir, 1<<20); free > 1<<20 && err != nil {
		t.Errorf("1 MiB with %d free: %v", free, err)
	}
	if err := checkScratch(dir, 0); err != nil {
		t.Errorf("no declared need: %v", err)
	}
	err := checkScratch(dir, free+1<<40)
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "is free") {
		t.Errorf("more than free: %v, want ErrLimit naming %s and the free space", err, dir)
	}
}
