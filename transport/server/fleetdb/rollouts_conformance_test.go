package fleetdb_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/skiff-dev/skiff/transport/server/fleetdb"
	"github.com/skiff-dev/skiff/transport/server/fleetdb/fleetdbtest"
)

func TestSQLiteRolloutConformance(t *testing.T) {
	fleetdbtest.RunRollouts(t, func(t *testing.T) fleetdb.Store {
		s, err := fleetdb.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "fleet.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
