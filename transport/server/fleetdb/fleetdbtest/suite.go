package fleetdbtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

// Run runs the conformance suite against the stores open makes: each
// call must return a new, empty store (closed by the caller's cleanup).
func Run(t *testing.T, open func(t *testing.T) fleetdb.Store) {
	t.Run("ReportIdempotent", func(t *testing.T) { testReportIdempotent(t, open) })
	t.Run("Inventory", func(t *testing.T) { testInventory(t, open) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, open) })
	t.Run("PruneReports", func(t *testing.T) { testPruneReports(t, open) })
	t.Run("Labels", func(t *testing.T) { testLabels(t, open) })
}

// testLabels: Devices shows the labels of each row's last check-in.
func testLabels(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	ctx := context.Background()
	for i, l := range []map[string]string{{"group": "canary"}, {"group": "canary", "site": "berlin"}} {
		if err := s.RecordCheckin(ctx, fleetdb.Checkin{Device: "a", Channel: "stable", Image: "web", Labels: l, Time: t0.Add(time.Duration(i) * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordCheckin(ctx, fleetdb.Checkin{Device: "b", Channel: "stable", Image: "web", Time: t0}); err != nil {
		t.Fatal(err)
	}
	devs, _, err := s.Devices(ctx, fleetdb.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 {
		t.Fatalf("devices %+v", devs)
	}
	if d := cmp.Diff(map[string]string{"group": "canary", "site": "berlin"}, devs[0].Images[0].Labels); d != "" {
		t.Errorf("a's labels (-want +got):\n%s", d)
	}
	if len(devs[1].Images[0].Labels) != 0 {
		t.Errorf("b sent no labels, has %v", devs[1].Images[0].Labels)
	}
}

// testPruneReports: reports received before the cut go, later ones stay
// (sending one again is still a duplicate), and the inventory keeps the
// last report of a row whose reports were all pruned.
func testPruneReports(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	ctx := context.Background()
	const oldID, newID = "000000000000000000000000000000a1", "000000000000000000000000000000a2"
	if _, err := s.AddReport(ctx, report(oldID, "dev-1", "web", api.ResultInstalled, t0), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddReport(ctx, report(newID, "dev-2", "web", api.ResultFailed, t0), t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, err := s.PruneReports(ctx, t0.Add(24*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneReports = %d, %v; want 1 (the report received before the cut)", n, err)
	}
	if n, err := s.PruneReports(ctx, t0.Add(24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneReports again = %d, %v; want 0", n, err)
	}
	if added, err := s.AddReport(ctx, report(newID, "dev-2", "web", api.ResultFailed, t0), t0.Add(49*time.Hour)); err != nil || added {
		t.Errorf("the kept report sent again: added %v, %v; want a duplicate", added, err)
	}
	devs, _, err := s.Devices(ctx, fleetdb.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].ID != "dev-1" || devs[0].Images[0].LastReport == nil || devs[0].Images[0].LastReport.ID != oldID {
		t.Fatalf("inventory after the prune: %+v; want dev-1 keeping its last report", devs)
	}
	if added, err := s.AddReport(ctx, report(oldID, "dev-1", "web", api.ResultInstalled, t0), t0.Add(49*time.Hour)); err != nil || !added {
		t.Errorf("the pruned report sent again: added %v, %v; want it stored again", added, err)
	}
}

// testConcurrent: check-ins and re-sent reports from many goroutines at
// once all land, and a report sent by all of them is added exactly once.
func testConcurrent(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	ctx := context.Background()
	const workers, each = 16, 25
	var wg sync.WaitGroup
	var added atomic.Int32
	errs := make(chan error, workers*(each+1))
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- s.RecordCheckin(ctx, fleetdb.Checkin{Device: fmt.Sprintf("dev-%02d-%02d", w, i), Channel: "stable", Image: "web", Time: t0})
			}
			ok, err := s.AddReport(ctx, report("00000000000000000000000000000001", "dev-00-00", "web", api.ResultInstalled, t0), t0)
			if ok {
				added.Add(1)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := added.Load(); n != 1 {
		t.Errorf("the same report added %d times, want 1", n)
	}
	devs, next, err := s.Devices(ctx, fleetdb.Filter{Limit: fleetdb.MaxLimit})
	if err != nil || len(devs) != workers*each || next != "" {
		t.Errorf("%d devices (next %q, %v), want %d", len(devs), next, err, workers*each)
	}
}

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func report(id, device, image, result string, at time.Time) api.Report {
	return api.Report{ID: id, Device: device, Channel: "stable", Image: image, Result: result,
		FromDigest: "sha256:aa", ToDigest: "sha256:bb", Time: at, Bytes: 42, DurationMS: 7}
}

// testReportIdempotent: a report sent again is stored once, and the
// inventory's last report is the newest by time whatever the order.
func testReportIdempotent(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	ctx := context.Background()
	r := report("0123456789abcdef0123456789abcdef", "dev-1", "web", api.ResultInstalled, t0)
	for i, want := range []bool{true, false, false} {
		added, err := s.AddReport(ctx, r, t0)
		if err != nil || added != want {
			t.Fatalf("send %d: added %v, %v; want %v", i, added, err, want)
		}
	}
	// An older report arriving later does not replace the newer one.
	old := report("ffffffffffffffffffffffffffffffff", "dev-1", "web", api.ResultFailed, t0.Add(-time.Hour))
	if added, err := s.AddReport(ctx, old, t0); err != nil || !added {
		t.Fatalf("older report: %v %v", added, err)
	}
	devs, _, err := s.Devices(ctx, fleetdb.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Device{{ID: "dev-1", Images: []api.DeviceImage{{Channel: "stable", Image: "web",
		LastReport: &api.LastReport{ID: r.ID, Result: api.ResultInstalled, ToDigest: "sha256:bb", Time: t0}}}}}
	if d := cmp.Diff(want, devs); d != "" {
		t.Errorf("inventory (-want +got):\n%s", d)
	}
}

// testInventory: check-ins upsert (device, image) rows, a late check-in
// does not undo a newer one, and the filters and pages select rows.
func testInventory(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	ctx := context.Background()
	ck := func(dev, ch, img, cfg string, at time.Time) {
		t.Helper()
		if err := s.RecordCheckin(ctx, fleetdb.Checkin{Device: dev, Channel: ch, Image: img, ConfigDigest: cfg, Time: at,
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
		f    fleetdb.Filter
		want []row
		next string
	}{
		{"all", fleetdb.Filter{}, []row{{"a", "cam"}, {"a", "web"}, {"b", "web"}, {"c", "web"}, {"d", "web"}}, ""},
		{"channel", fleetdb.Filter{Channel: "beta"}, []row{{"b", "web"}}, ""},
		{"image", fleetdb.Filter{Image: "cam"}, []row{{"a", "cam"}}, ""},
		{"digest", fleetdb.Filter{ConfigDigest: "sha256:22"}, []row{{"a", "web"}, {"b", "web"}}, ""},
		{"result", fleetdb.Filter{Result: api.ResultRolledBack}, []row{{"c", "web"}}, ""},
		{"stale", fleetdb.Filter{SeenBefore: t0.Add(-24 * time.Hour)}, []row{{"b", "web"}, {"d", "web"}}, ""},
		{"channel and image", fleetdb.Filter{Channel: "stable", Image: "web"}, []row{{"a", "web"}, {"c", "web"}, {"d", "web"}}, ""},
		{"page 1", fleetdb.Filter{Limit: 2}, []row{{"a", "cam"}, {"a", "web"}, {"b", "web"}}, "b"},
		{"page 2", fleetdb.Filter{Limit: 2, After: "b"}, []row{{"c", "web"}, {"d", "web"}}, ""},
		{"filtered page", fleetdb.Filter{Limit: 1, Image: "web", After: "a"}, []row{{"b", "web"}}, "b"},
		{"none", fleetdb.Filter{Channel: "nope"}, nil, ""},
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
	devs, _, err := s.Devices(ctx, fleetdb.Filter{Image: "web", Channel: "stable", After: "b", Limit: 1})
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
