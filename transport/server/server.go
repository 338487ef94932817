package server

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

// Sentinel errors of the server. Handlers map them to HTTP status codes.
var (
	// ErrConfig: New was given an unusable Config.
	ErrConfig = errors.New("bad server config")
	// ErrBadRequest: a request body, path or parameter is malformed (400).
	ErrBadRequest = errors.New("bad request")
	// ErrNotPublished: nothing is published for the channel/image (404).
	ErrNotPublished = errors.New("no target published")
	// ErrImageChanged: a published image no longer resolves to the config
	// digest recorded when it was published (a moved tag in an OCI layout,
	// a re-saved archive), so it cannot serve as a base or target.
	ErrImageChanged = errors.New("published image changed")
	// ErrCorruptState: state.json does not parse or is inconsistent.
	ErrCorruptState = errors.New("corrupt server state")
)

// Config configures a Server.
type Config struct {
	// StateDir holds state.json, the published targets and their history
	// (required).
	StateDir string
	// CacheDir holds the computed deltas and the pair index (required).
	CacheDir string
	// FleetDB names the database of the device inventory and install
	// reports (fleetdb.Open): "sqlite:PATH" or "postgres://…" (which
	// several servers share); default "sqlite:StateDir/fleet.db".
	FleetDB string
	// AdminTokens may publish (and do what device tokens do);
	// DeviceTokens may check in and download deltas. A role with no
	// token is refused to everyone. Empty strings are ignored.
	AdminTokens, DeviceTokens []string
	// DeviceScopes restricts device tokens to some (channel, image)
	// pairs: token -> patterns "CHANNEL/IMAGE", either part "*" for any.
	// A device token without an entry may check any pair.
	DeviceScopes map[string][]string
	// Logger receives structured logs (default: slog.Default()).
	Logger *slog.Logger
	// RefOptions are passed to layerfs.Open for every image (e.g.
	// layerfs.WithInsecure(true)).
	RefOptions []layerfs.Option
	// DiffOptions configure delta.Diff; the zero value means
	// delta.DefaultOptions(), what `skiff diff` uses by default. Manifest
	// is set per target by transport.CarriesManifest, as `skiff diff
	// --manifest auto` does; WorkDir is always a directory under
	// CacheDir/tmp.
	DiffOptions delta.Options
	// PublicURL, if set, prefixes Delta.URL (e.g. a CDN that mirrors
	// /v1/deltas/); otherwise Delta.URL is an absolute path on this server.
	PublicURL string
	// MaxConcurrentDiffs bounds how many deltas are computed at once
	// (default 2); more pairs wait their turn.
	MaxConcurrentDiffs int
	// MaxQueuedDiffs bounds the pairs computing or waiting to (default
	// 64): a check of one more pair is answered pending without queuing
	// it, and its device asks again after retry_after. Each queued pair is
	// one goroutine, however many devices wait for it.
	MaxQueuedDiffs int
	// ComputeTimeout is the deadline of one delta computation (default 30
	// minutes; a stalled registry then frees its slot): a pair that
	// misses it fails as any computation does, for FailureTTL.
	ComputeTimeout time.Duration
	// AbandonAfter cancels a computation that devices started when none
	// has asked for it for this long (default 10 × RetryAfter, at least 2
	// minutes); one started by a publish runs to its end.
	AbandonAfter time.Duration
	// RetryAfter is what a check answers while a delta is being computed
	// (default 5s; rounded up to whole seconds).
	RetryAfter time.Duration
	// FailureTTL is how long a failed computation is reported before a
	// check tries it again (default 5 minutes).
	FailureTTL time.Duration
	// Signers sign every delta the server computes (ed25519 keys, see
	// delta/sign); none: unsigned deltas, which devices refuse by default.
	// A cached delta not signed by exactly these keys is computed again.
	Signers []crypto.Signer
	// CacheTTL is how long a cached delta whose target is no longer the
	// current target of any channel's image is kept after it was last
	// served (default 7 days; negative: forever). Deltas to current
	// targets are always kept. The cache is swept at start and hourly.
	CacheTTL time.Duration
	// DeviceIDFromCert: check-ins and reports must come with a TLS client
	// certificate whose subject common name is the device ID they name
	// (403 otherwise), so that a device can speak only for itself. For a
	// server that verifies client certificates (skiff serve --client-ca);
	// admin requests are not affected.
	DeviceIDFromCert bool
	// ReportRetention is how long install reports are kept after the
	// server received them (default 90 days; negative: forever). The
	// inventory keeps each device's last report whatever its age; the
	// reports table is pruned at start and hourly.
	ReportRetention time.Duration
	// RolloutTick is how often the server advances the staged rollouts
	// (and settles finished ones) besides after each install report
	// (default 10s; negative: only after reports and admin actions).
	RolloutTick time.Duration
}

