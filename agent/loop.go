package agent

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// NextCheck is when to check again, given the outcome of a check at now:
//
//   - after a success, Interval plus a random [0, Jitter);
//   - when the server asked to wait (a delta being computed), retryAfter
//     plus a random [0, retryAfter/10) — at most Interval;
//   - after the n-th failure in a row, BackoffMin·2^(n-1) capped at
//     BackoffMax, drawn from [d/2, d] so a fleet that failed together does
//     not retry together.
func NextCheck(now time.Time, p PolicyConfig, failures int, retryAfter time.Duration, rng *rand.Rand) time.Time {
	switch {
	case failures > 0:
		d := p.BackoffMin.D()
		for i := 1; i < failures && d < p.BackoffMax.D(); i++ {
			d *= 2
		}
		d = min(d, p.BackoffMax.D())
		half := d / 2
		return now.Add(half + randDuration(rng, d-half+1))
	case retryAfter > 0:
		d := min(retryAfter, p.Interval.D())
		return now.Add(d + randDuration(rng, d/10))
	}
	return now.Add(p.Interval.D() + randDuration(rng, p.Jitter.D()))
}

// randDuration is uniform in [0, n); 0 when n <= 0.
func randDuration(rng *rand.Rand, n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return time.Duration(rng.Int64N(int64(n)))
}

// runOnce is one check-and-update of the run loop.
func (a *Agent) runOnce(ctx context.Context, image string) (time.Duration, error) {
	res, err := a.Update(ctx, image)
	if err != nil {
		return 0, err
	}
	if res.Check != nil && res.Check.Pending {
		return res.Check.RetryAfter.D(), nil
	}
	return 0, nil
}

// HeartbeatEvery is how often an idle run loop shows it is alive
// (LastBeat); a watchdog should allow at least twice this.
const HeartbeatEvery = 30 * time.Second

// Run checks and updates every image on its schedule until ctx is done,
// then returns nil. Each image's next check is persisted (next_check), so a
// restarted agent keeps the schedule; an image never checked is checked
// after a random part of its jitter (a fleet booting together spreads
// out). Failures back off exponentially (NextCheck). Images are handled
// one at a time.
func (a *Agent) Run(ctx context.Context) error {
	st, err := a.state.Load()
	if err != nil {
		return err
	}
	now := a.clock.Now()
	next := map[string]time.Time{}
	for _, im := range a.cfg.Images {
		s := st.Images[im.Name]
		switch {
		case s != nil && !s.NextCheck.IsZero():
			next[im.Name] = s.NextCheck
		default:
			next[im.Name] = now.Add(randDuration(a.rng, im.Policy.Jitter.D()))
		}
	}
	a.log.Info("agent running", "images", len(a.cfg.Images), "state", a.state.Path())
	for {
		a.beat()
		// The earliest due image, in config order on ties.
		var due string
		var at time.Time
		for _, im := range a.cfg.Images {
			if t := next[im.Name]; due == "" || t.Before(at) {
				due, at = im.Name, t
			}
		}
		// Wait in slices, each a heartbeat: an idle loop is alive.
		for wait := at.Sub(a.clock.Now()); wait > 0; wait = at.Sub(a.clock.Now()) {
			select {
			case <-ctx.Done():
				a.log.Info("agent stopping")
				return nil
			case <-a.clock.After(min(wait, HeartbeatEvery)):
			}
			a.beat()
		}
		if ctx.Err() != nil {
			return nil
		}
		im, _ := a.cfg.Image(due)
		retry, err := a.cycle(ctx, due)
		if ctx.Err() != nil {
			// Stopped mid-check: not a failure; the persisted next_check
			// makes the next start check again.
			a.log.Info("agent stopping")
			return nil
		}
		if errors.Is(err, ErrHeldBack) {
			// Not a failure: the target that failed its health check
			// stays refused, and the next check comes at the usual time.
			a.log.Info("holding back", "image", due, "reason", err)
			err = nil
		}
		checked := a.clock.Now()
		s, serr := a.state.Update(due, func(s *ImageState) {
			if errors.Is(err, ErrBackoff) && s.Failed != nil {
				// Not a new failure: wait out the failed target's
				// backoff.
				s.NextCheck = s.Failed.Until
				return
			}
			if err != nil {
				s.Failures++
				if !errors.Is(err, context.Canceled) {
					s.LastError = err.Error()
				}
			} else {
				s.Failures = 0
			}
			s.NextCheck = NextCheck(checked, im.Policy, s.Failures, retry, a.rng).UTC()
		})
		if serr != nil {
			// Without state the schedule still goes on, in memory.
			a.log.Error("state", "err", serr)
			f := 0
			if err != nil {
				f = 1
			}
			s.NextCheck = NextCheck(checked, im.Policy, f, retry, a.rng)
		}
		if err != nil {
			a.log.Warn("check failed", "image", due, "failures", s.Failures, "next", s.NextCheck, "err", err)
		}
		next[due] = s.NextCheck
	}
}
