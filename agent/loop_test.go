package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fakeClock jumps forward to whatever the loop waits for.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func TestNextCheck(t *testing.T) {
	p := PolicyConfig{Interval: Duration(time.Hour), Jitter: Duration(10 * time.Minute),
		BackoffMin: Duration(time.Minute), BackoffMax: Duration(8 * time.Minute)}
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name     string
		failures int
		retry    time.Duration
		lo, hi   time.Duration // inclusive
	}{
		{"success", 0, 0, time.Hour, time.Hour + 10*time.Minute - 1},
		{"failure 1", 1, 0, 30 * time.Second, time.Minute},
		{"failure 2", 2, 0, time.Minute, 2 * time.Minute},
		{"failure 3", 3, 0, 2 * time.Minute, 4 * time.Minute},
		{"failure 4", 4, 0, 4 * time.Minute, 8 * time.Minute},
		{"failure 9 capped", 9, 0, 4 * time.Minute, 8 * time.Minute},
		{"failure 200 capped", 200, 0, 4 * time.Minute, 8 * time.Minute},
		{"retry-after", 0, 30 * time.Second, 30 * time.Second, 33 * time.Second},
		{"retry-after over interval", 0, 5 * time.Hour, time.Hour, time.Hour + 6*time.Minute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for i := 0; i < 200; i++ {
				d := NextCheck(now, p, c.failures, c.retry, rng).Sub(now)
				if d < c.lo || d > c.hi {
					t.Fatalf("wait %s outside [%s, %s]", d, c.lo, c.hi)
				}
				seen[d] = true
			}
			if len(seen) < 50 {
				t.Errorf("only %d distinct waits in 200: no jitter", len(seen))
			}
		})
	}
}

// TestRunSchedule drives the real loop with a fake clock and a scripted
// check outcome, and checks when each check happened.
func TestRunSchedule(t *testing.T) {
	newConfig := func() *Config {
		dir := t.TempDir()
		y := "state_dir: " + dir + "\nimages:\n  - name: web\n    engine: oci:" + dir + "/img\n    ref: web:1\n" +
			"    source: {server: http://s, token: t, channel: c}\n" +
			"    policy: {interval: 1h, jitter: 10m, backoff_min: 1m, backoff_max: 8m}\n"
		cfg, err := ParseConfig([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := newConfig()
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	run := func(cfg *Config, seed uint64, outcomes []error) ([]time.Time, *Agent) {
		clock := &fakeClock{now: start}
		a := newAgent(t, cfg, WithClock(clock), WithSeed(seed))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var at []time.Time
		a.cycle = func(ctx context.Context, image string) (time.Duration, error) {
			at = append(at, clock.Now())
			i := len(at) - 1
			if i == len(outcomes)-1 {
				cancel()
			}
			if outcomes[i] == errRetry {
				return 45 * time.Second, nil
			}
			return 0, outcomes[i]
		}
		if err := a.Run(ctx); err != nil {
			t.Fatal(err)
		}
		return at, a
	}
	fail := errors.New("link down")
	outcomes := []error{nil, fail, fail, fail, fail, fail, nil, errRetry, nil, nil}
	at, a := run(cfg, 7, outcomes)
	if len(at) != len(outcomes) {
		t.Fatalf("%d checks, want %d", len(at), len(outcomes))
	}
	type span struct{ lo, hi time.Duration }
	want := []span{
		{0, 10 * time.Minute},                   // first check: within the jitter
		{time.Hour, time.Hour + 10*time.Minute}, // after a success
		{30 * time.Second, time.Minute},         // 1st failure
		{time.Minute, 2 * time.Minute},          // 2nd
		{2 * time.Minute, 4 * time.Minute},      // 3rd
		{4 * time.Minute, 8 * time.Minute},      // 4th: at the cap
		{4 * time.Minute, 8 * time.Minute},      // 5th: still capped
		{time.Hour, time.Hour + 10*time.Minute}, // success resets the backoff
		{45 * time.Second, 50 * time.Second},    // the server asked to wait
		{time.Hour, time.Hour + 10*time.Minute},
	}
	prev := start
	for i, w := range want {
		if d := at[i].Sub(prev); d < w.lo || d > w.hi {
			t.Errorf("check %d came %s after the previous, want [%s, %s]", i, d, w.lo, w.hi)
		}
		prev = at[i]
	}
	// The schedule is persisted (the last check was cut by the stop, so
	// next_check is still the time it started): a restarted agent waits
	// for next_check.
	st, _ := a.Status()
	s := st.Images["web"]
	if s.Failures != 0 || !s.NextCheck.Equal(at[len(at)-1]) {
		t.Errorf("state after the run: %+v", s)
	}
	clock := &fakeClock{now: at[len(at)-1].Add(-20 * time.Minute)}
	b := newAgent(t, cfg, WithClock(clock))
	ctx, cancel := context.WithCancel(context.Background())
	var resumed time.Time
	b.cycle = func(context.Context, string) (time.Duration, error) {
		resumed = clock.Now()
		cancel()
		return 0, nil
	}
	b.Run(ctx)
	if !resumed.Equal(s.NextCheck) {
		t.Errorf("restarted agent checked at %s, want the persisted next_check %s", resumed, s.NextCheck)
	}
	// The same seed gives the same schedule.
	again, _ := run(newConfig(), 7, outcomes)
	for i := range at {
		if !at[i].Equal(again[i]) {
			t.Fatalf("seeded runs differ at check %d: %s vs %s", i, at[i], again[i])
		}
	}
}

// errRetry makes the scripted cycle answer "ask again in 45s".
var errRetry = errors.New("retry")

// TestRunRecordsFailures: failures are counted and last_error kept; a
// cancelled context stops Run cleanly.
func TestRunRecordsFailures(t *testing.T) {
	dir := t.TempDir()
	y := "state_dir: " + dir + "\nimages:\n  - name: web\n    engine: oci:" + dir + "/img\n    ref: web:1\n" +
		"    source: {server: http://s, token: t, channel: c}\n"
	cfg, _ := ParseConfig([]byte(y))
	clock := &fakeClock{now: time.Unix(1e9, 0)}
	a := newAgent(t, cfg, WithClock(clock))
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	a.cycle = func(context.Context, string) (time.Duration, error) {
		n++
		if n == 3 {
			cancel()
		}
		return 0, errors.New("registry unreachable")
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
	st, _ := a.Status()
	// The third cycle was cut by the cancel: not counted.
	if s := st.Images["web"]; s.Failures != 2 || s.LastError != "registry unreachable" {
		t.Errorf("state %+v", s)
	}
}