// Server is the rollout server; it is an http.Handler. Close it to stop
// the background delta computations.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	admin   [][sha256.Size]byte
	device  [][sha256.Size]byte
	scopes  [][]string // of device[i]; nil: any (channel, image)
	state   *state
	cache   *cache
	fleet   fleetdb.Store
	metrics *metrics
	diffs   *semaphore.Weighted

	// rollouts is the fleet database's rollout store; nil if the backend
	// keeps none (the rollout routes answer 501).
	rollouts fleetdb.RolloutStore

	warnOnce throttle // of log lines devices can cause

	flightMu sync.Mutex
	flights  map[string]*flight // pairs computing or waiting to, by pairKey

	ctx    context.Context // canceled by Close; parent of background work
	cancel context.CancelFunc
	bgMu   sync.Mutex
	closed bool
	bg     sync.WaitGroup

	failMu   sync.Mutex
	failures map[string]failure // by pairKey

	// advMu guards the rollout advances running after reports, by track:
	// one at a time per track, and one more after it if reports came in
	// meanwhile (advanceAfterReport). The maps are made on first use.
	advMu      sync.Mutex
	advRunning map[string]bool
	advAgain   map[string]bool

	closeOnce sync.Once
	fleetErr  error
}

type failure struct {
	err  error
	when time.Time
}

var _ http.Handler = (*Server)(nil)

