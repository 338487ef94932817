package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport"
)

// UpdateResult says what an update did.
type UpdateResult struct {
	Image   string   `json:"image"`
	Updated bool     `json:"updated"`
	From    string   `json:"from,omitempty"` // config digest replaced
	To      *Current `json:"to,omitempty"`
	// Via is "delta", "full-pull" or "file".
	Via        string   `json:"via,omitempty"`
	DeltaBytes int64    `json:"delta_bytes,omitempty"`
	Pruned     []string `json:"pruned,omitempty"`
	// RolledBack: the update loaded but failed its hook or health check,
	// and the previous image runs again.
	RolledBack bool `json:"rolled_back,omitempty"`
	// Check is the check the update followed (nil for ApplyFile).
	Check *CheckResult `json:"check,omitempty"`
}

// Update checks image and, if an update exists, fetches the delta, applies
// it to the running image, loads the result, verifies it, runs the hook
// and prunes old images. Any failure before the load leaves the running
// image untouched; the state records the error.
func (a *Agent) Update(ctx context.Context, image string) (*UpdateResult, error) {
	if _, err := a.cfg.Image(image); err != nil {
		return nil, err
	}
	// One update of an image at a time, across processes: a second agent
	// waits, then checks against what the first loaded.
	unlock, err := a.lockImage(ctx, image)
	if err != nil {
		return nil, err
	}
	defer unlock()
	im, _ := a.cfg.Image(image)
	res := &UpdateResult{Image: image}
	// A run killed between the load and the hook left an install to
	// finish: the hook runs before anything else happens to the image.
	if err := a.resumeInstall(ctx, im, res); err != nil {
		err = fmt.Errorf("update %s: %w", image, err)
		a.recordError(im.Name, err)
		if res.Updated || res.RolledBack {
			// It finished the install (its hook failed) or a rollback;
			// an install it could not even look at is reported once it
			// can.
			a.reportAttempt(ctx, im, res.From, res.To, res, err, time.Time{})
		}
		return res, err
	}
	if res.Updated || res.RolledBack {
		a.reportAttempt(ctx, im, res.From, res.To, res, nil, time.Time{})
	}
	cr, err := a.Check(ctx, image)
	if err != nil {
		if res.Updated {
			return res, err
		}
		return nil, err
	}
	res.Check = cr
	if im.Source.IsServer() {
		// The server answered: send the queued reports, this run's
		// attempt's included (deferred: it is queued below).
		defer a.flushReports(ctx)
	}
	if !cr.Update && cr.Current.ID != "" {
		// A run killed between the load and the clean-up left its delta.
		a.removeDoneDeltas(cr.Current.ID)
	}
	a.removeUnwantedDeltas(im.Name, cr)
	if !cr.Update || cr.Pending {
		return res, nil
	}
	if err := a.backingOff(im.Name, cr.Target); err != nil {
		// The failure is recorded already: not again.
		return res, fmt.Errorf("update %s: %w", image, err)
	}
	if err := a.notOlder(im.Name, cr.Target); err != nil {
		err = fmt.Errorf("update %s: %w", image, err)
		a.recordError(im.Name, err)
		return res, err
	}
	started := a.clock.Now()
	err = a.update(ctx, im, cr, res)
	a.reportAttempt(ctx, im, cr.Current.ID, cr.Target, res, err, started)
	if err != nil {
		err = fmt.Errorf("update %s: %w", image, err)
		a.recordError(im.Name, err)
		return res, err
	}
	return res, nil
}

// notOlder refuses (ErrRollback) a target whose publish serial is lower
// than that of the image the agent installed from the same channel: an
// admin's rollback is a new publish with a higher serial, so a lower one
// is a stale or replayed answer.
func (a *Agent) notOlder(image string, target *Current) error {
	if target == nil || target.Serial == 0 {
		return nil
	}
	st, err := a.state.Load()
	if err != nil {
		return err
	}
	s := st.Images[image]
	if s == nil || s.Current.Serial == 0 || s.Current.Channel != target.Channel || target.Serial >= s.Current.Serial {
		return nil
	}
	return fmt.Errorf("%w: the server offers %s as publish #%d of channel %q, older than publish #%d installed (%s); a rollback an admin publishes has a higher number",
		ErrRollback, target.ConfigDigest, target.Serial, target.Channel, s.Current.Serial, s.Current.ConfigDigest)
}

