package rollout

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestTargetFor(t *testing.T) {
	// Under salt "r1", dev-0002 has bucket 25.18 and dev-0001 43.58.
	canary := map[string]string{"group": "canary"}
	for _, tc := range []struct {
		name    string
		prep    func(*State)
		device  string
		labels  map[string]string
		running string
		want    string
		why     string
	}{
		{name: "canary in the started group wave", device: "dev-0001", labels: canary, running: prevDigest,
			want: targetDigest, why: "rollout r1: in wave 1 (group=canary)"},
		{name: "not yet in a wave", device: "dev-0002", running: prevDigest,
			want: prevDigest, why: "rollout r1: wave 2 (30%) not started"},
		{name: "later wave not started", device: "dev-0001", running: prevDigest,
			want: prevDigest, why: "rollout r1: wave 3 (100%) not started"},
		{name: "wave started", prep: func(s *State) { s.Wave = 1 }, device: "dev-0002", running: prevDigest,
			want: targetDigest, why: "rollout r1: in wave 2 (30%)"},
		{name: "earlier wave still gets it", prep: func(s *State) { s.Wave = 2 }, device: "dev-0001", labels: canary,
			want: targetDigest, why: "rollout r1: in wave 1 (group=canary)"},
		{name: "pin wins over the wave", prep: func(s *State) { _ = s.Pin("dev-0001", pinDigest) }, device: "dev-0001", labels: canary,
			want: pinDigest, why: "pinned by an admin"},
		{name: "pin wins over abort", prep: func(s *State) { _ = s.Pin("dev-0001", targetDigest); _ = s.Abort() }, device: "dev-0001",
			want: targetDigest, why: "pinned by an admin"},
		{name: "pin holds a device back", prep: func(s *State) { _ = s.Pin("dev-0002", prevDigest); s.Status = StatusCompleted }, device: "dev-0002",
			want: prevDigest, why: "pinned by an admin"},
		{name: "aborted: previous even to devices that run the target", prep: func(s *State) { _ = s.Abort() }, device: "dev-0001", labels: canary, running: targetDigest,
			want: prevDigest, why: "rollout r1 aborted"},
		{name: "completed: target to everyone", prep: func(s *State) { s.Status = StatusCompleted }, device: "dev-0001",
			want: targetDigest, why: "rollout r1 completed"},
		{name: "paused: devices that run it keep it", prep: func(s *State) { _ = s.Pause("x") }, device: "dev-0001", labels: canary, running: targetDigest,
			want: targetDigest, why: "rollout r1 paused; the device already runs the target"},
		{name: "paused: no spreading inside the started wave", prep: func(s *State) { _ = s.Pause("x") }, device: "dev-0001", labels: canary, running: prevDigest,
			want: prevDigest, why: "rollout r1 paused at wave 1 (group=canary)"},
		{name: "paused: a device outside the waves", prep: func(s *State) { _ = s.Pause("x") }, device: "dev-0002", running: "",
			want: prevDigest, why: "rollout r1 paused at wave 1 (group=canary)"},
		{name: "rolled back device is still offered the target", device: "dev-0001", labels: canary, running: prevDigest,
			want: targetDigest, why: "rollout r1: in wave 1 (group=canary)"},
		{name: "no previous: nothing", prep: func(s *State) { s.Previous = "" }, device: "dev-0002",
			want: "", why: "rollout r1: wave 2 (30%) not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t, "r1", "group=canary,30%,100%", nil)
			if tc.prep != nil {
				tc.prep(s)
			}
			got, why := TargetFor(s, tc.device, tc.labels, tc.running)
			if got != tc.want || why != tc.why {
				t.Errorf("TargetFor = %q, %q\nwant        %q, %q", got, why, tc.want, tc.why)
			}
		})
	}
}

