package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

// maxBody bounds request bodies (a check with a few hundred diff_ids is a
// few tens of KiB; distribution batches notification events).
const (
	maxBody       = 1 << 20
	maxNotifyBody = 8 << 20
	maxDiffIDs    = 4096
)

// nameRe is what a channel or logical image name may be.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(api.Error{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

// statusOf maps an error to an HTTP status code.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrBadRequest), errors.Is(err, layerfs.ErrBadReference):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotPublished):
		return http.StatusNotFound
	case errors.Is(err, ErrRolloutActive):
		return http.StatusConflict
	case errors.Is(err, layerfs.ErrImageNotFound), errors.Is(err, layerfs.ErrAmbiguous),
		errors.Is(err, layerfs.ErrNotImage), errors.Is(err, layerfs.ErrUnsafeArchive):
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// decodeJSON reads one JSON value of at most limit bytes into v, refusing
// unknown fields and trailing data.
func decodeJSON(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("reading body: %v: %w", err, ErrBadRequest)
	}
	if int64(len(body)) > limit {
		return fmt.Errorf("body larger than %d bytes: %w", limit, ErrBadRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body is not a valid %T: %v: %w", v, err, ErrBadRequest)
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON body: %w", ErrBadRequest)
	}
	return nil
}

func checkName(what, s string) error {
	if !nameRe.MatchString(s) {
		return fmt.Errorf("%s %q: must be 1-128 of [A-Za-z0-9._-], starting alphanumeric: %w", what, s, ErrBadRequest)
	}
	return nil
}

func validateCheck(req *api.CheckRequest) error {
	if err := checkName("channel", req.Channel); err != nil {
		return err
	}
	if err := checkName("image", req.Image); err != nil {
		return err
	}
	if req.ConfigDigest != "" && !digestRe.MatchString(req.ConfigDigest) {
		return fmt.Errorf("config_digest %q: want sha256:<64 hex digits> or empty: %w", req.ConfigDigest, ErrBadRequest)
	}
	if req.ConfigDigest != "" && len(req.DiffIDs) == 0 {
		// Without them the server could not check that the device runs
		// the image it names.
		return fmt.Errorf("diff_ids: required with a config_digest: %w", ErrBadRequest)
	}
	if len(req.DiffIDs) > maxDiffIDs {
		return fmt.Errorf("%d diff_ids: at most %d: %w", len(req.DiffIDs), maxDiffIDs, ErrBadRequest)
	}
	for i, d := range req.DiffIDs {
		if !digestRe.MatchString(d) {
			return fmt.Errorf("diff_ids[%d] %q: want sha256:<64 hex digits>: %w", i, d, ErrBadRequest)
		}
	}
	if len(req.Device) > 256 {
		return fmt.Errorf("device name longer than 256 bytes: %w", ErrBadRequest)
	}
	if err := checkLabel("agent_version", req.AgentVersion, maxLabel); err != nil {
		return err
	}
	if err := validateLabels(req.Labels); err != nil {
		return err
	}
	return checkLabel("platform", req.Platform, maxLabel)
}

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request) {
	var req api.CheckRequest
	if err := decodeJSON(r, maxBody, &req); err != nil {
		s.metrics.checks.WithLabelValues(resultBadRequest).Inc()
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !scopeAllows(scopeOf(r.Context()), req.Channel, req.Image) {
		s.metrics.checks.WithLabelValues(resultForbidden).Inc()
		writeError(w, http.StatusForbidden, fmt.Sprintf("this device token may not check channel %q, image %q", req.Channel, req.Image))
		return
	}
	if err := s.certAllows(r, req.Device); err != nil {
		s.metrics.checks.WithLabelValues(resultForbidden).Inc()
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	resp, result, err := s.check(&req)
	s.metrics.checks.WithLabelValues(result).Inc()
	if result != resultBadRequest {
		// After the answer is on its way: the device does not wait for
		// the inventory.
		defer s.recordCheckin(r.Context(), &req)
	}
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	s.log.Debug("check", "device", req.Device, "channel", req.Channel, "image", req.Image, "running", req.ConfigDigest, "result", result)
	if resp.Pending {
		w.Header().Set("Retry-After", strconv.Itoa(resp.RetryAfter))
	}
	writeJSON(w, http.StatusOK, resp)
	http.NewResponseController(w).Flush()
}

// check answers one check-in and names its result for the metrics.
func (s *Server) check(req *api.CheckRequest) (api.CheckResponse, string, error) {
	if err := validateCheck(req); err != nil {
		return api.CheckResponse{}, resultBadRequest, err
	}
	if err := s.state.refresh(); err != nil {
		s.log.Error("reading state", "err", err)
	}
	target, ok := s.state.current(req.Channel, req.Image)
	if !ok {
		return api.CheckResponse{}, resultNoTarget, fmt.Errorf("channel %q, image %q: %w", req.Channel, req.Image, ErrNotPublished)
	}
	// The target record for this device: the track's, or the one a staged
	// rollout of the track offers it. Everything below (the delta from the
	// device's base) is about that record.
	if rec, why, ok := s.rolloutTarget(req); ok {
		target = rec
		s.log.Debug("check: rollout", "device", shorten(req.Device, 64), "config", rec.ConfigDigest, "why", why)
	}
	resp := api.CheckResponse{Target: target.deviceTarget()}
	if req.ConfigDigest == target.ConfigDigest {
		return resp, resultCurrent, nil
	}
	resp.Update = true
	base, ok := s.state.base(req.Channel, req.Image, req.ConfigDigest, target.ConfigDigest)
	if !ok {
		return resp, resultUnknownBase, nil
	}
	if len(req.DiffIDs) > 0 && !slices.Equal(req.DiffIDs, base.DiffIDs) {
		// Same config digest, other layers: the device reports something
		// the server cannot trust to be the base.
		if n, ok := s.warnOnce.allow("diff_ids " + req.ConfigDigest); ok {
			s.log.Warn("check: diff_ids differ from the published image with that config digest; answering without a delta",
				"device", shorten(req.Device, 64), "config", req.ConfigDigest, "suppressed", n)
		}
		return resp, resultUnknownBase, nil
	}
	idx, ok, err := s.cache.lookup(base.ConfigDigest, target.ConfigDigest)
	if err != nil {
		s.log.Error("reading pair index", "base", base.ConfigDigest, "target", target.ConfigDigest, "err", err)
	}
	if ok {
		resp.Delta = s.deltaOf(idx)
		return resp, resultDelta, nil
	}
	if f, ok := s.failed(base.ConfigDigest, target.ConfigDigest); ok {
		resp.Error = deviceError(f)
		return resp, resultFailed, nil
	}
	s.startCompute(base, target, false)
	resp.Pending = true
	resp.RetryAfter = int((s.cfg.RetryAfter + time.Second - 1) / time.Second)
	return resp, resultPending, nil
}

func (s *Server) deltaOf(idx pairIndex) *api.Delta {
	return &api.Delta{URL: s.cfg.PublicURL + api.PathDeltas + idx.Digest, Digest: idx.Digest, Size: idx.Size}
}

func (s *Server) handleDelta(w http.ResponseWriter, r *http.Request) {
	d := r.PathValue("digest")
	if !digestRe.MatchString(d) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("delta digest %q: want sha256:<64 lowercase hex digits>", d))
		return
	}
	f, err := os.Open(s.cache.deltaPath(d))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			writeError(w, http.StatusNotFound, "no delta "+d)
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	touch(f.Name(), fi, time.Now())
	w.Header().Set("ETag", `"`+d+`"`)
	w.Header().Set("Docker-Content-Digest", d)
	w.Header().Set("Content-Type", "application/octet-stream")
	// Content-addressed: the bytes behind this URL never change. Shared
	// caches may keep them only where the operator put one in front
	// (PublicURL): otherwise the answer is behind a device token.
	if s.cfg.PublicURL != "" {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	}
	if n := rangeCount(r.Header.Get("Range")); n > maxRanges {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", fi.Size()))
		writeError(w, http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("%d ranges in one request: at most %d", n, maxRanges))
		return
	}
	cw := &countingResponse{ResponseWriter: w}
	http.ServeContent(cw, r, "", fi.ModTime(), f)
	s.metrics.servedBytes.Add(float64(cw.n))
}

