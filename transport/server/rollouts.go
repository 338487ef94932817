package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
	"github.com/skiff-dev/skiff/transport/server/rollout"
)

// ErrRolloutActive: a plain publish of a track that a staged rollout
// governs (409): abort the rollout, or let it complete, first.
var ErrRolloutActive = errors.New("a staged rollout governs this track")

// casRetries is how often an admin's change is tried again when another
// writer changed the rollout between its load and its write.
const casRetries = 8

// rolloutStatus maps the errors of rollouts to HTTP status codes.
func rolloutStatus(err error) int {
	switch {
	case errors.Is(err, fleetdb.ErrNoRollout), errors.Is(err, rollout.ErrNotPinned), errors.Is(err, ErrNotPublished):
		return http.StatusNotFound
	case errors.Is(err, fleetdb.ErrActiveRollout), errors.Is(err, fleetdb.ErrConflict), errors.Is(err, fleetdb.ErrSettled),
		errors.Is(err, rollout.ErrTransition), errors.Is(err, ErrRolloutActive):
		return http.StatusConflict
	case errors.Is(err, rollout.ErrPlan), errors.Is(err, rollout.ErrInvalid):
		return http.StatusBadRequest
	}
	return statusOf(err)
}

// validateLabels checks a check-in's labels (rollout.ValidLabel).
func validateLabels(l map[string]string) error {
	if len(l) > rollout.MaxLabels {
		return fmt.Errorf("%d labels: at most %d: %w", len(l), rollout.MaxLabels, ErrBadRequest)
	}
	for k, v := range l {
		if !rollout.ValidLabel(k, v) {
			return fmt.Errorf("label %q=%q: keys are 1-128 of [A-Za-z0-9._/-] starting alphanumeric, values 1-128 of [A-Za-z0-9._:-]: %w",
				shorten(k, 64), shorten(v, 64), ErrBadRequest)
		}
	}
	return nil
}

// newRolloutID is 128 random bits in hex: unique across tracks, as the
// buckets' salt must be.
func newRolloutID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// rolloutTarget is the record a rollout governing the device's track
// offers it (rollout.TargetFor), and why; ok is false when no rollout
// governs the track (the track's target applies).
func (s *Server) rolloutTarget(req *api.CheckRequest) (rec record, why string, ok bool) {
	if s.rollouts == nil || s.state.rolloutOf(req.Channel, req.Image) == "" {
		// No rollout marked in state.json: no database read. (A rollout
		// another server started is seen when this one re-reads the file,
		// at most a second later.)
		return record{}, "", false
	}
	// No deadline of its own, as recordCheckin: a cancellable context
	// costs the SQLite driver a goroutine per statement.
	st, err := s.rollouts.GoverningRollout(context.Background(), req.Channel, req.Image)
	if err != nil {
		if !errors.Is(err, fleetdb.ErrNoRollout) {
			if n, ok := s.warnOnce.allow("rollout load"); ok {
				s.log.Error("rollout: loading the governing rollout; answering with the track's target", "channel", req.Channel,
					"image", req.Image, "err", err, "suppressed", n)
			}
		}
		return record{}, "", false
	}
	digest, why := rollout.TargetFor(st, req.Device, req.Labels, req.ConfigDigest)
	if digest == "" {
		return record{}, "", false
	}
	rec, ok = s.state.recordFresh(req.Channel, req.Image, digest)
	if !ok {
		if n, ok := s.warnOnce.allow("rollout record " + digest); ok {
			s.log.Error("rollout: the offered image is not in the track's history; answering with the track's target",
				"rollout", st.ID, "config", digest, "suppressed", n)
		}
		return record{}, "", false
	}
	return rec, why, true
}

// governed returns the ID of the rollout governing (channel, image), ""
// if none.
func (s *Server) governed(ctx context.Context, channel, image string) (string, error) {
	if s.rollouts == nil {
		return "", nil
	}
	st, err := s.rollouts.GoverningRollout(ctx, channel, image)
	if errors.Is(err, fleetdb.ErrNoRollout) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return st.ID, nil
}

