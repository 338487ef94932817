package fleetdbtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
	"github.com/skiff-dev/skiff/transport/server/rollout"
)

// RunRollouts runs the rollout conformance suite against the stores open
// makes (new and empty each call); they must implement
// fleetdb.RolloutBackend.
func RunRollouts(t *testing.T, open func(t *testing.T) fleetdb.Store) {
	t.Run("RolloutCAS", func(t *testing.T) { testRolloutCAS(t, open) })
	t.Run("OneActiveRollout", func(t *testing.T) { testOneActive(t, open) })
	t.Run("TrackDevices", func(t *testing.T) { testTrackDevices(t, open) })
}

var (
	digestA = "sha256:" + strings.Repeat("a", 64)
	digestB = "sha256:" + strings.Repeat("b", 64)
	digestC = "sha256:" + strings.Repeat("c", 64)
)

func rolloutsOf(t *testing.T, s fleetdb.Store) fleetdb.RolloutStore {
	t.Helper()
	rb, ok := s.(fleetdb.RolloutBackend)
	if !ok {
		t.Fatalf("%T keeps no rollouts", s)
	}
	return rb.Rollouts()
}

func newRollout(t *testing.T, id, image, target string, at time.Time) *rollout.State {
	t.Helper()
	p, err := rollout.ParsePlan("10%,100%")
	if err != nil {
		t.Fatal(err)
	}
	st, err := rollout.New(id, "stable", image, target, digestA, p, at)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// testRolloutCAS: an update with the rev loaded lands; one with a stale
// rev is ErrConflict and changes nothing; of many concurrent writers that
// loaded the same rev exactly one wins.
func testRolloutCAS(t *testing.T, open func(*testing.T) fleetdb.Store) {
	rs := rolloutsOf(t, open(t))
	ctx := context.Background()
	st := newRollout(t, "r1", "web", digestB, t0)
	if err := rs.CreateRollout(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, err := rs.GetRollout(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(st, got); d != "" {
		t.Fatalf("read back (-stored +loaded):\n%s", d)
	}
	a, b := got.Clone(), got.Clone()
	if err := a.Pause("admin A"); err != nil {
		t.Fatal(err)
	}
	if err := rs.UpdateRollout(ctx, a, got.Rev); err != nil {
		t.Fatalf("first writer: %v", err)
	}
	if err := b.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := rs.UpdateRollout(ctx, b, got.Rev); !errors.Is(err, fleetdb.ErrConflict) {
		t.Fatalf("stale writer: %v, want ErrConflict", err)
	}
	now, err := rs.GetRollout(ctx, "r1")
	if err != nil || now.Status != rollout.StatusPaused || now.PauseReason != "admin A" || now.Rev != a.Rev {
		t.Fatalf("after the race: %+v, %v; want paused by admin A", now, err)
	}
	if err := rs.UpdateRollout(ctx, newRollout(t, "nope", "web", digestB, t0), 0); !errors.Is(err, fleetdb.ErrNoRollout) {
		t.Errorf("update of a missing rollout: %v, want ErrNoRollout", err)
	}
	if _, err := rs.GetRollout(ctx, "nope"); !errors.Is(err, fleetdb.ErrNoRollout) {
		t.Errorf("get of a missing rollout: %v, want ErrNoRollout", err)
	}

	// Concurrent writers from the same rev: one wins.
	var wg sync.WaitGroup
	wins := make(chan int, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := now.Clone()
			if err := c.Pin(fmt.Sprintf("dev-%d", i), digestC); err != nil {
				t.Error(err)
				return
			}
			switch err := rs.UpdateRollout(ctx, c, now.Rev); {
			case err == nil:
				wins <- i
			case !errors.Is(err, fleetdb.ErrConflict):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	var won []int
	for i := range wins {
		won = append(won, i)
	}
	if len(won) != 1 {
		t.Fatalf("%d concurrent writers won, want 1", len(won))
	}
	last, err := rs.GetRollout(ctx, "r1")
	if err != nil || len(last.Pins) != 1 || last.Pins[fmt.Sprintf("dev-%d", won[0])] != digestC {
		t.Errorf("stored pins %v, want the winner's", last.Pins)
	}
}

// testOneActive: a track holds at most one running or paused rollout; a
// final one makes room; settling stops a final rollout governing.
func testOneActive(t *testing.T, open func(*testing.T) fleetdb.Store) {
	rs := rolloutsOf(t, open(t))
	ctx := context.Background()
	r1 := newRollout(t, "r1", "web", digestB, t0)
	if err := rs.CreateRollout(ctx, r1); err != nil {
		t.Fatal(err)
	}
	if err := rs.CreateRollout(ctx, newRollout(t, "r2", "web", digestC, t0.Add(time.Second))); !errors.Is(err, fleetdb.ErrActiveRollout) {
		t.Fatalf("second rollout of stable/web: %v, want ErrActiveRollout", err)
	}
	if err := rs.CreateRollout(ctx, newRollout(t, "r3", "cam", digestC, t0)); err != nil {
		t.Fatalf("another track: %v", err)
	}
	// Concurrent creators on one track: one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rs.CreateRollout(ctx, newRollout(t, fmt.Sprintf("c%d", i), "db", digestB, t0))
			switch {
			case err == nil:
				mu.Lock()
				created++
				mu.Unlock()
			case !errors.Is(err, fleetdb.ErrActiveRollout):
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if created != 1 {
		t.Errorf("%d concurrent rollouts of stable/db created, want 1", created)
	}

	if a, err := rs.ActiveRollout(ctx, "stable", "web"); err != nil || a.ID != "r1" {
		t.Fatalf("active: %v, %v", a, err)
	}
	if err := rs.SettleRollout(ctx, "r1"); !errors.Is(err, fleetdb.ErrNoRollout) {
		t.Errorf("settling a running rollout: %v, want refused", err)
	}
	old := r1.Rev
	if err := r1.Abort(); err != nil {
		t.Fatal(err)
	}
	if err := rs.UpdateRollout(ctx, r1, old); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.ActiveRollout(ctx, "stable", "web"); !errors.Is(err, fleetdb.ErrNoRollout) {
		t.Errorf("active after abort: %v, want ErrNoRollout", err)
	}
	if g, err := rs.GoverningRollout(ctx, "stable", "web"); err != nil || g.ID != "r1" {
		t.Errorf("governing before settling: %v, %v; want r1", g, err)
	}
	if err := rs.CreateRollout(ctx, newRollout(t, "r2", "web", digestC, t0.Add(time.Minute))); err != nil {
		t.Fatalf("a rollout after the abort: %v", err)
	}
	if g, err := rs.GoverningRollout(ctx, "stable", "web"); err != nil || g.ID != "r2" {
		t.Errorf("governing: %v, %v; want the newer r2", g, err)
	}
	if err := rs.SettleRollout(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	un, err := rs.UnsettledRollouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, u := range un {
		ids = append(ids, u.ID)
	}
	if len(ids) != 3 || ids[2] != "r2" || !strings.Contains(strings.Join(ids, ","), "r3") {
		t.Errorf("unsettled %v, want r3, the db one and r2", ids)
	}
	for _, tc := range []struct {
		f    fleetdb.RolloutFilter
		want int
	}{
		{fleetdb.RolloutFilter{}, 4},
		{fleetdb.RolloutFilter{Image: "web"}, 2},
		{fleetdb.RolloutFilter{Status: rollout.StatusAborted}, 1},
		{fleetdb.RolloutFilter{Channel: "beta"}, 0},
		{fleetdb.RolloutFilter{Limit: 1}, 1},
	} {
		got, err := rs.ListRollouts(ctx, tc.f)
		if err != nil || len(got) != tc.want {
			t.Errorf("ListRollouts(%+v): %d, %v; want %d", tc.f, len(got), err, tc.want)
		}
	}
	if got, _ := rs.ListRollouts(ctx, fleetdb.RolloutFilter{Image: "web"}); len(got) == 2 && got[0].ID != "r2" {
		t.Errorf("ListRollouts order: %s first, want the newest (r2)", got[0].ID)
	}
	// A settled rollout is no longer written.
	old = r1.Rev
	_ = r1.Pin("x", digestC)
	if err := rs.UpdateRollout(ctx, r1, old); !errors.Is(err, fleetdb.ErrSettled) {
		t.Errorf("an update of a settled rollout: %v, want ErrSettled", err)
	}
}

// testTrackDevices: the fleet of a track with labels, running digests and
// results of reports about the target only.
func testTrackDevices(t *testing.T, open func(*testing.T) fleetdb.Store) {
	s := open(t)
	rs := rolloutsOf(t, s)
	ctx := context.Background()
	ck := func(dev, img, cfg string, labels map[string]string) {
		t.Helper()
		if err := s.RecordCheckin(ctx, fleetdb.Checkin{Device: dev, Channel: "stable", Image: img, ConfigDigest: cfg, Labels: labels, Time: t0}); err != nil {
			t.Fatal(err)
		}
	}
	rep := func(id, dev, to, result string) {
		t.Helper()
		r := report(id, dev, "web", result, t0)
		r.ToDigest = to
		if _, err := s.AddReport(ctx, r, t0); err != nil {
			t.Fatal(err)
		}
	}
	ck("a", "web", digestA, map[string]string{"group": "canary", "site": "berlin"})
	ck("b", "web", digestB, nil)
	ck("c", "web", digestA, nil)
	ck("d", "web", digestA, nil)
	ck("a", "cam", digestA, nil)
	rep("00000000000000000000000000000001", "c", digestB, api.ResultRolledBack)
	rep("00000000000000000000000000000002", "d", digestC, api.ResultFailed) // about another target
	got, err := rs.TrackDevices(ctx, "stable", "web", digestB)
	if err != nil {
		t.Fatal(err)
	}
	want := []rollout.Device{
		{ID: "a", Running: digestA, Labels: map[string]string{"group": "canary", "site": "berlin"}},
		{ID: "b", Running: digestB},
		{ID: "c", Running: digestA, Result: rollout.ResultRolledBack},
		{ID: "d", Running: digestA},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// A check-in without labels clears them.
	if err := s.RecordCheckin(ctx, fleetdb.Checkin{Device: "a", Channel: "stable", Image: "web", ConfigDigest: digestA, Time: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := rs.TrackDevices(ctx, "stable", "web", digestB); len(got) != 4 || got[0].Labels != nil {
		t.Errorf("labels after a check-in without: %+v", got)
	}
}
