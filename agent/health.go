package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// checkHealth runs im's health check (its command, then its containers)
// until it passes, within health.timeout, then keeps running it for
// health.settle: any failure then is a failure of the update. Without a
// check the update is healthy once its hook passed.
func (a *Agent) checkHealth(ctx context.Context, im *ImageConfig, previous string, target Current) error {
	h := im.Health
	if h == nil || (h.Command == "" && !h.Containers) {
		return nil
	}
	deadline := a.clock.Now().Add(h.Timeout.D())
	var last error
	for {
		a.beat()
		if last = a.tryHealth(ctx, im, previous, target); last == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !a.clock.Now().Add(h.Interval.D()).Before(deadline) {
			return fmt.Errorf("%w: no pass within %s: %w", ErrUnhealthy, h.Timeout.D(), last)
		}
		if err := a.sleep(ctx, h.Interval.D()); err != nil {
			return err
		}
	}
	a.log.Info("health check passed", "image", im.Name, "target", target.ConfigDigest)
	for end := a.clock.Now().Add(h.Settle.D()); a.clock.Now().Before(end); {
		if err := a.sleep(ctx, h.Interval.D()); err != nil {
			return err
		}
		a.beat()
		if err := a.tryHealth(ctx, im, previous, target); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: failed while settling (%s): %w", ErrUnhealthy, h.Settle.D(), err)
		}
	}
	return nil
}

// sleep waits d on the agent's clock, or until ctx ends.
func (a *Agent) sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-a.clock.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryHealth tries im's health check once: the command, if any, then the
// containers, if health.containers.
func (a *Agent) tryHealth(ctx context.Context, im *ImageConfig, previous string, target Current) error {
	h := im.Health
	if h.Command != "" {
		if err := runHealth(ctx, im, previous, target, h.Timeout.D()); err != nil {
			return err
		}
	}
	if h.Containers {
		ctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
		defer cancel()
		return a.checkContainers(ctx, im, target.ConfigDigest)
	}
	return nil
}

// runHealth runs the health command once, within timeout, with the
// hook's environment.
func runHealth(ctx context.Context, im *ImageConfig, previous string, target Current, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", im.Health.Command)
	cmd.Env = append(os.Environ(), hookEnv(im, previous, target)...)
	out := &capBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		b := bytes.TrimSpace(out.Bytes())
		if len(b) > maxHookOutput {
			b = b[len(b)-maxHookOutput:]
		}
		return fmt.Errorf("%q: %v: %s", im.Health.Command, err, b)
	}
	return nil
}

// rollbackUnhealthy undoes an update whose hook or health check failed:
// the failure is recorded first (the target is not installed again), then
// the engine puts the previous image back under the ref, the hook runs for
// it (SKIFF_ROLLBACK=1) and the state names it again. A run killed at any
// point of this finishes it (resumeInstall), so the device ends on the
// previous image. It returns cause as an ErrUnhealthy error, joined with
// whatever made the rollback itself fail.
func (a *Agent) rollbackUnhealthy(ctx context.Context, im *ImageConfig, p PendingInstall, cause error, res *UpdateResult) error {
	if !errors.Is(cause, ErrUnhealthy) {
		cause = fmt.Errorf("%w: %w", ErrUnhealthy, cause)
	}
	if p.Previous == "" {
		// Nothing to go back to: the update stands, reported.
		a.clearInstall(im.Name, p.Target.ConfigDigest)
		return errors.Join(cause, errors.New("no previous image to roll back to"))
	}
	reason := cause.Error()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	now := a.clock.Now().UTC()
	if _, err := a.state.Update(im.Name, func(s *ImageState) {
		f := s.Failed
		if f == nil || f.Target != p.Target.ConfigDigest {
			f = &FailedInstall{Target: p.Target.ConfigDigest}
		}
		f.Count++
		f.Via, f.At, f.Until, f.Unhealthy, f.Reason = p.Via, now, time.Time{}, true, reason
		s.Failed = f
		if s.Install != nil && s.Install.Target.ConfigDigest == p.Target.ConfigDigest {
			s.Install.RollingBack = true
		}
	}); err != nil {
		return errors.Join(cause, err)
	}
	a.log.Warn("the update failed its health check; rolling back", "image", im.Name, "target", p.Target.ConfigDigest, "previous", p.Previous, "err", cause)
	crash(ctx, "rollback-recorded")
	if err := a.restorePrevious(ctx, im, p); err != nil {
		return errors.Join(cause, err)
	}
	res.RolledBack = true
	return cause
}

// restorePrevious is the part of a rollback a killed run repeats: the
// previous image back under the ref, its hook, the state.
func (a *Agent) restorePrevious(ctx context.Context, im *ImageConfig, p PendingInstall) error {
	eng := a.engines[im.Name]
	cur, err := eng.Inspect(ctx, im.Ref)
	if err != nil && !errors.Is(err, ErrNoImage) {
		return err
	}
	if cur.ID != p.Previous {
		r, ok := eng.(restorer)
		if !ok {
			return fmt.Errorf("the %s engine cannot put %s back under %s", im.Engine, p.Previous, im.Ref)
		}
		if err := r.Restore(ctx, im.Ref, p.Previous); err != nil {
			return fmt.Errorf("restore %s to %s: %w", im.Ref, p.Previous, err)
		}
	}
	crash(ctx, "restored")
	prev := p.PreviousCurrent
	if prev.ConfigDigest != p.Previous {
		prev = Current{ConfigDigest: p.Previous, Ref: im.Ref}
	}
	if err := runHook(ctx, im, p.Target.ConfigDigest, prev, "SKIFF_ROLLBACK=1"); err != nil {
		a.log.Warn("the hook failed for the image rolled back to", "image", im.Name, "err", err)
	}
	if r, ok := eng.(leftoverRemover); ok && ctx.Err() == nil {
		if err := r.RemoveLeftover(ctx, p.Target.ConfigDigest); err != nil {
			a.log.Warn("the failed image stays", "image", im.Name, "target", p.Target.ConfigDigest, "err", err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	_, err = a.state.Update(im.Name, func(s *ImageState) {
		s.Current = prev
		var kept []string
		for _, id := range s.Previous {
			if id != p.Previous && id != p.Target.ConfigDigest {
				kept = append(kept, id)
			}
		}
		s.Previous = kept
		if s.Install != nil && s.Install.Target.ConfigDigest == p.Target.ConfigDigest {
			s.Install = nil
		}
	})
	if err == nil {
		a.log.Info("rolled back", "image", im.Name, "to", p.Previous, "from", p.Target.ConfigDigest)
	}
	return err
}