// backingOff returns an ErrBackoff error if target is the image whose
// install failed after its load and its backoff has not ended.
func (a *Agent) backingOff(image string, target *Current) error {
	if target == nil {
		return nil
	}
	st, err := a.state.Load()
	if err != nil {
		return err
	}
	s := st.Images[image]
	if s == nil || s.Failed == nil || s.Failed.Target != target.ConfigDigest {
		return nil
	}
	if s.Failed.Unhealthy {
		return fmt.Errorf("%w: %s failed its health check at %s and was rolled back; waiting for a newer target", ErrHeldBack,
			target.ConfigDigest, s.Failed.At.Format(time.RFC3339))
	}
	if now := a.clock.Now(); now.Before(s.Failed.Until) {
		return fmt.Errorf("%w: %d failed install(s) of %s (last %s), next try after %s", ErrBackoff,
			s.Failed.Count, target.ConfigDigest, s.Failed.At.Format(time.RFC3339), s.Failed.Until.Format(time.RFC3339))
	}
	return nil
}

func (a *Agent) recordError(image string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	if _, serr := a.state.Update(image, func(s *ImageState) { s.LastError = err.Error() }); serr != nil {
		a.log.Error("cannot record error", "image", image, "err", serr)
	}
}

func (a *Agent) update(ctx context.Context, im *ImageConfig, cr *CheckResult, res *UpdateResult) error {
	if cr.Delta == nil {
		if !im.AllowFullPull {
			return fmt.Errorf("%w (%s); set allow_full_pull: true to pull %s whole", ErrNoDelta, cr.Reason, cr.Target.Ref)
		}
		return a.fullPull(ctx, im, cr, res)
	}
	dir := filepath.Join(a.cfg.WorkDir, "deltas")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dg := digest.Digest(cr.Delta.Digest)
	if err := dg.Validate(); err != nil {
		return fmt.Errorf("delta digest %q: %w", cr.Delta.Digest, err)
	}
	dst := filepath.Join(dir, dg.Encoded()+".skiff")
	switch {
	case cr.Delta.URL != "":
		// The device token goes to the server that issued it, not to a
		// CDN or any other host the answer names: a signed,
		// content-addressed delta needs no credentials.
		// So does its client certificate, and its pinned CA is only its.
		var hdr http.Header
		client := a.client
		if sameOrigin(cr.Delta.URL, im.Source.Server) {
			var err error
			if hdr, err = a.bearer(im.Source); err != nil {
				return err
			}
			client = a.serverClient(im)
		}
		if complete(dst, dg, cr.Delta.Size) {
			// Downloaded by a run that stopped before the apply ended.
			a.log.Info("delta already downloaded", "image", im.Name, "file", dst)
			break
		}
		a.log.Info("fetching delta", "image", im.Name, "url", cr.Delta.URL, "size", cr.Delta.Size)
		st, err := transport.Fetch(ctx, cr.Delta.URL, dst, transport.FetchOptions{
			Digest: dg, Size: cr.Delta.Size, Header: hdr, Client: client,
			StallTimeout: a.cfg.Network.StallTimeout.D(),
			Progress:     func(int64, int64) { a.beat() },
		})
		if err != nil {
			return err
		}
		res.DeltaBytes = st.Bytes
	case cr.Delta.Artifact != "":
		ref, err := name.ParseReference(strings.TrimPrefix(cr.Delta.Artifact, "docker://"), a.nameOptions(im)...)
		if err != nil {
			return err
		}
		a.log.Info("pulling delta", "image", im.Name, "artifact", cr.Delta.Artifact)
		// The agent's own client carries every request (proxy, CA, timeouts).
		if _, err := transport.PullWithOptions(ctx, ref, dst, filepath.Join(a.cfg.WorkDir, "blobs"), transport.PullOptions{
			Client: a.client, Remote: a.remoteOptions(ctx),
			Fetch: transport.FetchOptions{StallTimeout: a.cfg.Network.StallTimeout.D()},
		}); err != nil {
			return err
		}
		if fi, err := os.Stat(dst); err == nil {
			res.DeltaBytes = fi.Size()
		}
	default:
		return fmt.Errorf("%w: delta without a location", ErrServer)
	}
	if err := a.install(ctx, im, dst, cr.Target, "delta", res); err != nil {
		if errors.Is(err, format.ErrBaseMismatch) || errors.Is(err, format.ErrCorrupt) ||
			errors.Is(err, format.ErrBadDelta) || errors.Is(err, format.ErrLimit) {
			// Fetching it again will not help.
			os.Remove(dst)
		}
		return err
	}
	res.Via = "delta"
	os.Remove(dst)
	return nil
}