type countingResponse struct {
	http.ResponseWriter
	n int64
}

func (c *countingResponse) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countingResponse) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (s *Server) handlePublish(w http.ResponseWriter, r *http.Request) {
	channel, image := r.PathValue("channel"), r.PathValue("image")
	var req api.PublishRequest
	err := decodeJSON(r, maxBody, &req)
	if err == nil {
		err = checkName("channel", channel)
	}
	if err == nil {
		err = checkName("image", image)
	}
	if err == nil && req.Ref == "" {
		err = fmt.Errorf("ref is empty: %w", ErrBadRequest)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	rec, err := s.publish(r.Context(), channel, image, req.Ref)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rec.target())
}

// maxRanges is the most byte ranges one delta request may ask for: a
// resuming device asks for one; thousands of tiny ranges would make the
// multipart answer many times the delta (Range amplification).
const maxRanges = 4

// rangeCount is the number of ranges of a Range header value (0 if none).
func rangeCount(h string) int {
	if h == "" {
		return 0
	}
	return strings.Count(h, ",") + 1
}

// deviceError is what a device is told of a failed computation: the
// deadline, or that a published image is gone, but no server-side path or
// reference (the log has the whole error).
func deviceError(err error) string {
	switch {
	case errors.Is(err, errComputeTimeout):
		return err.Error()
	case errors.Is(err, ErrImageChanged):
		return "computing the delta failed: a published image changed since it was published (the server log has the details)"
	case errors.Is(err, layerfs.ErrImageNotFound), errors.Is(err, layerfs.ErrNotImage):
		return "computing the delta failed: a published image is no longer where it was published (the server log has the details)"
	}
	return "computing the delta failed (the server log has the details)"
}

// shorten cuts a caller-chosen string for the log.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// throttle lets a log line of one key through at most once per every,
// counting the ones it held back: devices choose what they send, and one
// must not fill the server's log.
type throttle struct {
	every time.Duration
	mu    sync.Mutex
	last  map[string]time.Time
	held  map[string]int
}

// allow reports whether key may be logged now, and how many of its lines
// were held back since the last one.
func (t *throttle) allow(key string) (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last, t.held = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if l, ok := t.last[key]; ok && now.Sub(l) < t.every {
		t.held[key]++
		return 0, false
	}
	if len(t.last) > 10000 { // bounded: forget all, keep logging
		t.last, t.held = map[string]time.Time{}, map[string]int{}
	}
	n := t.held[key]
	t.last[key], t.held[key] = now, 0
	return n, true
}