func (s *Server) handleRolloutCreate(w http.ResponseWriter, r *http.Request) {
	if s.rollouts == nil {
		writeError(w, http.StatusNotImplemented, "this fleet database keeps no rollouts")
		return
	}
	var req api.RolloutRequest
	err := decodeJSON(r, maxBody, &req)
	if err == nil {
		err = checkName("channel", req.Channel)
	}
	if err == nil {
		err = checkName("image", req.Image)
	}
	if err == nil && (req.Ref == "") == (req.ConfigDigest == "") {
		err = fmt.Errorf("give exactly one of ref (an image to publish) and config_digest (an image of the track's history): %w", ErrBadRequest)
	}
	if err == nil && req.ConfigDigest != "" && !digestRe.MatchString(req.ConfigDigest) {
		err = fmt.Errorf("config_digest %q: want sha256:<64 hex digits>: %w", req.ConfigDigest, ErrBadRequest)
	}
	var plan rollout.Plan
	if err == nil {
		plan, err = rollout.PlanFromRequest(req)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx := r.Context()
	if _, ok := s.state.current(req.Channel, req.Image); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s/%s: nothing published; publish a first target (PUT %s%s/%s) before rolling one out",
			req.Channel, req.Image, api.PathTargets, req.Channel, req.Image))
		return
	}
	if id, err := s.governed(ctx, req.Channel, req.Image); err != nil {
		s.log.Error("rollout: loading", "err", err)
		writeError(w, http.StatusInternalServerError, "loading the track's rollout failed (the server log has the details)")
		return
	} else if id != "" {
		writeError(w, http.StatusConflict, fmt.Sprintf("%s/%s: rollout %s governs the track; abort it or let it complete first", req.Channel, req.Image, id))
		return
	}
	rec := record{ConfigDigest: req.ConfigDigest}
	if req.Ref != "" {
		if rec, err = s.inspect(ctx, req.Ref); err != nil {
			s.log.Warn("rollout: opening the target failed", "ref", req.Ref, "err", err)
			writeError(w, statusOf(err), err.Error())
			return
		}
	} else if _, ok := s.state.record(req.Channel, req.Image, req.ConfigDigest); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("%s was never published on %s/%s; give its ref instead", req.ConfigDigest, req.Channel, req.Image))
		return
	}
	id := newRolloutID()
	staged, previous, err := s.state.stage(req.Channel, req.Image, id, rec)
	if err != nil {
		writeError(w, rolloutStatus(err), err.Error())
		return
	}
	st, err := rollout.New(id, req.Channel, req.Image, staged.ConfigDigest, previous.ConfigDigest, plan, time.Now().UTC())
	if err == nil {
		err = s.rollouts.CreateRollout(ctx, st)
	}
	if err != nil {
		if uerr := s.state.unmark(req.Channel, req.Image, id); uerr != nil {
			s.log.Error("rollout: clearing the mark of a rollout not started", "rollout", id, "err", uerr)
		}
		s.log.Warn("rollout: not started", "channel", req.Channel, "image", req.Image, "err", err)
		writeError(w, rolloutStatus(err), err.Error())
		return
	}
	s.rolloutEvent(st, "started", fmt.Sprintf("%s to %s in %s (previous %s)", st.Target, st.Channel+"/"+st.Image, st.Plan, st.Previous))
	// The first wave's devices will ask for previous -> target.
	s.startCompute(previous, staged, true)
	s.advanceRollout(ctx, st.Channel, st.Image)
	if cur, err := s.rollouts.GetRollout(ctx, st.ID); err == nil {
		st = cur
	}
	writeJSON(w, http.StatusCreated, st.API())
}

