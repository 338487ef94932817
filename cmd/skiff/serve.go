package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/netutil"

	"github.com/skiff-dev/skiff/internal/secretfile"
	"github.com/skiff-dev/skiff/internal/tlsreload"
	"github.com/skiff-dev/skiff/transport/server"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

type serveOptions struct {
	addr, stateDir, cacheDir  string
	adminFile, deviceFile     string
	publicURL                 string
	logFormat, logLevel       string
	maxDiffs, maxConns        int
	maxQueued                 int
	readTimeout               time.Duration
	computeTimeout, abandon   time.Duration
	retryAfter, shutdownGrace time.Duration
	sign                      []string

	cacheTTL time.Duration
	// reportRetention: how long install reports are kept (0: forever).
	reportRetention time.Duration
	// rolloutTick: how often staged rollouts are advanced besides after
	// reports.
	rolloutTick time.Duration
	db          string // --db: the inventory database
	tls         serveTLSOptions
	// onListen, if set, is told the address the server listens on (tests).
	onListen func(net.Addr)
}

func (o *serveOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.addr, "addr", ":8080", "address to listen on")
	fs.StringVar(&o.stateDir, "state", "", "directory of the published targets (state.json)")
	fs.StringVar(&o.cacheDir, "cache", "", "directory of the computed deltas")
	fs.StringVar(&o.adminFile, "admin-token-file", "", "file of admin tokens (publish), one per line; also $SKIFF_ADMIN_TOKEN (comma-separated)")
	fs.StringVar(&o.deviceFile, "device-token-file", "", "file of device tokens (check, download), one per line; also $SKIFF_DEVICE_TOKENS (comma-separated)")
	fs.StringVar(&o.publicURL, "public-url", "", "prefix for delta URLs in check answers, e.g. a CDN mirroring /v1/deltas/ (default: a path on this server)")
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&o.maxDiffs, "max-diffs", 2, "deltas computed at once")
	fs.IntVar(&o.maxQueued, "max-queued-diffs", 64, "pairs computing or waiting to; a check of one more is answered pending and asks again")
	fs.DurationVar(&o.computeTimeout, "compute-timeout", 30*time.Minute, "deadline of one delta computation (a stalled registry frees its slot)")
	fs.DurationVar(&o.abandon, "abandon-after", 0, "cancel a computation no device asked for this long (default: 10 × --retry-after, at least 2m; ones a publish started run to their end)")
	fs.IntVar(&o.maxConns, "max-connections", 0, "connections served at once; more wait to be accepted (default: half the open-file limit, at most 10000)")
	fs.DurationVar(&o.readTimeout, "read-timeout", 30*time.Second, "longest a client may take to send a whole request, headers and body (slow or stalled senders are cut)")
	fs.DurationVar(&o.retryAfter, "retry-after", 5*time.Second, "how long devices wait before asking again while a delta is computed")
	fs.DurationVar(&o.cacheTTL, "cache-ttl", 7*24*time.Hour, "remove a cached delta to a superseded target once nobody fetched it for this long (deltas to current targets stay); 0: never")
	fs.DurationVar(&o.reportRetention, "report-retention", 90*24*time.Hour, "delete install reports received longer ago than this, hourly (the inventory keeps each device's last report); 0: keep them forever")
	fs.StringVar(&o.db, "db", "", "database of the device inventory and install reports: sqlite:PATH (default sqlite:STATE/fleet.db; one server only) or postgres://USER@HOST[:PORT]/DATABASE?sslmode=… (PostgreSQL, which several servers share; the password is best in PGPASSWORD or ~/.pgpass, and is never logged)")
	fs.DurationVar(&o.rolloutTick, "rollout-tick", 10*time.Second, "how often staged rollouts are judged and advanced besides after each install report (0: only after reports and admin actions)")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 15*time.Second, "how long to let requests finish on SIGTERM")
	fs.StringArrayVar(&o.sign, "sign", nil, "sign the computed deltas with this private key file (skiff key generate); repeatable (key rotation); without it deltas are unsigned and devices refuse them by default")
	o.tls.addFlags(fs)
	_ = cmd.MarkFlagRequired("state")
	_ = cmd.MarkFlagRequired("cache")
}

