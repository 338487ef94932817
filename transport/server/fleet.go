package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
	"unicode"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

// Bounds of what devices report.
const (
	maxLabel       = 128  // agent_version, platform
	maxDeviceName  = 256  // as in a check
	maxReportError = 4096 // a report's error text
)

var reportIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// checkLabel refuses a free-form label longer than max or holding
// control characters (it ends up in tables and logs).
func checkLabel(what, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%s longer than %d bytes: %w", what, max, ErrBadRequest)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s holds a control character: %w", what, ErrBadRequest)
		}
	}
	return nil
}

// recordCheckin puts a validated check-in into the inventory. A failure
// is logged (throttled), not returned: the check-in is answered anyway.
func (s *Server) recordCheckin(ctx context.Context, req *api.CheckRequest) {
	if req.Device == "" {
		return // nothing to key the inventory by
	}
	// Not cancelled with the request (the answer is sent already), and no
	// deadline of its own: a cancellable context costs the SQLite driver
	// a goroutine per statement. SQLite's busy timeout, PostgreSQL's
	// statement_timeout (fleetdb.PostgresStatementTimeout) bound the
	// wait for a lock.
	err := s.fleet.RecordCheckin(context.WithoutCancel(ctx), fleetdb.Checkin{
		Device: req.Device, Channel: req.Channel, Image: req.Image, ConfigDigest: req.ConfigDigest,
		AgentVersion: req.AgentVersion, Platform: req.Platform, Labels: req.Labels, Time: time.Now().UTC(),
	})
	if err != nil {
		if n, ok := s.warnOnce.allow("fleetdb checkin"); ok {
			s.log.Error("inventory: recording a check-in", "err", err, "suppressed", n)
		}
	}
}

func validateReport(r *api.Report) error {
	if !reportIDRe.MatchString(r.ID) {
		return fmt.Errorf("id %q: want 32 lowercase hex digits: %w", r.ID, ErrBadRequest)
	}
	if r.Device == "" {
		return fmt.Errorf("device: required: %w", ErrBadRequest)
	}
	if err := checkLabel("device", r.Device, maxDeviceName); err != nil {
		return err
	}
	if err := checkName("channel", r.Channel); err != nil {
		return err
	}
	if err := checkName("image", r.Image); err != nil {
		return err
	}
	for what, d := range map[string]string{"from_config_digest": r.FromDigest, "to_config_digest": r.ToDigest} {
		if d != "" && !digestRe.MatchString(d) {
			return fmt.Errorf("%s %q: want sha256:<64 hex digits> or empty: %w", what, d, ErrBadRequest)
		}
	}
	switch r.Result {
	case api.ResultInstalled, api.ResultRolledBack, api.ResultFailed:
	default:
		return fmt.Errorf("result %q: want %s, %s or %s: %w", r.Result, api.ResultInstalled, api.ResultRolledBack, api.ResultFailed, ErrBadRequest)
	}
	if len(r.Error) > maxReportError {
		return fmt.Errorf("error text longer than %d bytes: %w", maxReportError, ErrBadRequest)
	}
	if r.Bytes < 0 || r.DurationMS < 0 {
		return fmt.Errorf("negative bytes_downloaded or duration_ms: %w", ErrBadRequest)
	}
	if r.Time.IsZero() {
		return fmt.Errorf("time: required: %w", ErrBadRequest)
	}
	if err := checkLabel("agent_version", r.AgentVersion, maxLabel); err != nil {
		return err
	}
	return checkLabel("platform", r.Platform, maxLabel)
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	var rep api.Report
	err := decodeJSON(r, maxBody, &rep)
	if err == nil {
		err = validateReport(&rep)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !scopeAllows(scopeOf(r.Context()), rep.Channel, rep.Image) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("this device token may not report for channel %q, image %q", rep.Channel, rep.Image))
		return
	}
	if err := s.certAllows(r, rep.Device); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	added, err := s.fleet.AddReport(r.Context(), rep, time.Now().UTC())
	if err != nil {
		s.log.Error("inventory: storing a report", "err", err)
		writeError(w, http.StatusInternalServerError, "storing the report failed (the server log has the details)")
		return
	}
	if added {
		s.metrics.reports.WithLabelValues(rep.Result).Inc()
		s.log.Info("report", "device", shorten(rep.Device, 64), "channel", rep.Channel, "image", rep.Image,
			"result", rep.Result, "to", rep.ToDigest, "id", rep.ID)
	}
	writeJSON(w, http.StatusOK, api.ReportResponse{ID: rep.ID, Duplicate: !added})
	if added {
		// After the answer: a staged rollout of the track may move on
		// (or pause) with this report.
		s.advanceAfterReport(context.WithoutCancel(r.Context()), rep.Channel, rep.Image)
	}
}

// devicesFilter parses the query of GET /v1/devices; an unknown
// parameter is refused (a typo must not list the whole fleet).
func devicesFilter(q url.Values, now time.Time) (fleetdb.Filter, error) {
	var f fleetdb.Filter
	for k, v := range q {
		if len(v) != 1 {
			return f, fmt.Errorf("query parameter %q given %d times: %w", k, len(v), ErrBadRequest)
		}
		val := v[0]
		var err error
		switch k {
		case "channel":
			f.Channel, err = val, checkName("channel", val)
		case "image":
			f.Image, err = val, checkName("image", val)
		case "config_digest":
			f.ConfigDigest = val
			if !digestRe.MatchString(val) {
				err = fmt.Errorf("config_digest %q: want sha256:<64 hex digits>: %w", val, ErrBadRequest)
			}
		case "result":
			f.Result = val
			switch val {
			case api.ResultInstalled, api.ResultRolledBack, api.ResultFailed:
			default:
				err = fmt.Errorf("result %q: want %s, %s or %s: %w", val, api.ResultInstalled, api.ResultRolledBack, api.ResultFailed, ErrBadRequest)
			}
		case "stale":
			d, perr := time.ParseDuration(val)
			if perr != nil || d <= 0 {
				err = fmt.Errorf("stale %q: want a positive duration such as 24h: %w", val, ErrBadRequest)
			}
			f.SeenBefore = now.Add(-d)
		case "limit":
			n, perr := strconv.Atoi(val)
			if perr != nil || n < 1 || n > fleetdb.MaxLimit {
				err = fmt.Errorf("limit %q: want 1 to %d: %w", val, fleetdb.MaxLimit, ErrBadRequest)
			}
			f.Limit = n
		case "after":
			f.After, err = val, checkLabel("after", val, maxDeviceName)
		default:
			err = fmt.Errorf("unknown query parameter %q (channel, image, config_digest, result, stale, limit, after): %w", k, ErrBadRequest)
		}
		if err != nil {
			return f, err
		}
	}
	return f, nil
}

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	f, err := devicesFilter(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	devs, next, err := s.fleet.Devices(r.Context(), f)
	if err != nil {
		s.log.Error("inventory: listing devices", "err", err)
		writeError(w, http.StatusInternalServerError, "listing the devices failed (the server log has the details)")
		return
	}
	if devs == nil {
		devs = []api.Device{}
	}
	writeJSON(w, http.StatusOK, api.DevicesResponse{Devices: devs, Next: next})
}