func rolloutFilter(q url.Values) (fleetdb.RolloutFilter, error) {
	var f fleetdb.RolloutFilter
	for k, v := range q {
		if len(v) != 1 {
			return f, fmt.Errorf("query parameter %q given %d times: %w", k, len(v), ErrBadRequest)
		}
		var err error
		switch val := v[0]; k {
		case "channel":
			f.Channel, err = val, checkName("channel", val)
		case "image":
			f.Image, err = val, checkName("image", val)
		case "status":
			f.Status = rollout.Status(val)
			switch f.Status {
			case rollout.StatusRunning, rollout.StatusPaused, rollout.StatusAborted, rollout.StatusCompleted:
			default:
				err = fmt.Errorf("status %q: want running, paused, aborted or completed: %w", val, ErrBadRequest)
			}
		default:
			err = fmt.Errorf("unknown query parameter %q (channel, image, status): %w", k, ErrBadRequest)
		}
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

func (s *Server) handleRolloutList(w http.ResponseWriter, r *http.Request) {
	if s.rollouts == nil {
		writeError(w, http.StatusNotImplemented, "this fleet database keeps no rollouts")
		return
	}
	f, err := rolloutFilter(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sts, err := s.rollouts.ListRollouts(r.Context(), f)
	if err != nil {
		s.log.Error("rollout: listing", "err", err)
		writeError(w, http.StatusInternalServerError, "listing the rollouts failed (the server log has the details)")
		return
	}
	resp := api.RolloutsResponse{Rollouts: []api.Rollout{}}
	for _, st := range sts {
		resp.Rollouts = append(resp.Rollouts, st.API())
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleRolloutGet(w http.ResponseWriter, r *http.Request) {
	if s.rollouts == nil {
		writeError(w, http.StatusNotImplemented, "this fleet database keeps no rollouts")
		return
	}
	st, err := s.rollouts.GetRollout(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, rolloutStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st.API())
}

// changeRollout loads rollout id, applies edit, and writes it back with
// compare-and-set, loading again when another writer won. edit returns
// the event to log ("" none).
func (s *Server) changeRollout(ctx context.Context, id string, edit func(st *rollout.State) (string, error)) (*rollout.State, error) {
	for range casRetries {
		st, err := s.rollouts.GetRollout(ctx, id)
		if err != nil {
			return nil, err
		}
		old := st.Rev
		ev, err := edit(st)
		if err != nil {
			return nil, err
		}
		if st.Rev == old {
			return st, nil
		}
		err = s.rollouts.UpdateRollout(ctx, st, old)
		if errors.Is(err, fleetdb.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev != "" {
			s.rolloutEvent(st, ev, "")
		}
		if st.Status.Final() {
			s.settleRollout(ctx, st)
		}
		return st, nil
	}
	return nil, fmt.Errorf("rollout %s: changed by others %d times in a row: %w", id, casRetries, fleetdb.ErrConflict)
}

func (s *Server) handleRolloutAction(w http.ResponseWriter, r *http.Request) {
	if s.rollouts == nil {
		writeError(w, http.StatusNotImplemented, "this fleet database keeps no rollouts")
		return
	}
	var edit func(st *rollout.State) (string, error)
	switch action := r.PathValue("action"); action {
	case "pause":
		var req api.RolloutPauseRequest
		if r.ContentLength != 0 {
			if err := decodeJSON(r, maxBody, &req); err != nil {
				writeError(w, http.StatusBadRequest, err.Error())
				return
			}
		}
		if err := checkLabel("reason", req.Reason, 512); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		reason := "paused by an admin"
		if req.Reason != "" {
			reason += ": " + req.Reason
		}
		edit = func(st *rollout.State) (string, error) { return "paused", st.Pause(reason) }
	case "resume":
		edit = func(st *rollout.State) (string, error) { return "resumed", st.Resume() }
	case "abort":
		edit = func(st *rollout.State) (string, error) { return "aborted", st.Abort() }
	case "skip":
		edit = func(st *rollout.State) (string, error) {
			ev, err := st.Skip(time.Now().UTC())
			if err != nil {
				return "", err
			}
			return "skipped: " + ev, nil
		}
	default:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no rollout action %q (pause, resume, abort, skip)", shorten(action, 64)))
		return
	}
	st, err := s.changeRollout(r.Context(), r.PathValue("id"), edit)
	if err != nil {
		writeError(w, rolloutStatus(err), err.Error())
		return
	}
	if st.Status == rollout.StatusRunning {
		s.advanceRollout(r.Context(), st.Channel, st.Image)
		if cur, err := s.rollouts.GetRollout(r.Context(), st.ID); err == nil {
			st = cur
		}
	}
	writeJSON(w, http.StatusOK, st.API())
}

func (s *Server) handleRolloutPin(w http.ResponseWriter, r *http.Request) {
	if s.rollouts == nil {
		writeError(w, http.StatusNotImplemented, "this fleet database keeps no rollouts")
		return
	}
	dev := r.PathValue("device")
	if err := checkLabel("device", dev, maxDeviceName); err != nil || dev == "" {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("device %q: 1-%d bytes without control characters", shorten(dev, 64), maxDeviceName))
		return
	}
	var edit func(st *rollout.State) (string, error)
	if r.Method == http.MethodDelete {
		edit = func(st *rollout.State) (string, error) { return "unpinned " + dev, st.Unpin(dev) }
	} else {
		var req api.RolloutPin
		if err := decodeJSON(r, maxBody, &req); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		if !digestRe.MatchString(req.ConfigDigest) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("config_digest %q: want sha256:<64 hex digits>", req.ConfigDigest))
			return
		}
		edit = func(st *rollout.State) (string, error) {
			if _, ok := s.state.recordFresh(st.Channel, st.Image, req.ConfigDigest); !ok {
				return "", fmt.Errorf("%s was never published on %s/%s: %w", req.ConfigDigest, st.Channel, st.Image, ErrNotPublished)
			}
			return "pinned " + dev + " to " + req.ConfigDigest, st.Pin(dev, req.ConfigDigest)
		}
	}
	st, err := s.changeRollout(r.Context(), r.PathValue("id"), func(st *rollout.State) (string, error) {
		// A settled rollout governs no check-in: its pins would do nothing.
		if g, err := s.rollouts.GoverningRollout(r.Context(), st.Channel, st.Image); err != nil || g.ID != st.ID {
			return "", fmt.Errorf("rollout %s no longer governs %s/%s: %w", st.ID, st.Channel, st.Image, fleetdb.ErrSettled)
		}
		return edit(st)
	})
	if err != nil {
		writeError(w, rolloutStatus(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, st.API())
}

// advanceRollout judges the running rollout of (channel, image) on its
// devices as the inventory knows them (Widen, Tally, Advance) and writes
// the result with compare-and-set; a lost race is dropped, since the
// winner judged the same devices. It also refreshes the rollout's
// metrics, for a paused rollout too.
func (s *Server) advanceRollout(ctx context.Context, channel, image string) {
	if s.rollouts == nil {
		return
	}
	st, err := s.rollouts.ActiveRollout(ctx, channel, image)
	if err != nil {
		if !errors.Is(err, fleetdb.ErrNoRollout) {
			s.log.Error("rollout: loading", "channel", channel, "image", image, "err", err)
		}
		return
	}
	fleet, err := s.rollouts.TrackDevices(ctx, channel, image, st.Target)
	if err != nil {
		s.log.Error("rollout: listing the track's devices", "rollout", st.ID, "err", err)
		return
	}
	old := st.Rev
	st.Widen(fleet)
	_, ev := st.Advance(time.Now().UTC(), st.Tally(fleet))
	if st.Rev != old {
		switch err := s.rollouts.UpdateRollout(ctx, st, old); {
		case errors.Is(err, fleetdb.ErrConflict), errors.Is(err, fleetdb.ErrSettled):
			s.log.Debug("rollout: another writer advanced it first", "rollout", st.ID)
			return
		case err != nil:
			s.log.Error("rollout: writing", "rollout", st.ID, "err", err)
			return
		}
		if ev != "" {
			s.rolloutEvent(st, ev, "")
		}
	}
	s.metrics.observeRollout(st, fleet)
	if st.Status.Final() {
		s.settleRollout(ctx, st)
	}
}

// advanceAfterReport advances the rollout of a track a report was stored
// for, if state.json marks one. Reports arriving together do not each
// count the whole track: while one advance of the track runs, the others
// leave a note and return, and the running one advances once more, seeing
// their reports.
func (s *Server) advanceAfterReport(ctx context.Context, channel, image string) {
	if s.rollouts == nil || s.state.rolloutOf(channel, image) == "" {
		return
	}
	key := channel + "/" + image
	s.advMu.Lock()
	if s.advRunning == nil {
		s.advRunning, s.advAgain = map[string]bool{}, map[string]bool{}
	}
	if s.advRunning[key] {
		s.advAgain[key] = true
		s.advMu.Unlock()
		return
	}
	s.advRunning[key] = true
	s.advMu.Unlock()
	for {
		s.advanceRollout(ctx, channel, image)
		s.advMu.Lock()
		if !s.advAgain[key] {
			delete(s.advRunning, key)
			s.advMu.Unlock()
			return
		}
		delete(s.advAgain, key)
		s.advMu.Unlock()
	}
}

// settleRollout writes a final rollout's outcome to the targets (state
// settle) and marks it settled; until then it governs its track's
// check-ins. A failure is logged; the next tick tries again.
func (s *Server) settleRollout(ctx context.Context, st *rollout.State) {
	rollback := st.Status == rollout.StatusAborted
	changed, err := s.state.settle(st.Channel, st.Image, st.ID, st.Target, st.Previous, rollback)
	if err != nil {
		s.log.Error("rollout: settling", "rollout", st.ID, "err", err)
		return
	}
	if err := s.rollouts.SettleRollout(ctx, st.ID); err != nil {
		s.log.Error("rollout: marking settled", "rollout", st.ID, "err", err)
		return
	}
	s.metrics.observeRollout(st, nil)
	cur, _ := s.state.current(st.Channel, st.Image)
	if changed {
		s.log.Info("rollout settled", "rollout", st.ID, "status", st.Status, "channel", st.Channel, "image", st.Image,
			"target", cur.ConfigDigest, "serial", cur.Serial)
	}
}

// rolloutTick advances every running rollout and settles final ones,
// every cfg.RolloutTick, until ctx ends.
func (s *Server) rolloutTick(ctx context.Context) {
	t := time.NewTicker(s.cfg.RolloutTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.rolloutRound(ctx)
	}
}

// rolloutRound is one tick: advance or settle each unsettled rollout.
func (s *Server) rolloutRound(ctx context.Context) {
	sts, err := s.rollouts.UnsettledRollouts(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Error("rollout: listing", "err", err)
		}
		return
	}
	for _, st := range sts {
		if st.Status.Final() {
			s.settleRollout(ctx, st)
			continue
		}
		s.advanceRollout(ctx, st.Channel, st.Image)
	}
}

// rolloutEvent logs an event of a rollout and counts it.
func (s *Server) rolloutEvent(st *rollout.State, event, detail string) {
	kind := eventKind(event)
	s.metrics.rolloutEvents.WithLabelValues(kind).Inc()
	attrs := []any{"rollout", st.ID, "channel", st.Channel, "image", st.Image, "status", st.Status, "wave", st.Wave + 1, "event", event}
	if detail != "" {
		attrs = append(attrs, "detail", detail)
	}
	if kind == "paused" && strings.HasPrefix(event, "paused:") {
		s.log.Warn("rollout paused", attrs...)
		return
	}
	s.log.Info("rollout "+kind, attrs...)
}

// eventKind is the "event" label of skiff_rollout_events_total for an
// event text of rollout.State (Advance, Skip) or of the handlers.
func eventKind(ev string) string {
	switch {
	case strings.HasPrefix(ev, "skipped"):
		return "skipped"
	case strings.HasPrefix(ev, "paused"):
		return "paused"
	case strings.HasPrefix(ev, "completed"):
		return "completed"
	case strings.HasPrefix(ev, "pinned"):
		return "pinned"
	case strings.HasPrefix(ev, "unpinned"):
		return "unpinned"
	case strings.Contains(ev, "; soaking until"):
		return "soaking"
	case strings.Contains(ev, " started: "):
		return "wave_started"
	}
	switch ev {
	case "started", "resumed", "aborted":
		return ev
	}
	return "other"
}
