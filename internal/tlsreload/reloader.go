package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckEvery is how often, at most, a handshake looks whether the
// files changed.
const DefaultCheckEvery = 5 * time.Second

// Config names the files of a Reloader.
type Config struct {
	// CertFile and KeyFile are the server's certificate (and any
	// intermediates) and private key.
	CertFile, KeyFile string
	// ClientCAFile, if set, is a bundle of CA certificates: clients must
	// present a certificate one of them issued.
	ClientCAFile string
	// CheckEvery bounds how often a handshake stats the files (default
	// DefaultCheckEvery; negative: never, only Reload).
	CheckEvery time.Duration
	// Logger is told of reloads and of failed ones (default slog's).
	Logger *slog.Logger
}

// Reloader serves the current certificate and client CAs of its files.
type Reloader struct {
	cfg Config
	log *slog.Logger
	now func() time.Time

	cur  atomic.Pointer[loaded]
	next atomic.Int64 // unix nanoseconds before which no handshake stats the files

	mu     sync.Mutex // one reload at a time
	failed []stamp    // the files as a failed reload found them
}

// loaded is one consistent reading of the files.
type loaded struct {
	cert      *tls.Certificate
	clientCAs *x509.CertPool // nil without ClientCAFile
	stamps    []stamp
}

// stamp is what says a file changed: its size and modification time.
type stamp struct {
	size  int64
	mtime int64 // unix nanoseconds
	ok    bool  // the file could be stat'ed
}

// New loads the files; it fails when they do not make a certificate (and
// a CA pool).
func New(cfg Config) (*Reloader, error) {
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = DefaultCheckEvery
	}
	r := &Reloader{cfg: cfg, log: cfg.Logger, now: time.Now}
	if r.log == nil {
		r.log = slog.Default()
	}
	l, err := r.load(r.stamps())
	if err != nil {
		return nil, err
	}
	r.cur.Store(l)
	r.next.Store(r.now().Add(cfg.CheckEvery).UnixNano())
	return r, nil
}

func (r *Reloader) files() []string {
	f := []string{r.cfg.CertFile, r.cfg.KeyFile}
	if r.cfg.ClientCAFile != "" {
		f = append(f, r.cfg.ClientCAFile)
	}
	return f
}

func (r *Reloader) stamps() []stamp {
	var st []stamp
	for _, f := range r.files() {
		fi, err := os.Stat(f)
		if err != nil {
			st = append(st, stamp{})
			continue
		}
		st = append(st, stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true})
	}
	return st
}

func (r *Reloader) load(st []stamp) (*loaded, error) {
	c, err := LoadKeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	l := &loaded{cert: c, stamps: st}
	if r.cfg.ClientCAFile != "" {
		if l.clientCAs, err = LoadCertPool(r.cfg.ClientCAFile); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Reload reads the files again. When they do not make a certificate, it
// logs and returns the error and what is served stays; reason is logged
// ("SIGHUP", "files changed").
func (r *Reloader) Reload(reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stamps()
	l, err := r.load(st)
	if err != nil {
		r.failed = st
		old := r.cur.Load().cert.Leaf
		r.log.Error("TLS reload failed: still serving the old certificate", "reason", reason, "err", err,
			"serial", old.SerialNumber.String(), "not_after", old.NotAfter)
		return err
	}
	r.failed = nil
	r.cur.Store(l)
	r.log.Info("TLS certificate reloaded", "reason", reason, "serial", l.cert.Leaf.SerialNumber.String(),
		"subject", l.cert.Leaf.Subject.String(), "not_after", l.cert.Leaf.NotAfter)
	return nil
}

// maybeReload reloads when the files changed since the last reading, and
// not as they were when a reload failed. Of the handshakes that come
// while it is due, one stats the files; the others go on at once.
func (r *Reloader) maybeReload() {
	if r.cfg.CheckEvery < 0 {
		return
	}
	now := r.now().UnixNano()
	n := r.next.Load()
	if now < n || !r.next.CompareAndSwap(n, now+int64(r.cfg.CheckEvery)) {
		return
	}
	st := r.stamps()
	if slices.Equal(st, r.cur.Load().stamps) {
		return
	}
	r.mu.Lock()
	failed := slices.Equal(st, r.failed)
	r.mu.Unlock()
	if failed {
		return
	}
	r.Reload("files changed")
}

// Certificate is the certificate served now.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load().cert }

// GetCertificate is tls.Config.GetCertificate: the current certificate,
// after a look at the files when one is due.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.Certificate(), nil
}

// ServerConfig is a server's TLS configuration: TLS 1.2 at least, the
// current certificate, and with ClientCAFile a client certificate
// required and verified against the current CAs. It offers HTTP/2 and
// HTTP/1.1 (ALPN), as http.Server.ServeTLS does.
func (r *Reloader) ServerConfig() *tls.Config {
	base := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	if r.cfg.ClientCAFile == "" {
		return base
	}
	base.ClientAuth = tls.RequireAndVerifyClientCert
	base.ClientCAs = r.cur.Load().clientCAs
	// Each handshake gets the CAs of the last reload.
	proto := base.Clone()
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		r.maybeReload()
		c := proto.Clone()
		c.ClientCAs = r.cur.Load().clientCAs
		return c, nil
	}
	return base
}