func newServeCommand(g *globalOptions) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve --state DIR --cache DIR [--addr :8080] [--tls-cert FILE --tls-key FILE [--client-ca FILE]]",
		Short: "Run the rollout server devices check in with",
		Long: `Run the rollout server: devices check in with the image they run and their
channel and get the target plus a delta to it, computed once per pair and
cached by digest. Admins publish targets with
  PUT /v1/targets/CHANNEL/IMAGE {"ref": "docker://REG/REPO:TAG"}.

Tokens: admin tokens may publish, device tokens may check in and download
(Authorization: Bearer TOKEN). A role with no token is refused to everyone.
HTTPS: --tls-cert and --tls-key (PEM); --client-ca also requires devices
to present a certificate one of its CAs issued. SIGHUP, and a change of
the files (looked at every few seconds), reload them; a reload that fails
keeps the certificate served and logs why.

Logs go to stderr. SIGINT/SIGTERM stop the server gracefully; without
--tls-cert, SIGHUP does too.`,
		Example: `  SKIFF_ADMIN_TOKEN=s3cret skiff serve --state /var/lib/skiff --cache /var/cache/skiff \
      --device-token-file /etc/skiff/device-tokens --sign /etc/skiff/release.key
  skiff serve --state /var/lib/skiff --cache /var/cache/skiff --addr :8443 \
      --tls-cert /etc/skiff/tls/server.pem --tls-key /etc/skiff/tls/server.key \
      --client-ca /etc/skiff/tls/devices-ca.pem --device-token-file /etc/skiff/device-tokens`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), o, g, cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want json or text", format)}
}

// loadTokens reads tokens from a file (one per line; blank lines and lines
// starting with # are skipped) and from a comma-separated environment
// variable.
func loadTokens(path, env string) ([]string, error) {
	out, scopes, err := loadScopedTokens(path, env)
	if err == nil && len(scopes) > 0 {
		return nil, fmt.Errorf("token file %s: admin tokens have no scopes (only device tokens do)", path)
	}
	return out, err
}

