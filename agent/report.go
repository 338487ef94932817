package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/buildinfo"
	"github.com/skiff-dev/skiff/transport/api"
)

// ReportsDir is the report queue's directory in the state directory.
const ReportsDir = "reports"

// MaxQueuedReports bounds the report queue: past it the oldest reports
// are dropped, with a warning.
const MaxQueuedReports = 1000

// maxReportError is how much of an error a report carries.
const maxReportError = 2048

// reportTimeLayout names queued reports so that names sort by time.
const reportTimeLayout = "20060102T150405.000000000Z"

// agentVersion and agentPlatform are what check-ins and reports say of
// this agent: its release and the device's OS/ARCH[/VARIANT] (the
// config's platform, else what the binary was built for).
func (a *Agent) agentVersion() string { return buildinfo.Get().Release }

func (a *Agent) agentPlatform() string {
	if a.cfg.Platform != "" {
		return a.cfg.Platform
	}
	return buildinfo.Get().Platform
}

func newReportID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func (a *Agent) reportDir() string { return filepath.Join(a.cfg.StateDir, ReportsDir) }

// reportAttempt queues the report of an install attempt of im that
// ended with res and err, and began at started (zero: unknown, a resumed
// install). Only images of a rollout server report; an attempt cut short
// by a stop is no attempt (the next run resumes it), nor is one that
// changed nothing and failed nothing.
func (a *Agent) reportAttempt(ctx context.Context, im *ImageConfig, from string, to *Current, res *UpdateResult, err error, started time.Time) {
	if !im.Source.IsServer() || errors.Is(err, context.Canceled) || (err != nil && ctx.Err() != nil) {
		return
	}
	result := api.ResultInstalled
	switch {
	case res != nil && res.RolledBack, errors.As(err, new(*restoredError)):
		result = api.ResultRolledBack
	case err != nil:
		result = api.ResultFailed
	case res == nil || !res.Updated:
		return
	}
	now := a.clock.Now().UTC()
	r := api.Report{
		ID: newReportID(), Device: a.cfg.Device, Channel: im.Source.Channel, Image: im.Name,
		FromDigest: from, Result: result,
		AgentVersion: a.agentVersion(), Platform: a.agentPlatform(), Time: now,
	}
	if to != nil {
		r.ToDigest = to.ConfigDigest
	}
	if res != nil {
		r.Bytes = res.DeltaBytes
		if res.To != nil && r.ToDigest == "" {
			r.ToDigest = res.To.ConfigDigest
		}
	}
	if !started.IsZero() {
		r.DurationMS = max(now.Sub(started).Milliseconds(), 0)
	}
	if err != nil {
		r.Error = err.Error()
		if len(r.Error) > maxReportError {
			r.Error = r.Error[:maxReportError]
		}
	}
	if qerr := a.queueReport(r); qerr != nil {
		a.log.Warn("cannot queue the install report", "image", im.Name, "err", qerr)
	}
}

// queueReport writes r to the queue atomically (temporary file, fsync,
// rename), then drops the oldest reports past MaxQueuedReports.
func (a *Agent) queueReport(r api.Report) error {
	dir := a.reportDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	name := r.Time.UTC().Format(reportTimeLayout) + "-" + r.ID + ".json"
	if err := atomicfile.WriteFile(filepath.Join(dir, name), append(b, '\n')); err != nil {
		return err
	}
	names, err := a.queuedReports()
	if err != nil {
		return err
	}
	max := a.maxReports
	if max <= 0 {
		max = MaxQueuedReports
	}
	if over := len(names) - max; over > 0 {
		for _, n := range names[:over] {
			os.Remove(filepath.Join(dir, n))
		}
		a.log.Warn("the report queue is full: dropped the oldest reports", "dropped", over, "kept", max, "dir", dir)
	}
	return nil
}

// queuedReports lists the queue's reports, oldest first (temporary files
// of a write in progress excluded).
func (a *Agent) queuedReports() ([]string, error) {
	ents, err := os.ReadDir(a.reportDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); e.Type().IsRegular() && !strings.HasPrefix(n, ".") && strings.HasSuffix(n, ".json") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// SendReports sends the queued reports, oldest first, each to the server
// of its image, and deletes each the server acknowledged (2xx) or refused
// as malformed (400, 413, 422: sending it again cannot help). Anything
// else keeps it queued for the next try, and the other reports of that
// server wait too. It returns how many were sent.
func (a *Agent) SendReports(ctx context.Context) (int, error) {
	names, err := a.queuedReports()
	if err != nil {
		return 0, err
	}
	sent := 0
	down := map[string]error{} // servers that failed this round
	var errs []error
	for _, n := range names {
		if ctx.Err() != nil {
			return sent, ctx.Err()
		}
		path := filepath.Join(a.reportDir(), n)
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			continue // sent by another process meanwhile
		}
		var r api.Report
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err != nil {
			a.log.Warn("dropping an unreadable queued report", "file", path, "err", err)
			os.Remove(path)
			continue
		}
		im, err := a.cfg.Image(r.Image)
		if err != nil || !im.Source.IsServer() {
			a.log.Warn("dropping a queued report of an image no longer served by a rollout server", "file", path, "image", r.Image)
			os.Remove(path)
			continue
		}
		srv := im.Source.Server
		if down[srv] != nil {
			continue
		}
		code, err := a.postReport(ctx, im, b)
		switch {
		case err != nil:
			down[srv] = err
			errs = append(errs, err)
		case code/100 == 2:
			os.Remove(path)
			sent++
		case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge || code == http.StatusUnprocessableEntity:
			a.log.Warn("the server refused a report; dropping it", "file", path, "status", code)
			os.Remove(path)
		default:
			down[srv] = fmt.Errorf("%w: POST %s%s: status %d", ErrServer, srv, api.PathReports, code)
			errs = append(errs, down[srv])
		}
	}
	return sent, errors.Join(errs...)
}

// postReport sends one report; err is a failure to get any answer.
func (a *Agent) postReport(ctx context.Context, im *ImageConfig, body []byte) (int, error) {
	hdr, err := a.bearer(im.Source)
	if err != nil {
		return 0, err
	}
	limit := a.cfg.Network.ResponseTimeout.D()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	u := im.Source.Server + api.PathReports
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrServer, err)
	}
	req.Header = hdr
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.serverClient(im).Do(req) // the server's CA and client certificate
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", u, timedOut(parent, err, limit))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxServerResponse))
	return resp.StatusCode, nil
}

// flushReports sends what is queued, logging what could not be sent (it
// stays queued).
func (a *Agent) flushReports(ctx context.Context) {
	if n, err := a.SendReports(ctx); err != nil && ctx.Err() == nil {
		a.log.Warn("install reports not sent yet; they stay queued", "sent", n, "err", err)
	} else if n > 0 {
		a.log.Debug("install reports sent", "sent", n)
	}
}
