//go:build skiff_device

package fleetdb_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

// TestDeviceBuildHasNoDrivers: a device build opens no database and says
// why, the password of a DSN left out.
func TestDeviceBuildHasNoDrivers(t *testing.T) {
	for _, dsn := range []string{
		"sqlite:" + filepath.Join(t.TempDir(), "fleet.db"),
		"postgres://skiff:secret@127.0.0.1:5432/skiff",
	} {
		_, err := fleetdb.Open(context.Background(), dsn)
		if !errors.Is(err, fleetdb.ErrNoDriver) || !strings.Contains(err.Error(), "device build") || strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%s) = %v, want ErrNoDriver naming the device build, no password", fleetdb.Redact(dsn), err)
		}
	}
}
