package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDeviceBuildDeps: the device build (-tags skiff_device) links no
// database driver: they cost the binary 12 MB and every run 3 MB of
// memory (measured on `skiff apply`: 31.6 MiB with them, 28.7 without).
func TestDeviceBuildDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	out, err := exec.Command("go", "list", "-deps", "-tags", "skiff_device", "github.com/skiff-dev/skiff/cmd/skiff").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var drivers []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "modernc.org/") || strings.HasPrefix(p, "github.com/jackc/") {
			drivers = append(drivers, p)
		}
	}
	if len(drivers) > 0 {
		t.Errorf("the device build links %d database packages: %v", len(drivers), drivers)
	}
	// And the server build has them (the tag is what takes them out).
	out, err = exec.Command("go", "list", "-deps", "github.com/skiff-dev/skiff/cmd/skiff").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "modernc.org/sqlite\n") || !strings.Contains(string(out), "github.com/jackc/pgx/v5\n") {
		t.Error("the server build lacks the SQLite or PostgreSQL driver")
	}
}