func (a *Agent) nameOptions(im *ImageConfig) []name.Option {
	if im.Source.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// ApplyFile applies a delta file (carried to an air-gapped device) to the
// running image of image, the same way Update applies a downloaded one.
func (a *Agent) ApplyFile(ctx context.Context, image, path string) (*UpdateResult, error) {
	im, err := a.cfg.Image(image)
	if err != nil {
		return nil, err
	}
	unlock, err := a.lockImage(ctx, im.Name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	res := &UpdateResult{Image: image}
	if err := a.resumeInstall(ctx, im, res); err != nil {
		err = fmt.Errorf("apply %s to %s: %w", path, image, err)
		a.recordError(im.Name, err)
		return res, err
	}
	started := a.clock.Now()
	err = a.install(ctx, im, path, nil, "file", res)
	// Queued, sent by the next check that reaches the server.
	a.reportAttempt(ctx, im, res.From, res.To, res, err, started)
	if err != nil {
		err = fmt.Errorf("apply %s to %s: %w", path, image, err)
		a.recordError(im.Name, err)
		return res, err
	}
	res.Via = "file"
	return res, nil
}

// install applies the delta file at path to the running image, loads and
// verifies the result, then runs the hook and prunes. want, if known, is
// the target the delta must produce; via says where the delta came from.
func (a *Agent) install(ctx context.Context, im *ImageConfig, path string, want *Current, via string, res *UpdateResult) error {
	eng := a.engines[im.Name]
	cur, err := eng.Inspect(ctx, im.Ref)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, signedBy, err := format.ReadVerifiedHeader(bufio.NewReader(f), a.trust)
	if err != nil {
		if errors.Is(err, sign.ErrUnsigned) || errors.Is(err, sign.ErrUntrustedKey) {
			err = fmt.Errorf("%w (the config's trusted_keys must name the signer's public key; allow_unsigned: true accepts unsigned deltas, for development)", err)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	m := &h.Manifest
	if via == "file" && m.Target.ConfigDigest.String() == cur.ID && sameDiffIDs(cur.DiffIDs, m.Target.DiffIDs) {
		// The device already runs what the delta makes: a re-run after a
		// kill that came after the load (the resumed install finished it),
		// or the same file applied twice. Nothing to do, and no error.
		res.To = &Current{ConfigDigest: cur.ID, ManifestDigest: cur.ManifestDigest, Ref: im.Ref}
		return nil
	}
	if m.Base.ConfigDigest.String() != cur.ID {
		return fmt.Errorf("%w: %s is a delta from %s, %s runs %s", format.ErrBaseMismatch, path, m.Base.ConfigDigest, im.Ref, cur.ID)
	}
	if want != nil && want.ConfigDigest != "" && m.Target.ConfigDigest.String() != want.ConfigDigest {
		return fmt.Errorf("%w: %s makes %s, the target is %s", ErrVerify, path, m.Target.ConfigDigest, want.ConfigDigest)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	base, cleanup, err := eng.Base(ctx, im.Ref)
	if err != nil {
		return err
	}
	defer cleanup()
	work, err := os.MkdirTemp(a.cfg.WorkDir, applyPrefix(im.Name))
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	a.log.Info("applying delta", "image", im.Name, "from", cur.ID, "to", m.Target.ConfigDigest, "signed_by", signedBy)
	out, err := delta.Apply(ctx, base, bufio.NewReaderSize(f, 64<<10), delta.ApplyOptions{WorkDir: work, Sync: true,
		Progress:    func(int64, int64) { a.beat() },
		TrustedKeys: a.trust.Keys, AllowUnsigned: a.trust.AllowUnsigned})
	if err != nil {
		return err
	}
	defer out.Close()
	target := Current{ConfigDigest: m.Target.ConfigDigest.String(), Ref: im.Ref}
	if want != nil && want.ConfigDigest == target.ConfigDigest {
		target.Serial, target.Channel = want.Serial, want.Channel
	}
	if m.Target.Distribution != nil {
		if d, err := out.Image.Digest(); err == nil {
			target.ManifestDigest = d.String()
		}
	}
	// Up to here nothing has changed on the device.
	if err := a.loadPending(ctx, im, out.Image, cur.ID, &target, via); err != nil {
		return err
	}
	res.Updated, res.From, res.To = true, cur.ID, &target
	return a.finish(ctx, im, cur, target, res)
}

// load stores img under the configured ref and checks that the engine now
// holds the target: its image ID is the target's config digest.
func (a *Agent) load(ctx context.Context, im *ImageConfig, img v1.Image, target *Current) error {
	eng := a.engines[im.Name]
	if err := eng.Load(ctx, img, im.Ref); err != nil {
		return fmt.Errorf("load %s: %w", im.Ref, err)
	}
	got, err := eng.Inspect(ctx, im.Ref)
	if err != nil {
		return fmt.Errorf("inspect %s after the load: %w", im.Ref, err)
	}
	if got.ID != target.ConfigDigest {
		return fmt.Errorf("%w: %s has image ID %s after the load, want %s", ErrVerify, im.Ref, got.ID, target.ConfigDigest)
	}
	if target.ManifestDigest == "" {
		target.ManifestDigest = got.ManifestDigest
	}
	return nil
}

// loadPending records the install as pending, then loads img (load). If
// the load fails and the engine does not hold the target, the pending
// record is dropped again; if it does hold it, the next run finishes the
// install.
func (a *Agent) loadPending(ctx context.Context, im *ImageConfig, img v1.Image, previous string, target *Current, via string) error {
	if err := a.checkPlatform(img); err != nil {
		return err
	}
	now := a.clock.Now().UTC()
	if _, err := a.state.Update(im.Name, func(s *ImageState) {
		s.Install = &PendingInstall{Target: *target, Previous: previous, Via: via, Since: now, PreviousCurrent: s.Current}
	}); err != nil {
		return err
	}
	err := a.load(ctx, im, img, target)
	if err != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		defer cancel()
		if errors.Is(err, context.Canceled) {
			// Stopped, not failed: the next run settles it.
			a.settleInstall(sctx, im)
			return err
		}
		return a.rollback(sctx, im, previous, *target, via, err)
	}
	crash(ctx, "loaded")
	return nil
}

// rollback undoes a load that failed (in the engine or in the check after
// it) after it changed what ref names: the engine puts previous back under
// ref and removes what the load added, and the target is recorded as
// failed, not tried again before its backoff (ErrBackoff). A load that
// changed nothing (a full disk while writing) needs neither. It returns
// cause, joined with a failure to roll back.
func (a *Agent) rollback(ctx context.Context, im *ImageConfig, previous string, target Current, via string, cause error) error {
	eng := a.engines[im.Name]
	cur, err := eng.Inspect(ctx, im.Ref)
	changed := (err == nil && cur.ID != previous) || (errors.Is(err, ErrNoImage) && previous != "")
	r, ok := eng.(restorer)
	if !changed || !ok {
		a.settleInstall(ctx, im)
		return cause
	}
	a.log.Warn("the load failed; restoring the previous image", "image", im.Name, "ref", im.Ref, "previous", previous, "err", cause)
	if rerr := r.Restore(ctx, im.Ref, previous); rerr != nil {
		cause = errors.Join(cause, fmt.Errorf("restore %s to %s: %w", im.Ref, previous, rerr))
	} else {
		cause = &restoredError{cause} // reported as rolled_back
	}
	a.settleInstall(ctx, im)
	now := a.clock.Now().UTC()
	if _, err := a.state.Update(im.Name, func(s *ImageState) {
		f := s.Failed
		if f == nil || f.Target != target.ConfigDigest {
			f = &FailedInstall{Target: target.ConfigDigest}
		}
		f.Count++
		f.Via, f.At = via, now
		f.Until = NextCheck(now, im.Policy, f.Count, 0, a.rng).UTC()
		s.Failed = f
	}); err != nil {
		cause = errors.Join(cause, err)
	}
	return cause
}

// restoredError is a failed load whose previous image was put back: its
// install report says rolled_back. Its text and chain are the cause's.
type restoredError struct{ error }

func (e *restoredError) Unwrap() error { return e.error }

// settleTimeout bounds how long a failed load waits for the engine to say
// what it holds.
const settleTimeout = 30 * time.Second

// settleInstall drops the pending install of im unless the engine holds
// its target under the ref (or cannot be asked).
func (a *Agent) settleInstall(ctx context.Context, im *ImageConfig) {
	st, err := a.state.Load()
	if err != nil || st.Images[im.Name] == nil || st.Images[im.Name].Install == nil {
		return
	}
	p := st.Images[im.Name].Install
	cur, err := a.engines[im.Name].Inspect(ctx, im.Ref)
	if (err != nil && !errors.Is(err, ErrNoImage)) || cur.ID == p.Target.ConfigDigest {
		return
	}
	a.clearInstall(im.Name, p.Target.ConfigDigest)
}

// clearInstall drops the pending install of image if it is the one of
// target.
func (a *Agent) clearInstall(image, target string) error {
	_, err := a.state.Update(image, func(s *ImageState) {
		if s.Install != nil && s.Install.Target.ConfigDigest == target {
			s.Install = nil
		}
	})
	return err
}

// resumeInstall finishes the install a killed run left pending: if the
// engine holds its target under the ref, the state records it, the hook
// runs and old images are pruned (res says so); if the engine holds
// anything else, the record is dropped.
func (a *Agent) resumeInstall(ctx context.Context, im *ImageConfig, res *UpdateResult) error {
	st, err := a.state.Load()
	if err != nil {
		return err
	}
	s := st.Images[im.Name]
	if s == nil || s.Install == nil {
		return nil
	}
	p := *s.Install
	if p.RollingBack {
		// Killed while rolling back a failed health check: finish it.
		a.log.Info("finishing a rollback a stopped run began", "image", im.Name, "to", p.Previous, "from", p.Target.ConfigDigest)
		if err := a.restorePrevious(ctx, im, p); err != nil {
			return fmt.Errorf("an interrupted rollback to %s is pending: %w", p.Previous, err)
		}
		res.RolledBack = true
		return nil
	}
	cur, err := a.engines[im.Name].Inspect(ctx, im.Ref)
	if err != nil && !errors.Is(err, ErrNoImage) {
		return fmt.Errorf("an interrupted install of %s is pending: %w", p.Target.ConfigDigest, err)
	}
	if cur.ID != p.Target.ConfigDigest {
		a.log.Info("an interrupted install did not load; dropping it", "image", im.Name, "target", p.Target.ConfigDigest, "engine", cur.ID)
		return a.clearInstall(im.Name, p.Target.ConfigDigest)
	}
	target := p.Target
	target.Ref = im.Ref
	if target.ManifestDigest == "" {
		target.ManifestDigest = cur.ManifestDigest
	}
	a.log.Info("finishing an install a stopped run loaded", "image", im.Name, "from", p.Previous, "to", target.ConfigDigest)
	res.Updated, res.From, res.To, res.Via = true, p.Previous, &target, p.Via
	if err := a.finish(ctx, im, ImageInfo{ID: p.Previous}, target, res); err != nil && !errors.Is(err, ErrUnhealthy) {
		return err
	}
	return nil
}

// crashKey is the context key of a fault-injection function: tests
// stop (kill) a run at the points of an install crash is called with.
type crashKey struct{}

// crash calls the fault-injection function of ctx, if any, with point:
// "loaded" (after the load, before the state records it), "recorded"
// (before the hook) or "hooked" (after the hook, before the pending
// install is cleared).
func crash(ctx context.Context, point string) {
	if f, ok := ctx.Value(crashKey{}).(func(string)); ok {
		f(point)
	}
}

// finish records the new image, runs the hook, clears the pending install
// and prunes. A run killed before the pending install is cleared runs the
// hook again on its next start: hooks run at least once.
func (a *Agent) finish(ctx context.Context, im *ImageConfig, old ImageInfo, target Current, res *UpdateResult) error {
	now := a.clock.Now().UTC()
	if _, err := a.state.Update(im.Name, func(s *ImageState) {
		s.Current = target
		s.LastUpdate = now
		s.LastError = ""
		s.Available = nil
		s.WantedDelta = ""
		s.Failed = nil
		if old.ID != "" && old.ID != target.ConfigDigest {
			prev := []string{old.ID}
			for _, p := range s.Previous {
				if p != old.ID && p != target.ConfigDigest {
					prev = append(prev, p)
				}
			}
			s.Previous = prev
		}
	}); err != nil {
		return err
	}
	a.log.Info("updated", "image", im.Name, "from", old.ID, "to", target.ConfigDigest, "manifest", target.ManifestDigest)
	crash(ctx, "recorded")
	hookErr := runHook(ctx, im, old.ID, target)
	if ctx.Err() != nil {
		// The hook was cut short: the next run runs it again.
		return errors.Join(hookErr, ctx.Err())
	}
	crash(ctx, "hooked")
	if im.Health != nil {
		// A health-checked update: the check must pass too, and if it or
		// the hook fails the previous image comes back.
		if hookErr == nil {
			hookErr = a.checkHealth(ctx, im, old.ID, target)
			if ctx.Err() != nil {
				// Cut short: the next run checks again.
				return errors.Join(hookErr, ctx.Err())
			}
		}
		crash(ctx, "checked")
		if hookErr != nil {
			st, err := a.state.Load()
			if err != nil {
				return errors.Join(hookErr, err)
			}
			p := PendingInstall{Target: target, Previous: old.ID, Via: res.Via}
			if s := st.Images[im.Name]; s != nil && s.Install != nil && s.Install.Target.ConfigDigest == target.ConfigDigest {
				p = *s.Install
			}
			res.Updated = false
			return a.rollbackUnhealthy(ctx, im, p, hookErr, res)
		}
	}
	if err := a.clearInstall(im.Name, target.ConfigDigest); err != nil {
		return errors.Join(hookErr, err)
	}
	if hookErr != nil {
		return hookErr
	}
	pruned, err := a.prune(ctx, im, target.ConfigDigest)
	res.Pruned = pruned
	if err != nil {
		// The update stands; a failed prune is only worth a warning.
		a.log.Warn("prune", "image", im.Name, "err", err)
	}
	return nil
}

// prune removes the images this agent replaced beyond the newest `keep`,
// never the current one nor one a container uses.
func (a *Agent) prune(ctx context.Context, im *ImageConfig, current string) ([]string, error) {
	st, err := a.state.Load()
	if err != nil {
		return nil, err
	}
	s := st.Images[im.Name]
	if s == nil || len(s.Previous) <= *im.Keep {
		return nil, nil
	}
	eng := a.engines[im.Name]
	used, err := eng.InUse(ctx)
	if err != nil {
		return nil, err
	}
	var pruned []string
	var errs []error
	gone := map[string]bool{}
	for i, id := range s.Previous {
		if i < *im.Keep || id == current || used[id] {
			continue
		}
		var err error
		if rr, ok := eng.(retainedRemover); ok {
			err = rr.RemoveRetained(ctx, im.Ref, id)
		} else {
			err = eng.Remove(ctx, id)
		}
		switch {
		case errors.Is(err, ErrNotOurs):
			// Someone else named it since: theirs now.
			a.log.Info("a replaced image has other names; kept", "image", im.Name, "id", id, "err", err)
			gone[id] = true
			continue
		case err != nil && !errors.Is(err, ErrNoImage):
			errs = append(errs, err)
			continue
		}
		gone[id] = true
		pruned = append(pruned, id)
	}
	if len(gone) > 0 {
		if _, err := a.state.Update(im.Name, func(s *ImageState) {
			var keep []string
			for _, id := range s.Previous {
				if !gone[id] {
					keep = append(keep, id)
				}
			}
			s.Previous = keep
		}); err != nil {
			errs = append(errs, err)
		}
	}
	return pruned, errors.Join(errs...)
}

// fullPull loads the whole target (no delta exists and the config allows
// it).
func (a *Agent) fullPull(ctx context.Context, im *ImageConfig, cr *CheckResult, res *UpdateResult) error {
	if cr.Target == nil || cr.Target.Ref == "" {
		return fmt.Errorf("%w: no target reference to pull", ErrNoDelta)
	}
	var opts []layerfs.Option
	if im.Source.Insecure {
		opts = append(opts, layerfs.WithInsecure(true))
	}
	if a.cfg.Platform != "" {
		opts = append(opts, layerfs.WithPlatform(a.cfg.Platform))
	}
	opts = append(opts, layerfs.WithTempDir(a.cfg.WorkDir))
	a.log.Info("pulling the whole image", "image", im.Name, "ref", cr.Target.Ref)
	img, err := layerfs.Open(ctx, cr.Target.Ref, opts...)
	if err != nil {
		return err
	}
	defer img.Close()
	cfg, err := img.ConfigName()
	if err != nil {
		return err
	}
	if cfg.String() != cr.Target.ConfigDigest {
		return fmt.Errorf("%w: %s has config %s, the target is %s", ErrVerify, cr.Target.Ref, cfg, cr.Target.ConfigDigest)
	}
	target := Current{ConfigDigest: cfg.String(), Ref: im.Ref, Serial: cr.Target.Serial, Channel: cr.Target.Channel}
	if d, err := img.Digest(); err == nil && strings.HasPrefix(cr.Target.Ref, "docker://") {
		target.ManifestDigest = d.String()
	}
	if err := a.loadPending(ctx, im, img, cr.Current.ID, &target, "full-pull"); err != nil {
		return err
	}
	res.Updated, res.From, res.To, res.Via = true, cr.Current.ID, &target, "full-pull"
	return a.finish(ctx, im, cr.Current, target, res)
}

// sameOrigin reports whether URLs a and b have the same scheme, host and
// port (RFC 6454), default ports made explicit.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil || ua.Host == "" {
		return false
	}
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Hostname(), ub.Hostname()) && port(ua) == port(ub)
}

// sameDiffIDs reports whether an engine's diff_ids are a manifest's.
func sameDiffIDs(have []string, want []digest.Digest) bool {
	if len(have) != len(want) {
		return false
	}
	for i := range have {
		if have[i] != want[i].String() {
			return false
		}
	}
	return true
}

// checkPlatform refuses (layerfs.ErrPlatformMismatch) an image whose
// config names another OS or architecture than this device's — the
// config's platform, else what the agent was built for: an ARM device
// must not load an amd64 image it cannot run. A config that names none is
// let through.
func (a *Agent) checkPlatform(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	want := a.cfg.Platform
	if want == "" {
		want = runtime.GOOS + "/" + runtime.GOARCH
	}
	p := strings.Split(want, "/")
	if cf.OS == "" || cf.Architecture == "" {
		return nil
	}
	if cf.OS != p[0] || cf.Architecture != p[1] || (len(p) == 3 && cf.Variant != "" && cf.Variant != p[2]) {
		got := cf.OS + "/" + cf.Architecture
		if cf.Variant != "" {
			got += "/" + cf.Variant
		}
		return fmt.Errorf("%w: the target is %s, this device runs %s (platform)", layerfs.ErrPlatformMismatch, got, want)
	}
	return nil
}