// New opens (or creates) the state and cache directories and returns a
// Server.
func New(cfg Config) (*Server, error) {
	if cfg.StateDir == "" || cfg.CacheDir == "" {
		return nil, fmt.Errorf("state dir %q and cache dir %q are both required: %w", cfg.StateDir, cfg.CacheDir, ErrConfig)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConcurrentDiffs == 0 {
		cfg.MaxConcurrentDiffs = 2
	}
	if cfg.MaxConcurrentDiffs < 0 {
		return nil, fmt.Errorf("MaxConcurrentDiffs %d: must be at least 1: %w", cfg.MaxConcurrentDiffs, ErrConfig)
	}
	if cfg.MaxQueuedDiffs == 0 {
		cfg.MaxQueuedDiffs = 64
	}
	if cfg.MaxQueuedDiffs < 0 {
		return nil, fmt.Errorf("MaxQueuedDiffs %d: must be at least 1: %w", cfg.MaxQueuedDiffs, ErrConfig)
	}
	if cfg.ComputeTimeout == 0 {
		cfg.ComputeTimeout = 30 * time.Minute
	}
	if cfg.ComputeTimeout < 0 {
		return nil, fmt.Errorf("ComputeTimeout %v: must be positive: %w", cfg.ComputeTimeout, ErrConfig)
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.AbandonAfter == 0 {
		cfg.AbandonAfter = max(10*cfg.RetryAfter, 2*time.Minute)
	}
	if cfg.AbandonAfter < 0 {
		return nil, fmt.Errorf("AbandonAfter %v: must be positive: %w", cfg.AbandonAfter, ErrConfig)
	}
	if cfg.FailureTTL <= 0 {
		cfg.FailureTTL = 5 * time.Minute
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.RolloutTick == 0 {
		cfg.RolloutTick = 10 * time.Second
	}
	if cfg.ReportRetention == 0 {
		cfg.ReportRetention = defaultReportRetention
	}
	if cfg.DiffOptions.Level == 0 {
		cfg.DiffOptions = delta.DefaultOptions()
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	st, err := openState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	c, err := openCache(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	if cfg.FleetDB == "" {
		cfg.FleetDB = "sqlite:" + filepath.Join(cfg.StateDir, "fleet.db")
	}
	fleet, err := fleetdb.Open(context.Background(), cfg.FleetDB)
	if err != nil {
		return nil, fmt.Errorf("fleet database: %w", err)
	}
	for _, sg := range cfg.Signers {
		pub, ok := sg.Public().(ed25519.PublicKey)
		if !ok {
			fleet.Close()
			return nil, fmt.Errorf("a %T signer: deltas are signed with ed25519: %w", sg.Public(), ErrConfig)
		}
		c.signers = append(c.signers, sign.IDOf(pub).String())
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		admin:    hashTokens(cfg.AdminTokens),
		device:   hashTokens(cfg.DeviceTokens),
		scopes:   scopesOf(cfg.DeviceTokens, cfg.DeviceScopes),
		state:    st,
		cache:    c,
		fleet:    fleet,
		metrics:  newMetrics(),
		diffs:    semaphore.NewWeighted(int64(cfg.MaxConcurrentDiffs)),
		failures: map[string]failure{},
		flights:  map[string]*flight{},
		warnOnce: throttle{every: time.Minute},
	}
	if rb, ok := fleet.(fleetdb.RolloutBackend); ok {
		s.rollouts = rb.Rollouts()
	}
	if len(s.admin) == 0 {
		s.log.Warn("no admin token configured: publishing is refused")
	}
	if len(s.device) == 0 && len(s.admin) == 0 {
		s.log.Warn("no device token configured: check-ins are refused")
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()
	if cfg.CacheTTL > 0 {
		s.goBackground(s.sweep)
	}
	if cfg.ReportRetention > 0 {
		s.goBackground(s.pruneReportsEvery)
	}
	if s.rollouts != nil && cfg.RolloutTick > 0 {
		s.goBackground(s.rolloutTick)
	}
	return s, nil
}

// Close cancels the background computations and waits for them to end.
func (s *Server) Close() error {
	s.bgMu.Lock()
	s.closed = true
	s.bgMu.Unlock()
	s.cancel()
	s.bg.Wait()
	s.closeOnce.Do(func() { s.fleetErr = s.fleet.Close() })
	return s.fleetErr
}

// goBackground runs f in a goroutine Close waits for; after Close it does
// nothing.
func (s *Server) goBackground(f func(ctx context.Context)) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closed {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		f(s.ctx)
	}()
}

// ServeHTTP serves the API (see the package documentation).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// role is what a token may do.
type role int

const (
	roleNone role = iota
	roleDevice
	roleAdmin
)

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	handle := func(pattern, route string, need role, h http.HandlerFunc) {
		s.mux.Handle(pattern, s.instrument(route, s.authorize(need, h)))
	}
	handle("POST "+api.PathCheck, "check", roleDevice, s.handleCheck)
	handle("GET "+api.PathDeltas+"{digest}", "deltas", roleDevice, s.handleDelta)
	handle("PUT "+api.PathTargets+"{channel}/{image}", "targets", roleAdmin, s.handlePublish)
	handle("POST "+api.PathNotifications, "notifications", roleAdmin, s.handleNotifications)
	handle("POST "+api.PathReports, "reports", roleDevice, s.handleReport)
	handle("GET "+api.PathDevices, "devices", roleAdmin, s.handleDevices)
	handle("POST "+api.PathRollouts+"{$}", "rollouts", roleAdmin, s.handleRolloutCreate)
	handle("GET "+api.PathRollouts+"{$}", "rollouts", roleAdmin, s.handleRolloutList)
	handle("GET "+api.PathRollouts+"{id}", "rollouts", roleAdmin, s.handleRolloutGet)
	handle("POST "+api.PathRollouts+"{id}/{action}", "rollouts", roleAdmin, s.handleRolloutAction)
	handle("PUT "+api.PathRollouts+"{id}/pins/{device...}", "rollouts", roleAdmin, s.handleRolloutPin)
	handle("DELETE "+api.PathRollouts+"{id}/pins/{device...}", "rollouts", roleAdmin, s.handleRolloutPin)
	handle("GET "+api.PathHealthz, "healthz", roleNone, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	metricsHandler := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})
	handle("GET "+api.PathMetrics, "metrics", roleNone, metricsHandler.ServeHTTP)
}

func hashTokens(tokens []string) [][sha256.Size]byte {
	var out [][sha256.Size]byte
	for _, t := range tokens {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, sha256.Sum256([]byte(t)))
		}
	}
	return out
}

// roleOf returns the role of a bearer token. Tokens are compared as
// sha256 sums with subtle.ConstantTimeCompare, against every configured
// token, so the time taken tells nothing about a token's length or prefix.
func (s *Server) roleOf(token string) (role, []string) {
	h := sha256.Sum256([]byte(token))
	var admin, device int
	which := -1
	for i := range s.admin {
		admin |= subtle.ConstantTimeCompare(h[:], s.admin[i][:])
	}
	for i := range s.device {
		eq := subtle.ConstantTimeCompare(h[:], s.device[i][:])
		device |= eq
		which = subtle.ConstantTimeSelect(eq, i, which)
	}
	switch {
	case admin == 1:
		return roleAdmin, nil
	case device == 1:
		return roleDevice, s.scopes[which]
	}
	return roleNone, nil
}

// authorize answers 401 without a known bearer token and 403 when the
// token's role is below need.
func (s *Server) authorize(need role, h http.HandlerFunc) http.HandlerFunc {
	if need == roleNone {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, token, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skiff"`)
			writeError(w, http.StatusUnauthorized, "missing bearer token (Authorization: Bearer TOKEN)")
			return
		}
		got, scopes := s.roleOf(strings.TrimSpace(token))
		switch {
		case got == roleNone:
			w.Header().Set("WWW-Authenticate", `Bearer realm="skiff", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unknown token")
			return
		case got < need:
			writeError(w, http.StatusForbidden, "this route needs the admin token")
			return
		}
		if scopes != nil {
			r = r.WithContext(context.WithValue(r.Context(), scopeKey{}, scopes))
		}
		h(w, r)
	}
}

// instrument records the request duration by route and logs the request
// at debug level.
func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		d := time.Since(t0)
		s.metrics.httpDuration.WithLabelValues(route, fmt.Sprint(sw.code)).Observe(d.Seconds())
		s.log.Debug("http", "method", r.Method, "path", r.URL.Path, "route", route, "code", sw.code, "bytes", sw.n, "duration", d, "remote", r.RemoteAddr)
	})
}

type statusWriter struct {
	http.ResponseWriter
	code        int
	n           int64
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	w.wroteHeader = true
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// scopeKey carries a scoped device token's patterns in a request context.
type scopeKey struct{}

// scopeOf is the scope of the request's token; nil: any pair.
func scopeOf(ctx context.Context) []string {
	s, _ := ctx.Value(scopeKey{}).([]string)
	return s
}

// scopeAllows reports whether patterns (nil: any) allow (channel, image).
func scopeAllows(patterns []string, channel, image string) bool {
	if patterns == nil {
		return true
	}
	for _, p := range patterns {
		c, i, _ := strings.Cut(p, "/")
		if (c == "*" || c == channel) && (i == "*" || i == image) {
			return true
		}
	}
	return false
}

// scopesOf lists the scope of each device token (by the order of tokens).
func scopesOf(tokens []string, scopes map[string][]string) [][]string {
	out := make([][]string, 0, len(tokens))
	for _, t := range tokens {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		out = append(out, scopes[t])
	}
	return out
}