// loadScopedTokens is loadTokens whose file lines may name, after the
// token, the (channel, image) pairs it may check: "TOKEN stable/web
// beta/*"; either part "*" for any. It returns the scopes by token.
func loadScopedTokens(path, env string) ([]string, map[string][]string, error) {
	var out []string
	scopes := map[string][]string{}
	for _, t := range strings.Split(os.Getenv(env), ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	if path == "" {
		return out, nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		t := fields[0]
		for _, sc := range fields[1:] {
			c, im, ok := strings.Cut(sc, "/")
			if !ok || c == "" || im == "" || strings.Contains(im, "/") {
				return nil, nil, fmt.Errorf("token file %s: scope %q: want CHANNEL/IMAGE (either part * for any)", path, sc)
			}
			scopes[t] = append(scopes[t], sc)
		}
		out = append(out, t)
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("token file %s: %w", path, err)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("token file %s holds no token", path)
	}
	return out, scopes, nil
}

// minTokenLen is the shortest token served without a warning: 16 hex
// characters of a random token are 64 bits.
const minTokenLen = 16

// checkSecrets refuses a token that is both an admin and a device token
// (every device could publish), and warns about short tokens and about
// token and key files that other users may read.
func checkSecrets(log *slog.Logger, admin, device []string, files []string) error {
	isAdmin := map[string]bool{}
	for _, t := range admin {
		isAdmin[t] = true
	}
	for i, t := range device {
		if isAdmin[t] {
			return usageError{fmt.Sprintf("device token %d is also an admin token: every device could publish; give each role its own tokens", i+1)}
		}
	}
	for _, r := range []struct {
		role string
		toks []string
	}{{"admin", admin}, {"device", device}} {
		for i, t := range r.toks {
			if len(t) < minTokenLen {
				log.Warn("weak token: shorter than 16 characters; use a long random one (e.g. openssl rand -hex 32)", "role", r.role, "token", i+1, "length", len(t))
			}
		}
	}
	for _, f := range files {
		if f == "" {
			continue
		}
		if perm, exposed := secretfile.Exposed(f); exposed {
			log.Warn("secret file readable by other users: chmod 600 it", "file", f, "mode", fmt.Sprintf("%#o", perm))
		}
	}
	return nil
}

// serverConfig is the server's configuration from the flags. DiffOptions
// stay zero: the server then uses delta.DefaultOptions(), as skiff diff
// does by default.
func (o *serveOptions) serverConfig(g *globalOptions, log *slog.Logger, admin, device []string, scopes map[string][]string, signers []crypto.Signer, cacheTTL time.Duration) server.Config {
	return server.Config{
		StateDir:           o.stateDir,
		CacheDir:           o.cacheDir,
		AdminTokens:        admin,
		DeviceTokens:       device,
		DeviceScopes:       scopes,
		Logger:             log,
		RefOptions:         g.refOptions(),
		PublicURL:          o.publicURL,
		MaxConcurrentDiffs: o.maxDiffs,
		MaxQueuedDiffs:     o.maxQueued,
		ComputeTimeout:     o.computeTimeout,
		AbandonAfter:       o.abandon,
		RetryAfter:         o.retryAfter,
		Signers:            signers,
		CacheTTL:           cacheTTL,
		RolloutTick:        o.rolloutTickConfig(),
		ReportRetention:    cmp.Or(o.reportRetention, -1), // 0 is the server's default; -1 its "forever"
		DeviceIDFromCert:   o.tls.deviceFromCert,
		FleetDB:            o.db,
	}
}

func runServe(ctx context.Context, o *serveOptions, g *globalOptions, logOut io.Writer) error {
	log, err := newLogger(logOut, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	if o.maxDiffs < 1 {
		return usageError{fmt.Sprintf("--max-diffs %d: must be at least 1", o.maxDiffs)}
	}
	if o.maxQueued < 0 {
		return usageError{fmt.Sprintf("--max-queued-diffs %d: must be at least 1", o.maxQueued)}
	}
	if o.computeTimeout < 0 || o.abandon < 0 {
		return usageError{fmt.Sprintf("--compute-timeout %v, --abandon-after %v: must be positive", o.computeTimeout, o.abandon)}
	}
	if o.cacheTTL < 0 {
		return usageError{fmt.Sprintf("--cache-ttl %v: must be 0 (never) or positive", o.cacheTTL)}
	}
	if o.reportRetention < 0 {
		return usageError{fmt.Sprintf("--report-retention %v: must be 0 (forever) or positive", o.reportRetention)}
	}
	if o.maxConns < 0 {
		return usageError{fmt.Sprintf("--max-connections %d: must be positive (0: the default)", o.maxConns)}
	}
	if o.readTimeout < time.Second {
		return usageError{fmt.Sprintf("--read-timeout %v: must be at least 1s", o.readTimeout)}
	}
	cacheTTL := o.cacheTTL
	if cacheTTL == 0 {
		cacheTTL = -1 // the server's "forever"
	}
	if o.retryAfter < time.Second {
		return usageError{fmt.Sprintf("--retry-after %v: must be at least 1s", o.retryAfter)}
	}
	if err := o.tls.validate(); err != nil {
		return err
	}
	admin, err := loadTokens(o.adminFile, "SKIFF_ADMIN_TOKEN")
	if err != nil {
		return err
	}
	device, scopes, err := loadScopedTokens(o.deviceFile, "SKIFF_DEVICE_TOKENS")
	if err != nil {
		return err
	}
	signers, err := loadSigners(o.sign)
	if err != nil {
		return err
	}
	if len(admin) == 0 && len(device) == 0 {
		return usageError{"no tokens: give --admin-token-file or $SKIFF_ADMIN_TOKEN, and --device-token-file or $SKIFF_DEVICE_TOKENS; every request would be refused"}
	}
	if err := checkSecrets(log, admin, device, append([]string{o.adminFile, o.deviceFile}, o.sign...)); err != nil {
		return err
	}
	var certs *tlsreload.Reloader
	if o.tls.enabled() {
		if certs, err = o.tls.reloader(log); err != nil {
			return err
		}
	}
	srv, err := server.New(o.serverConfig(g, log, admin, device, scopes, signers, cacheTTL))
	if errors.Is(err, fleetdb.ErrBadDSN) {
		return usageError{"--db: " + err.Error()}
	}
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	maxConns := o.maxConns
	if maxConns == 0 {
		maxConns = defaultMaxConns()
	}
	// The limit counts TCP connections, under TLS: a client stalling its
	// handshake holds a slot until ReadHeaderTimeout cuts it.
	ln = netutil.LimitListener(ln, maxConns)
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: min(10*time.Second, o.readTimeout),
		ReadTimeout:       o.readTimeout,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	db := o.db
	if db == "" {
		db = "sqlite:" + filepath.Join(o.stateDir, "fleet.db")
	}
	attrs := []any{"addr", ln.Addr().String(), "state", o.stateDir, "cache", o.cacheDir, "db", fleetdb.Redact(db),
		"admin_tokens", len(admin), "device_tokens", len(device), "signing_keys", signerIDs(signers)}
	errc := make(chan error, 1)
	if certs != nil {
		hs.TLSConfig = certs.ServerConfig()
		defer reloadOnHangup(ctx, certs)()
		leaf := certs.Certificate().Leaf
		log.Info("serving https on "+ln.Addr().String(), append(attrs, "cert_serial", leaf.SerialNumber.String(),
			"cert_not_after", leaf.NotAfter, "client_ca", o.tls.clientCA)...)
		if o.onListen != nil {
			o.onListen(ln.Addr())
		}
		go func() { errc <- hs.ServeTLS(ln, "", "") }()
	} else {
		log.Info("serving", attrs...)
		if o.onListen != nil {
			o.onListen(ln.Addr())
		}
		go func() { errc <- hs.Serve(ln) }()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// defaultMaxConns is half the process's open-file limit (the rest for the
// cache, the state and registry connections), at most 10000: past the
// limit, accept fails and every client, /healthz too, is refused.
func defaultMaxConns() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur < 64 {
		return 32
	}
	return int(min(rl.Cur/2, 10000))
}

// rolloutTickConfig is --rollout-tick as server.Config wants it: 0 there
// is the default, negative is off.
func (o *serveOptions) rolloutTickConfig() time.Duration {
	if o.rolloutTick <= 0 {
		return -1
	}
	return o.rolloutTick
}
