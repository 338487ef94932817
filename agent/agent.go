package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/secretfile"
)

// Clock is the time source of the agent; tests inject a fake one.
type Clock interface {
	Now() time.Time
	// After fires once d has passed.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Agent keeps the configured images up to date.
type Agent struct {
	cfg     *Config
	state   *StateStore
	engines map[string]Engine
	client  *http.Client
	servers map[string]*http.Client // by image: clients of servers with ca_file or client_cert (serverClient)
	log     *slog.Logger
	clock   Clock
	rng     *rand.Rand
	trust   format.Trust // from trusted_keys and allow_unsigned

	// cycle checks and updates one image in the run loop (tests replace
	// it); it returns how long the server asked to wait, if it did.
	cycle func(ctx context.Context, image string) (retryAfter time.Duration, err error)

	heartbeat atomic.Int64 // unix nanoseconds of the last sign of progress (LastBeat)

	maxReports int // bound of the report queue (0: MaxQueuedReports; tests lower it)
	// oldServers are the rollout servers that refused a check-in's
	// agent_version and platform (older than those fields): check-ins to
	// them go without.
	oldServers sync.Map
}

// beat records progress: the run loop waiting or moving on, a download
// or an apply reading bytes.
func (a *Agent) beat() { a.heartbeat.Store(a.clock.Now().UnixNano()) }

// LastBeat is when the agent last showed progress (zero before Run): a
// supervisor's watchdog (systemd's WatchdogSec, through skiff agent run)
// keeps it alive while this is recent, and restarts it when it is stuck.
func (a *Agent) LastBeat() time.Time {
	n := a.heartbeat.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Option configures New.
type Option func(*Agent) error

// WithEngine makes image use e instead of the engine its config names.
func WithEngine(image string, e Engine) Option {
	return func(a *Agent) error {
		if _, err := a.cfg.Image(image); err != nil {
			return err
		}
		a.engines[image] = e
		return nil
	}
}

// WithHTTPClient sets the client for the rollout server and registries
// (default: one with the config's network timeouts, NewHTTPClient). A
// server source with ca_file or client_cert has a client of its own, with
// the config's network timeouts, for its server.
func WithHTTPClient(c *http.Client) Option {
	return func(a *Agent) error { a.client = c; return nil }
}

// WithLogger sets the logger (default: slog's default logger).
func WithLogger(l *slog.Logger) Option {
	return func(a *Agent) error { a.log = l; return nil }
}

// WithClock sets the clock (default: the system clock).
func WithClock(c Clock) Option {
	return func(a *Agent) error { a.clock = c; return nil }
}

// WithSeed seeds the jitter (default: a random seed).
func WithSeed(seed uint64) Option {
	return func(a *Agent) error { a.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)); return nil }
}

// New makes an agent for a validated config (LoadConfig, ParseConfig). It
// creates the state and work directories.
func New(cfg *Config, opts ...Option) (*Agent, error) {
	st, err := OpenState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("work_dir: %w", err)
	}
	a := &Agent{
		cfg:     cfg,
		state:   st,
		engines: map[string]Engine{},
		client:  NewHTTPClient(cfg.Network),
		log:     slog.Default(),
		clock:   realClock{},
		rng:     rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
	for _, o := range opts {
		if err := o(a); err != nil {
			return nil, err
		}
	}
	keys, err := sign.LoadPublicKeys(cfg.TrustedKeys...)
	if err != nil {
		return nil, fmt.Errorf("%w: trusted_keys: %w", ErrConfig, err)
	}
	a.trust = format.Trust{Keys: keys, AllowUnsigned: cfg.AllowUnsigned}
	switch {
	case len(keys) == 0 && !cfg.AllowUnsigned:
		a.log.Warn("no trusted_keys configured: every delta will be refused (set trusted_keys, or allow_unsigned: true for development)")
	case cfg.AllowUnsigned:
		a.log.Warn("allow_unsigned: unsigned deltas are accepted; their origin is not checked (development only)")
	}
	a.warnSecrets()
	if a.servers, err = serverClients(cfg); err != nil {
		return nil, err
	}
	for _, im := range cfg.Images {
		if a.engines[im.Name] != nil {
			continue
		}
		e, err := NewEngine(im.Engine, EngineOptions{Containerd: cfg.Containerd, Platform: cfg.Platform, TempDir: cfg.WorkDir})
		if err != nil {
			return nil, err
		}
		a.engines[im.Name] = e
	}
	a.cycle = a.runOnce
	return a, nil
}

// Config is the agent's configuration.
func (a *Agent) Config() *Config { return a.cfg }

// Status returns the persisted state.
func (a *Agent) Status() (*State, error) { return a.state.Load() }

// ReadStatus reads the state of state_dir without making an agent.
func ReadStatus(stateDir string) (*State, error) {
	st, err := OpenState(stateDir)
	if err != nil {
		return nil, err
	}
	return st.Load()
}

// NewHTTPClient returns an HTTP client whose connects, TLS handshakes and
// waits for response headers are bounded by n (a validated config's
// Network). It sets no overall deadline: a long download that makes
// progress is never cut (transport.Fetch detects a stalled body).
func NewHTTPClient(n NetworkConfig) *http.Client { return newHTTPClient(n, nil) }

// newHTTPClient is NewHTTPClient with a TLS configuration (nil: the
// default one).
func newHTTPClient(n NetworkConfig, tc *tls.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: n.ConnectTimeout.D(), KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = n.ConnectTimeout.D()
	t.ResponseHeaderTimeout = n.ResponseTimeout.D()
	if tc != nil {
		t.TLSClientConfig = tc
	}
	return &http.Client{Transport: t}
}

// warnSecrets warns about secrets other users of the device can read: a
// token_file, or the config file when it holds a token inline.
func (a *Agent) warnSecrets() {
	files := map[string]bool{}
	for _, im := range a.cfg.Images {
		if f := im.Source.TokenFile; f != "" {
			files[f] = true
		}
		if im.Source.Token != "" && a.cfg.path != "" {
			files[a.cfg.path] = true
		}
	}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		if perm, exposed := secretfile.Exposed(f); exposed {
			a.log.Warn("a file holding a device token is readable by other users: chmod 600 it", "file", f, "mode", fmt.Sprintf("%#o", perm))
		}
	}
}
