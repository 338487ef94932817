package fleetdb

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func openTest(t *testing.T) (*SQLite, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.db")
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func schemaVersions(t *testing.T, path string) []int64 {
	t.Helper()
	db, err := sql.Open("sqlite", path)
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

// TestMigrations: a fresh database gets every migration once, in WAL
// mode; opening it again applies nothing; a database a newer binary
// migrated is refused with ErrSchemaTooNew.
func TestMigrations(t *testing.T) {
	ms, err := migrations(migrationFiles)
	if err != nil {
		t.Fatal(err)
	}
	s, path := openTest(t)
	var mode string
	if err := s.r.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q (%v), want wal", mode, err)
	}
	var busy int64
	if err := s.w.QueryRow(`PRAGMA busy_timeout`).Scan(&busy); err != nil || busy != BusyTimeout.Milliseconds() {
		t.Errorf("busy_timeout %d (%v), want %d", busy, err, BusyTimeout.Milliseconds())
	}
	if err := s.RecordCheckin(context.Background(), Checkin{Device: "d", Channel: "c", Image: "i", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := make([]int64, len(ms))
	for i := range ms {
		want[i] = int64(i + 1)
	}
	if got := schemaVersions(t, path); !cmp.Equal(got, want) {
		t.Fatalf("versions %v, want %v", got, want)
	}

	// Re-open: a no-op that keeps the data.
	s2, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	devs, _, err := s2.Devices(context.Background(), Filter{})
	if err != nil || len(devs) != 1 {
		t.Errorf("after re-open: %v %v, want the one device", devs, err)
	}
	s2.Close()
	if got := schemaVersions(t, path); !cmp.Equal(got, want) {
		t.Fatalf("versions after re-open %v, want %v", got, want)
	}

	// A newer binary's migration.
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied) VALUES ($1, 'future.sql', 0)`, len(ms)+1); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := OpenSQLite(context.Background(), path); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("open of a newer database: %v, want ErrSchemaTooNew", err)
	} else if !strings.Contains(err.Error(), "upgrade skiff") {
		t.Errorf("error %q does not say what to do", err)
	}
}

// TestMigrationFailureRollsBack: a migration that fails leaves the
// database at the version before it, with nothing of it applied.
func TestMigrationFailureRollsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ms, err := migrations(fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte(`CREATE TABLE a (x TEXT);`)},
		"migrations/0002_b.sql": {Data: []byte(`CREATE TABLE b (x TEXT); CREATE TABLE a (y TEXT);`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, ms[:1], sqliteLock); err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, ms, sqliteLock); !errors.Is(err, ErrMigration) {
		t.Fatalf("failing migration: %v, want ErrMigration", err)
	}
	if got := schemaVersions(t, path); !cmp.Equal(got, []int64{1}) {
		t.Errorf("versions %v, want [1]", got)
	}
	if _, err := db.Exec(`SELECT * FROM b`); err == nil {
		t.Error("table b of the failed migration exists")
	}
}

// TestMigrationNumbers: the embedded files must be numbered 1, 2, 3, ….
func TestMigrationNumbers(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"gap":     {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"repeat":  {"migrations/0001_a.sql": {}, "migrations/0001_b.sql": {}},
		"unnamed": {"migrations/first.sql": {}},
	} {
		if _, err := migrations(fsys); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestOpenDSN(t *testing.T) {
	for _, dsn := range []string{"", "fleet.db", "mysql:x", "sqlite:", "postgres:db", "postgres://h:notaport/db"} {
		if _, err := Open(context.Background(), dsn); !errors.Is(err, ErrBadDSN) {
			t.Errorf("Open(%q): %v, want ErrBadDSN", dsn, err)
		}
	}
	s, err := Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "sub", "f.db"))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}