func TestTally(t *testing.T) {
	s := newState(t, "r1", "group=canary,30%,100%", nil)
	s.Wave = 1
	fleet := []Device{
		{ID: "dev-0002", Running: targetDigest},                                          // wave 2: installed
		{ID: "a", Labels: map[string]string{"group": "canary"}, Result: ResultInstalled}, // wave 1: reported installed
		{ID: "b", Labels: map[string]string{"group": "canary"}, Result: ResultRolledBack, Running: prevDigest},
		{ID: "c", Labels: map[string]string{"group": "canary"}, Result: ResultFailed},
		{ID: "d", Labels: map[string]string{"group": "canary"}, Running: prevDigest},                             // pending
		{ID: "dev-0001", Running: prevDigest, Result: ResultRolledBack},                                          // wave 3: not counted but in the fleet
		{ID: "e", Labels: map[string]string{"group": "canary"}, Running: targetDigest, Result: ResultRolledBack}, // runs it: installed
	}
	want := Counts{Fleet: 7, Devices: 6, Installed: 3, RolledBack: 1, Failed: 1}
	if d := cmp.Diff(want, s.Tally(fleet)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func fleetOf(ids []string) []Device {
	out := make([]Device, len(ids))
	for i, id := range ids {
		out[i] = Device{ID: id, Running: prevDigest}
	}
	return out
}

func TestWiden(t *testing.T) {
	// Under salt "small" the 20 devices' lowest buckets are device-00008
	// 3.71, -02 6.34, -17 8.99, -12 10.59, -10 20.76, -09 23.34: none is
	// in 1%.
	fleet := fleetOf(ids(20))
	s := newState(t, "small", "1%,10%,100%", nil)
	if c := s.Tally(fleet); c.Devices != 0 {
		t.Fatalf("%d devices in 1%% before Widen", c.Devices)
	}
	if !s.Widen(fleet) || s.Rev != 1 {
		t.Fatalf("Widen did not widen (rev %d)", s.Rev)
	}
	var in []string
	for _, d := range fleet {
		if s.WaveOf(d.ID, nil) == 0 {
			in = append(in, d.ID)
		}
	}
	want := []string{"device-00002", "device-00008", "device-00010", "device-00012", "device-00017"}
	if d := cmp.Diff(want, in); d != "" {
		t.Errorf("wave 1 after Widen (-want +got):\n%s", d)
	}
	if s.Widen(fleet) || s.Rev != 1 {
		t.Error("a second Widen changed the state")
	}
	if got := WaveOf(s.Plan, s.ID, "device-00010", nil); got != 2 {
		t.Errorf("the plan's own WaveOf (no cutoffs) = %d, want 2", got)
	}
	// The next wave holds the five already: nothing to add.
	if _, err := s.Skip(t0); err != nil {
		t.Fatal(err)
	}
	if s.Widen(fleet) {
		t.Error("Widen widened wave 2, which holds MinDevices devices")
	}
	// A fleet smaller than MinDevices joins whole.
	s = newState(t, "small", "1%,10%,100%", nil)
	if !s.Widen(fleet[:3]) || s.Tally(fleet[:3]).Devices != 3 {
		t.Errorf("fleet of 3: %+v", s.Tally(fleet[:3]))
	}
	// Group waves and rollouts that are not running are never widened.
	s = newState(t, "small", "group=canary,100%", nil)
	if s.Widen(fleet) {
		t.Error("widened a group wave")
	}
	s = newState(t, "small", "1%,100%", nil)
	_ = s.Pause("")
	if s.Widen(fleet) {
		t.Error("widened a paused rollout")
	}
	s = newState(t, "small", "1%,100%", func(p *Plan) { p.MinDevices = 1 })
	if !s.Widen(fleet) || s.Tally(fleet).Devices != 1 {
		t.Errorf("MinDevices 1: %+v", s.Tally(fleet))
	}
}

// sim is a fleet whose devices do what the rollout offers them: outcome
// says whether a device installs the target (true) or rolls back.
type sim struct {
	t       *testing.T
	s       *State
	fleet   []Device
	outcome func(id string) bool
	events  []string
}

// step runs one round of check-ins, then Widen and Advance.
func (m *sim) step(now time.Time) bool {
	for i := range m.fleet {
		d := &m.fleet[i]
		want, _ := TargetFor(m.s, d.ID, d.Labels, d.Running)
		switch {
		case want == d.Running:
		case want == m.s.Target && d.Result == ResultRolledBack:
			// The agent holds back a target that failed its health check.
		case want == m.s.Target && !m.outcome(d.ID):
			d.Result = ResultRolledBack
		default:
			d.Running = want
			if want == m.s.Target {
				d.Result = ResultInstalled
			}
		}
	}
	rev := m.s.Rev
	widened := m.s.Widen(m.fleet)
	changed, ev := m.s.Advance(now, m.s.Tally(m.fleet))
	if ev != "" {
		m.events = append(m.events, ev)
	}
	if err := m.s.Validate(); err != nil {
		m.t.Fatal(err)
	}
	return widened || changed || m.s.Rev != rev
}

func (m *sim) run(now time.Time) {
	for range 20 {
		if !m.step(now) {
			return
		}
		now = now.Add(time.Minute)
	}
}

func (m *sim) running(digest string) int {
	n := 0
	for _, d := range m.fleet {
		if d.Running == digest {
			n++
		}
	}
	return n
}

// newSim is 1,000 devices and the plan 1%,10%,100% salted with "sim-18",
// which puts 10 devices in the first wave and 100 in the first two.
func newSim(t *testing.T, outcome func(string) bool) *sim {
	s := newState(t, "sim-18", "1%,10%,100%", nil)
	return &sim{t: t, s: s, fleet: fleetOf(ids(1000)), outcome: outcome}
}

func TestSimulatedRollout(t *testing.T) {
	t.Run("every device installs", func(t *testing.T) {
		m := newSim(t, func(string) bool { return true })
		m.step(t0)
		if got := m.running(targetDigest); got != 10 || m.s.Wave != 1 {
			t.Fatalf("after one round: %d devices run the target, wave %d; want 10, 1", got, m.s.Wave)
		}
		m.step(t0.Add(time.Minute))
		if got := m.running(targetDigest); got != 100 || m.s.Wave != 2 {
			t.Fatalf("after two rounds: %d devices run the target, wave %d; want 100, 2", got, m.s.Wave)
		}
		m.run(t0.Add(2 * time.Minute))
		if m.s.Status != StatusCompleted || m.running(targetDigest) != 1000 {
			t.Fatalf("status %s, %d devices run the target", m.s.Status, m.running(targetDigest))
		}
		want := []string{
			"wave 2 (10%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)",
			"wave 3 (100%) started: wave 2 (10%): 100 of 100 devices installed (100% ≥ 90%)",
			"completed: wave 3 (100%): 1000 of 1000 devices installed (100% ≥ 90%)",
		}
		if d := cmp.Diff(want, m.events); d != "" {
			t.Errorf("events (-want +got):\n%s", d)
		}
		// Wave 1 started with the rollout, and each round starts the next.
		for i, at := range []time.Time{t0, t0, t0.Add(time.Minute)} {
			if !m.s.Waves[i].Started.Equal(at) {
				t.Errorf("wave %d started %v, want %v", i+1, m.s.Waves[i].Started, at)
			}
		}
	})

	t.Run("3 of 10 roll back in wave 1", func(t *testing.T) {
		bad := map[string]bool{}
		m := newSim(t, func(id string) bool {
			if len(bad) < 3 && !bad[id] {
				bad[id] = true
			}
			return !bad[id]
		})
		m.run(t0)
		wantReason := "wave 1 (1%): 3 of 10 devices rolled back or failed (30% > 5%)"
		if m.s.Status != StatusPaused || m.s.PauseReason != wantReason {
			t.Fatalf("status %s, reason %q; want paused, %q", m.s.Status, m.s.PauseReason, wantReason)
		}
		if got := m.running(targetDigest); got != 7 {
			t.Errorf("%d devices run the target, want 7", got)
		}
		// Paused: nobody else gets it, however long it stays paused.
		m.run(t0.Add(time.Hour))
		if got := m.running(targetDigest); got != 7 || m.s.Wave != 0 {
			t.Errorf("paused rollout spread: %d devices, wave %d", got, m.s.Wave)
		}
		// An admin pins one of the rolled back devices to the target and
		// another device to a third image: pins override the rollout.
		var rolledBack, outside string
		for _, d := range m.fleet {
			if d.Result == ResultRolledBack && rolledBack == "" {
				rolledBack = d.ID
			}
			if m.s.WaveOf(d.ID, nil) == 2 && outside == "" {
				outside = d.ID
			}
		}
		if err := m.s.Pin(outside, pinDigest); err != nil {
			t.Fatal(err)
		}
		if got, _ := TargetFor(m.s, outside, nil, prevDigest); got != pinDigest {
			t.Errorf("pinned device offered %s", got)
		}
		if err := m.s.Pin(rolledBack, targetDigest); err != nil {
			t.Fatal(err)
		}
		if got, why := TargetFor(m.s, rolledBack, nil, prevDigest); got != targetDigest || why != "pinned by an admin" {
			t.Errorf("pinned rolled back device offered %s (%s)", got, why)
		}
		// Abort: everyone not pinned goes back; no resume after that.
		if err := m.s.Abort(); err != nil {
			t.Fatal(err)
		}
		if err := m.s.Resume(); err == nil || !strings.Contains(err.Error(), "cannot resume an aborted rollout") {
			t.Errorf("resume after abort: %v", err)
		}
		if err := m.s.Abort(); err == nil {
			t.Error("abort after abort succeeded")
		}
		for _, d := range m.fleet {
			got, _ := TargetFor(m.s, d.ID, nil, d.Running)
			want := prevDigest
			switch d.ID {
			case outside:
				want = pinDigest
			case rolledBack:
				want = targetDigest
			}
			if got != want {
				t.Fatalf("aborted rollout offers %s to %s (%s), want %s", got, d.ID, d.Running, want)
			}
		}
	})

	t.Run("resume after errors goes on", func(t *testing.T) {
		n := 0
		m := newSim(t, func(string) bool { n++; return n != 2 })
		m.run(t0)
		if m.s.Status != StatusPaused || m.s.PauseReason != "wave 1 (1%): 1 of 10 devices rolled back or failed (10% > 5%)" {
			t.Fatalf("status %s, reason %q", m.s.Status, m.s.PauseReason)
		}
		if err := m.s.Resume(); err != nil {
			t.Fatal(err)
		}
		m.run(t0.Add(time.Hour))
		if m.s.Status != StatusCompleted || m.running(targetDigest) != 999 {
			t.Fatalf("status %s (%s), %d devices run the target", m.s.Status, m.s.PauseReason, m.running(targetDigest))
		}
	})
}

func goldenState(t *testing.T) *State {
	p := mustPlan(t, "group=canary,1%,10%,100%")
	p.Soak = 30 * time.Minute
	s, err := New("0f8e2c4a9b7d6e5f", "stable", "web", targetDigest, prevDigest, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	s.Advance(t0.Add(time.Minute), Counts{Fleet: 200, Devices: 3, Installed: 3})
	s.Advance(t0.Add(31*time.Minute), Counts{Fleet: 200, Devices: 3, Installed: 3})
	fleet := fleetOf(ids(200))
	s.Widen(fleet)
	s.Advance(t0.Add(40*time.Minute), Counts{Fleet: 200, Devices: 8, Installed: 5, RolledBack: 1})
	if err := s.Pin("edge-berlin-17", pinDigest); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStateGolden pins the JSON form of a State, which stores keep: run
// go test ./transport/server/rollout -run Golden -update after an intended
// change, and say in the commit how stored states are read.
func TestStateGolden(t *testing.T) {
	s := goldenState(t)
	got, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "state.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("State JSON changed (-golden +got); if intended, run go test -run Golden -update:\n%s", d)
	}
	var back State
	if err := json.Unmarshal(want, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(s, &back); d != "" {
		t.Errorf("golden does not read back (-built +read):\n%s", d)
	}
	c := back.Clone()
	c.Pins["x"] = pinDigest
	c.Plan.Waves[0].Labels["group"] = "other"
	c.Waves[0].Counts.Installed = 99
	if _, ok := back.Pins["x"]; ok || back.Plan.Waves[0].Labels["group"] != "canary" || back.Waves[0].Counts.Installed != 3 {
		t.Error("Clone shares maps or slices with the original")
	}
}
