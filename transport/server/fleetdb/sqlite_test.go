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

	"github.com/skiff-dev/skiff/transport/api"
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
	if err := migrate(context.Background(), db, ms[:1]); err != nil {
		t.Fatal(err)
	}
	if err := migrate(context.Background(), db, ms); !errors.Is(err, ErrMigration) {
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
	for _, dsn := range []string{"", "fleet.db", "mysql:x", "sqlite:", "postgres://h/db"} {
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

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func report(id, device, image, result string, at time.Time) api.Report {
	return api.Report{ID: id, Device: device, Channel: "stable", Image: image, Result: result,
		FromDigest: "sha256:aa", ToDigest: "sha256:bb", Time: at, Bytes: 42, DurationMS: 7}
}

// TestReportIdempotent: a report sent again is stored once, and the
// inventory's last report is the newest by time whatever the order.
func TestReportIdempotent(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	r := report("0123456789abcdef0123456789abcdef", "dev-1", "web", api.ResultInstalled, t0)
	for i, want := range []bool{true, false, false} {
		added, err := s.AddReport(ctx, r, t0)
		if err != nil || added != want {
			t.Fatalf("send %d: added %v, %v; want %v", i, added, err, want)
		}
	}
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM reports`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d reports stored (%v), want 1", n, err)
	}
	// An older report arriving later does not replace the newer one.
	old := report("ffffffffffffffffffffffffffffffff", "dev-1", "web", api.ResultFailed, t0.Add(-time.Hour))
	if added, err := s.AddReport(ctx, old, t0); err != nil || !added {
		t.Fatalf("older report: %v %v", added, err)
	}
	devs, _, err := s.Devices(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Device{{ID: "dev-1", Images: []api.DeviceImage{{Channel: "stable", Image: "web",
		LastReport: &api.LastReport{ID: r.ID, Result: api.ResultInstalled, ToDigest: "sha256:bb", Time: t0}}}}}
	if d := cmp.Diff(want, devs); d != "" {
		t.Errorf("inventory (-want +got):\n%s", d)
	}
}

// TestInventory: check-ins upsert (device, image) rows, a late check-in
// does not undo a newer one, and the filters and pages select rows.
func TestInventory(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	ck := func(dev, ch, img, cfg string, at time.Time) {
		t.Helper()
		if err := s.RecordCheckin(ctx, Checkin{Device: dev, Channel: ch, Image: img, ConfigDigest: cfg, Time: at,
			AgentVersion: "v1.0.0", Platform: "linux/arm64"}); err != nil {
			t.Fatal(err)
		}
	}
	ck("a", "stable", "web", "sha256:11", t0.Add(-time.Hour))
	ck("a", "stable", "web", "sha256:22", t0)                   // newer: wins
	ck("a", "stable", "web", "sha256:00", t0.Add(-2*time.Hour)) // late: ignored
	ck("a", "stable", "cam", "sha256:33", t0)
	ck("b", "beta", "web", "sha256:22", t0.Add(-48*time.Hour))
	ck("c", "stable", "web", "sha256:11", t0)
	if _, err := s.AddReport(ctx, report("1", "c", "web", api.ResultRolledBack, t0), t0); err != nil {
		t.Fatal(err)
	}
	// A device known only by a report (no check-in yet).
	if _, err := s.AddReport(ctx, report("2", "d", "web", api.ResultFailed, t0), t0); err != nil {
		t.Fatal(err)
	}
	type row struct{ dev, img string }
	rowsOf := func(devs []api.Device) []row {
		var out []row
		for _, d := range devs {
			for _, im := range d.Images {
				out = append(out, row{d.ID, im.Image})
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    Filter
		want []row
		next string
	}{
		{"all", Filter{}, []row{{"a", "cam"}, {"a", "web"}, {"b", "web"}, {"c", "web"}, {"d", "web"}}, ""},
		{"channel", Filter{Channel: "beta"}, []row{{"b", "web"}}, ""},
		{"image", Filter{Image: "cam"}, []row{{"a", "cam"}}, ""},
		{"digest", Filter{ConfigDigest: "sha256:22"}, []row{{"a", "web"}, {"b", "web"}}, ""},
		{"result", Filter{Result: api.ResultRolledBack}, []row{{"c", "web"}}, ""},
		{"stale", Filter{SeenBefore: t0.Add(-24 * time.Hour)}, []row{{"b", "web"}, {"d", "web"}}, ""},
		{"channel and image", Filter{Channel: "stable", Image: "web"}, []row{{"a", "web"}, {"c", "web"}, {"d", "web"}}, ""},
		{"page 1", Filter{Limit: 2}, []row{{"a", "cam"}, {"a", "web"}, {"b", "web"}}, "b"},
		{"page 2", Filter{Limit: 2, After: "b"}, []row{{"c", "web"}, {"d", "web"}}, ""},
		{"filtered page", Filter{Limit: 1, Image: "web", After: "a"}, []row{{"b", "web"}}, "b"},
		{"none", Filter{Channel: "nope"}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devs, next, err := s.Devices(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, rowsOf(devs), cmp.AllowUnexported(row{})); d != "" {
				t.Errorf("rows (-want +got):\n%s", d)
			}
			if next != tc.next {
				t.Errorf("next %q, want %q", next, tc.next)
			}
		})
	}
	devs, _, err := s.Devices(ctx, Filter{Image: "web", Channel: "stable", After: "b", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Device{{ID: "c", Images: []api.DeviceImage{{Channel: "stable", Image: "web", ConfigDigest: "sha256:11",
		LastSeen: t0, AgentVersion: "v1.0.0", Platform: "linux/arm64",
		LastReport: &api.LastReport{ID: "1", Result: api.ResultRolledBack, ToDigest: "sha256:bb", Time: t0}}}}}
	if d := cmp.Diff(want, devs); d != "" {
		t.Errorf("device c (-want +got):\n%s", d)
	}
}
