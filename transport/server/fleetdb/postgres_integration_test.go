//go:build integration

package fleetdb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
	"github.com/skiff-dev/skiff/transport/server/fleetdb/fleetdbtest"
)

func openPostgres(t *testing.T, dsn string) fleetdb.Store {
	t.Helper()
	s, err := fleetdb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestIntegrationPostgresConformance: the conformance suite on
// PostgreSQL, each store in a schema of its own.
func TestIntegrationPostgresConformance(t *testing.T) {
	fleetdbtest.Run(t, func(t *testing.T) fleetdb.Store {
		return openPostgres(t, fleetdbtest.PostgresDSN(t))
	})
}

// TestIntegrationPostgresRolloutConformance: the rollout store's suite
// (compare-and-set, one active rollout per track, the fleet query) on
// PostgreSQL.
func TestIntegrationPostgresRolloutConformance(t *testing.T) {
	fleetdbtest.RunRollouts(t, func(t *testing.T) fleetdb.Store {
		return openPostgres(t, fleetdbtest.PostgresDSN(t))
	})
}

func schemaVersions(t *testing.T, dsn string) []int64 {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// TestIntegrationPostgresConcurrentMigrate: several stores opened at the
// same moment on one empty database all migrate it, each migration
// applied once, and all of them work.
func TestIntegrationPostgresConcurrentMigrate(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	const n = 6
	stores := make([]fleetdb.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = fleetdb.Open(context.Background(), dsn)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	vs := schemaVersions(t, dsn)
	for i, v := range vs {
		if v != int64(i+1) {
			t.Fatalf("schema_migrations %v: want 1, 2, … once each", vs)
		}
	}
	if len(vs) == 0 {
		t.Fatal("no migration applied")
	}
	for i, s := range stores {
		if err := s.RecordCheckin(context.Background(), fleetdb.Checkin{Device: fmt.Sprintf("d%d", i), Channel: "c", Image: "i"}); err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
	}
	devs, _, err := stores[0].Devices(context.Background(), fleetdb.Filter{})
	if err != nil || len(devs) != n {
		t.Fatalf("%d devices (%v), want %d: the stores do not share the database", len(devs), err, n)
	}
}

// TestIntegrationPostgresSchemaTooNew: a database a newer skiff migrated
// is refused, saying what to do; re-opening one at this version is a
// no-op that keeps the data.
func TestIntegrationPostgresSchemaTooNew(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	s := openPostgres(t, dsn)
	if err := s.RecordCheckin(context.Background(), fleetdb.Checkin{Device: "d", Channel: "c", Image: "i"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	before := schemaVersions(t, dsn)
	s2 := openPostgres(t, dsn)
	if devs, _, err := s2.Devices(context.Background(), fleetdb.Filter{}); err != nil || len(devs) != 1 {
		t.Errorf("after re-open: %v %v, want the one device", devs, err)
	}
	s2.Close()
	if after := schemaVersions(t, dsn); len(after) != len(before) {
		t.Errorf("versions %v after a re-open, %v before", after, before)
	}
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied) VALUES ($1, 'future.sql', 0)`, len(before)+1); err != nil {
		t.Fatal(err)
	}
	_, err = fleetdb.Open(context.Background(), dsn)
	if !errors.Is(err, fleetdb.ErrSchemaTooNew) {
		t.Fatalf("open of a newer database: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "upgrade skiff") {
		t.Errorf("error %q does not say what to do", err)
	}
}

// TestIntegrationPostgresTwoStores: two stores on one database (two
// servers) receiving the same reports at once store each once, and
// both list every device with its report.
func TestIntegrationPostgresTwoStores(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	stores := []fleetdb.Store{openPostgres(t, dsn), openPostgres(t, dsn)}
	ctx := context.Background()
	const reports, senders = 50, 8
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var added atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, reports*senders*2)
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range reports {
				s := stores[(w+i)%2]
				dev := fmt.Sprintf("dev-%03d", i)
				errs <- s.RecordCheckin(ctx, fleetdb.Checkin{Device: dev, Channel: "stable", Image: "web", Time: at})
				ok, err := s.AddReport(ctx, api.Report{ID: fmt.Sprintf("%032x", i), Device: dev, Channel: "stable", Image: "web",
					Result: api.ResultInstalled, Time: at}, at)
				if ok {
					added.Add(1)
				}
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := added.Load(); n != reports {
		t.Errorf("%d reports added, want %d (each once)", n, reports)
	}
	for i, s := range stores {
		devs, _, err := s.Devices(ctx, fleetdb.Filter{Result: api.ResultInstalled, Limit: fleetdb.MaxLimit})
		if err != nil || len(devs) != reports {
			t.Errorf("store %d: %d devices with a report (%v), want %d", i, len(devs), err, reports)
		}
	}
}
