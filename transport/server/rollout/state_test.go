package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	prevDigest   = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	targetDigest = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	pinDigest    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

var t0 = time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC)

func mustPlan(t *testing.T, text string) Plan {
	t.Helper()
	p, err := ParsePlan(text)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newState(t *testing.T, id, waves string, edit func(*Plan)) *State {
	t.Helper()
	p := mustPlan(t, waves)
	if edit != nil {
		edit(&p)
	}
	s, err := New(id, "stable", "web", targetDigest, prevDigest, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestNew(t *testing.T) {
	p := Plan{Waves: pcts(1, 100)}
	s, err := New("r1", "stable", "web", targetDigest, prevDigest, p, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := &State{
		ID: "r1", Channel: "stable", Image: "web", Target: targetDigest, Previous: prevDigest,
		Plan:   Plan{Waves: pcts(1, 100), SuccessThreshold: 0.9, ErrorThreshold: 0.05, MinDevices: 5},
		Status: StatusRunning, Waves: []WaveState{{Started: t0}, {}}, Created: t0,
	}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	p.Waves[0].Percent = 50 // the state has its own copy
	if s.Plan.Waves[0].Percent != 1 {
		t.Error("New kept the caller's wave slice")
	}
	if _, err := New("r1", "stable", "web", targetDigest, "", p, t0); err != nil {
		t.Errorf("no previous: %v", err)
	}

	for _, tc := range []struct {
		name, id, channel, target, previous string
		plan                                Plan
		err                                 error
		msg                                 string
	}{
		{"empty ID", "", "stable", targetDigest, prevDigest, p, ErrInvalid, "rollout ID"},
		{"ID with space", "r 1", "stable", targetDigest, prevDigest, p, ErrInvalid, "rollout ID"},
		{"no channel", "r1", "", targetDigest, prevDigest, p, ErrInvalid, "channel and image"},
		{"bad target", "r1", "stable", "sha256:abc", prevDigest, p, ErrInvalid, "target"},
		{"upper-case hex", "r1", "stable", strings.ToUpper(targetDigest), prevDigest, p, ErrInvalid, "target"},
		{"bad previous", "r1", "stable", targetDigest, "web:1", p, ErrInvalid, "previous"},
		{"same digests", "r1", "stable", targetDigest, targetDigest, p, ErrInvalid, "target is the previous"},
		{"bad plan", "r1", "stable", targetDigest, prevDigest, Plan{Waves: pcts(50)}, ErrPlan, "last wave"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.id, tc.channel, "web", tc.target, tc.previous, tc.plan, t0)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("New = %v, want %v containing %q", err, tc.err, tc.msg)
			}
		})
	}
}

func TestValidateState(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*State)
		msg  string
	}{
		{"unknown status", func(s *State) { s.Status = "done" }, "unknown status"},
		{"wave out of range", func(s *State) { s.Wave = 3 }, "wave index 3"},
		{"negative wave", func(s *State) { s.Wave = -1 }, "wave index -1"},
		{"wave states", func(s *State) { s.Waves = s.Waves[:1] }, "1 wave states for 3 waves"},
		{"bad pin", func(s *State) { s.Pins = map[string]string{"d": "latest"} }, "pin"},
		{"negative excused", func(s *State) { s.Excused = -2 }, "excused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t, "r1", "1%,10%,100%", nil)
			tc.edit(s)
			if err := s.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Validate = %v, want ErrInvalid containing %q", err, tc.msg)
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	ops := map[string]func(*State) error{
		"pause":  func(s *State) error { return s.Pause("") },
		"resume": (*State).Resume,
		"abort":  (*State).Abort,
		"skip":   func(s *State) error { _, err := s.Skip(t0); return err },
	}
	for _, tc := range []struct {
		from Status
		op   string
		want Status // "" means the transition is refused
	}{
		{StatusRunning, "pause", StatusPaused},
		{StatusRunning, "resume", ""},
		{StatusRunning, "abort", StatusAborted},
		{StatusRunning, "skip", StatusRunning},
		{StatusPaused, "pause", ""},
		{StatusPaused, "resume", StatusRunning},
		{StatusPaused, "abort", StatusAborted},
		{StatusPaused, "skip", ""},
		{StatusAborted, "pause", ""},
		{StatusAborted, "resume", ""},
		{StatusAborted, "abort", ""},
		{StatusAborted, "skip", ""},
		{StatusCompleted, "pause", ""},
		{StatusCompleted, "resume", ""},
		{StatusCompleted, "abort", ""},
		{StatusCompleted, "skip", ""},
	} {
		t.Run(string(tc.from)+"/"+tc.op, func(t *testing.T) {
			s := newState(t, "r1", "1%,100%", nil)
			s.Status = tc.from
			before := s.Clone()
			err := ops[tc.op](s)
			if tc.want == "" {
				if !errors.Is(err, ErrTransition) {
					t.Fatalf("%s of a %s rollout: %v, want ErrTransition", tc.op, tc.from, err)
				}
				if d := cmp.Diff(before, s); d != "" {
					t.Errorf("a refused transition changed the state (-before +after):\n%s", d)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != tc.want || s.Rev != before.Rev+1 {
				t.Errorf("status %s rev %d, want %s rev %d", s.Status, s.Rev, tc.want, before.Rev+1)
			}
		})
	}
}

func TestPauseResumeReason(t *testing.T) {
	s := newState(t, "r1", "1%,100%", nil)
	if err := s.Pause("investigating ticket 42"); err != nil {
		t.Fatal(err)
	}
	if s.PauseReason != "investigating ticket 42" {
		t.Errorf("reason %q", s.PauseReason)
	}
	if err := s.Resume(); err != nil || s.PauseReason != "" {
		t.Fatalf("resume: %v, reason %q", err, s.PauseReason)
	}
	if err := s.Pause(""); err != nil || s.PauseReason != "paused by an admin" {
		t.Fatalf("pause: %v, reason %q", err, s.PauseReason)
	}
	if err := s.Abort(); err != nil || s.PauseReason != "" {
		t.Fatalf("abort: %v, reason %q", err, s.PauseReason)
	}
}

func TestSkip(t *testing.T) {
	s := newState(t, "r1", "group=canary,100%", nil)
	ev, err := s.Skip(t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if s.Wave != 1 || !s.Waves[1].Started.Equal(t0.Add(time.Hour)) || ev != "wave 2 (100%) started: skipped by an admin" {
		t.Errorf("wave %d started %v, event %q", s.Wave, s.Waves[1].Started, ev)
	}
	if ev, err = s.Skip(t0); err != nil || s.Status != StatusCompleted || ev != "completed: skipped by an admin" {
		t.Errorf("skip of the last wave: %q, %v, status %s", ev, err, s.Status)
	}
}

func TestPins(t *testing.T) {
	s := newState(t, "r1", "1%,100%", nil)
	for _, tc := range []struct{ device, digest, msg string }{
		{"", pinDigest, "empty device"},
		{"d1", "sha256:xyz", "not sha256"},
		{"d1", "", "not sha256"},
	} {
		if err := s.Pin(tc.device, tc.digest); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Pin(%q, %q) = %v, want ErrInvalid containing %q", tc.device, tc.digest, err, tc.msg)
		}
	}
	if err := s.Pin("d1", pinDigest); err != nil || s.Rev != 1 {
		t.Fatalf("pin: %v, rev %d", err, s.Rev)
	}
	if err := s.Pin("d1", pinDigest); err != nil || s.Rev != 1 {
		t.Fatalf("pinning again changed the rev: %v, rev %d", err, s.Rev)
	}
	if err := s.Pin("d1", prevDigest); err != nil || s.Rev != 2 || s.Pins["d1"] != prevDigest {
		t.Fatalf("re-pin: %v, rev %d, pins %v", err, s.Rev, s.Pins)
	}
	if err := s.Unpin("d2"); !errors.Is(err, ErrNotPinned) {
		t.Errorf("unpin of an unpinned device: %v", err)
	}
	if err := s.Unpin("d1"); err != nil || s.Pins != nil || s.Rev != 3 {
		t.Errorf("unpin: %v, pins %v, rev %d", err, s.Pins, s.Rev)
	}
	// Pins work on final rollouts too.
	s.Status = StatusAborted
	if err := s.Pin("d1", pinDigest); err != nil {
		t.Errorf("pin on an aborted rollout: %v", err)
	}
}

func TestAdvance(t *testing.T) {
	type step struct {
		at      time.Duration // after t0
		c       Counts
		changed bool
		event   string
		status  Status
		wave    int
	}
	for _, tc := range []struct {
		name  string
		waves string
		edit  func(*Plan)
		prep  func(*State)
		steps []step
	}{
		{name: "all installed: next wave", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)"},
		}},
		{name: "success threshold is inclusive", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 9}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 9 of 10 devices installed (90% ≥ 90%)"},
		}},
		{name: "below success: counts recorded, then unchanged", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 8}, changed: true, status: StatusRunning},
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 8}, changed: false, status: StatusRunning},
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 9}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 9 of 10 devices installed (90% ≥ 90%)"},
		}},
		{name: "errors pause", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 7, RolledBack: 2, Failed: 1}, changed: true, status: StatusPaused,
				event: "paused: wave 1 (1%): 3 of 10 devices rolled back or failed (30% > 5%)"},
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: false, status: StatusPaused},
		}},
		{name: "errors at the threshold do not pause", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 20, Installed: 10, Failed: 1}, changed: true, status: StatusRunning},
		}},
		{name: "errors win over success", waves: "1%,10%,100%", edit: func(p *Plan) { p.SuccessThreshold = 0.5 }, steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 8, RolledBack: 2}, changed: true, status: StatusPaused,
				event: "paused: wave 1 (1%): 2 of 10 devices rolled back or failed (20% > 5%)"},
		}},
		{name: "min devices: one device is not enough", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 1, Installed: 1}, changed: true, status: StatusRunning},
		}},
		{name: "min devices: capped by the fleet", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1, Devices: 1, Installed: 1}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 1 of 1 devices installed (100% ≥ 90%)"},
		}},
		{name: "min devices: one failure of five", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 2, Installed: 1, RolledBack: 1}, changed: true, status: StatusPaused,
				event: "paused: wave 1 (1%): 1 of 5 devices rolled back or failed (20% > 5%)"},
		}},
		{name: "group waves ignore min devices", waves: "group=canary,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 2, Installed: 2}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (100%) started: wave 1 (group=canary): 2 of 2 devices installed (100% ≥ 90%)"},
		}},
		{name: "no devices: wait", waves: "group=canary,100%", steps: []step{
			{c: Counts{Fleet: 1000}, changed: true, status: StatusRunning},
			{c: Counts{}, changed: true, status: StatusRunning},
		}},
		{name: "last wave completes", waves: "100%", steps: []step{
			{c: Counts{Fleet: 100, Devices: 100, Installed: 95, RolledBack: 5}, changed: true, status: StatusCompleted,
				event: "completed: wave 1 (100%): 95 of 100 devices installed (95% ≥ 90%)"},
			{c: Counts{Fleet: 100, Devices: 100, Installed: 0, RolledBack: 100}, changed: false, status: StatusCompleted},
		}},
		{name: "soak", waves: "1%,100%", edit: func(p *Plan) { p.Soak = time.Hour }, steps: []step{
			{at: time.Minute, c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: true, status: StatusRunning,
				event: "wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%); soaking until 2026-12-04T19:01:00Z"},
			{at: 30 * time.Minute, c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: false, status: StatusRunning},
			{at: 40 * time.Minute, c: Counts{Fleet: 1000, Devices: 11, Installed: 10, Failed: 1}, changed: true, status: StatusPaused,
				event: "paused: wave 1 (1%): 1 of 11 devices rolled back or failed (9.1% > 5%)"},
		}},
		{name: "soak then next wave", waves: "1%,100%", edit: func(p *Plan) { p.Soak = time.Hour }, steps: []step{
			{at: time.Minute, c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: true, status: StatusRunning,
				event: "wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%); soaking until 2026-12-04T19:01:00Z"},
			{at: 61 * time.Minute, c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (100%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)"},
		}},
		{name: "inconsistent counts are normalized", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: -3, Devices: 2, Installed: 10, RolledBack: -1}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)"},
		}},
		{name: "not running: nothing", waves: "1%,100%", prep: func(s *State) { _ = s.Pause("") }, steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 10}, changed: false, status: StatusPaused},
		}},
		{name: "resume excuses the errors it saw", waves: "1%,10%,100%", steps: []step{
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 7, RolledBack: 3}, changed: true, status: StatusPaused,
				event: "paused: wave 1 (1%): 3 of 10 devices rolled back or failed (30% > 5%)"},
			{at: -1}, // resume
			{c: Counts{Fleet: 1000, Devices: 10, Installed: 7, RolledBack: 3}, changed: true, status: StatusRunning, wave: 1,
				event: "wave 2 (10%) started: wave 1 (1%): 7 of 7 devices installed (100% ≥ 90%, 3 excused)"},
			{c: Counts{Fleet: 1000, Devices: 100, Installed: 85, RolledBack: 4, Failed: 1}, changed: true, status: StatusRunning, wave: 1},
			{c: Counts{Fleet: 1000, Devices: 100, Installed: 85, RolledBack: 8, Failed: 1}, changed: true, status: StatusPaused, wave: 1,
				event: "paused: wave 2 (10%): 6 of 97 devices rolled back or failed (6.2% > 5%, 3 excused)"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t, "r1", tc.waves, tc.edit)
			if tc.prep != nil {
				tc.prep(s)
			}
			for i, st := range tc.steps {
				if st.at < 0 {
					if err := s.Resume(); err != nil {
						t.Fatal(err)
					}
					continue
				}
				rev := s.Rev
				changed, event := s.Advance(t0.Add(st.at), st.c)
				if changed != st.changed || event != st.event || s.Status != st.status || s.Wave != st.wave {
					t.Fatalf("step %d: Advance(%+v) = %v, %q; status %s, wave %d\nwant %v, %q; status %s, wave %d",
						i, st.c, changed, event, s.Status, s.Wave, st.changed, st.event, st.status, st.wave)
				}
				if changed != (s.Rev != rev) {
					t.Errorf("step %d: changed %v but rev %d -> %d", i, changed, rev, s.Rev)
				}
				if st.status == StatusPaused && event != "" && "paused: "+s.PauseReason != event {
					t.Errorf("step %d: reason %q, event %q", i, s.PauseReason, event)
				}
				if err := s.Validate(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
		})
	}
}
