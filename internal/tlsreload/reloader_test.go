package tlsreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/tlstest"
)

// syncBuffer is a log sink handshakes may write to while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve runs an HTTPS server of r on loopback answering /healthz, and
// returns its address.
func serve(t *testing.T, r *Reloader) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{
		Handler:   http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
		TLSConfig: r.ServerConfig(),
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
	go hs.ServeTLS(ln, "", "")
	t.Cleanup(func() { hs.Close() })
	return ln.Addr().String()
}

// peerSerial is the serial of the certificate a fresh connection to addr
// is shown.
func peerSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// get fetches /healthz with a fresh connection.
func get(addr string, cfg *tls.Config) (string, error) {
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	resp, err := cl.Get("https://" + addr + "/healthz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestReload: Reload (what SIGHUP calls) serves the new certificate to the
// next connection; a broken replacement is refused, logged, and the last
// good certificate stays.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "a")
	first := ca.Server(t, 1, dir)
	second := ca.Server(t, 2, t.TempDir())
	var logs syncBuffer
	r, err := New(Config{CertFile: first.CertFile, KeyFile: first.KeyFile, CheckEvery: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	if got := peerSerial(t, addr, ca.Pool()); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	if body, err := get(addr, &tls.Config{RootCAs: ca.Pool()}); err != nil || body != "ok" {
		t.Fatalf("GET /healthz: %q, %v", body, err)
	}
	second.Install(t, first.CertFile, first.KeyFile)
	if got := peerSerial(t, addr, ca.Pool()); got != 1 {
		t.Errorf("serial %d before the reload, want 1 (CheckEvery -1: only Reload reloads)", got)
	}
	if err := r.Reload("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	if got := peerSerial(t, addr, ca.Pool()); got != 2 {
		t.Errorf("serial %d after the reload, want 2", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") || !strings.Contains(logs.String(), "serial=2") {
		t.Errorf("no reload logged:\n%s", logs.String())
	}
	for _, tc := range []struct {
		name      string
		cert, key []byte
	}{
		{"garbage certificate", []byte("not a certificate\n"), second.KeyPEM},
		{"key of another certificate", second.CertPEM, first.KeyPEM},
		{"empty files", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(first.CertFile, tc.cert, 0o644)
			os.WriteFile(first.KeyFile, tc.key, 0o600)
			if err := r.Reload("SIGHUP"); err == nil {
				t.Fatal("Reload of broken files succeeded")
			}
			if got := peerSerial(t, addr, ca.Pool()); got != 2 {
				t.Errorf("serial %d after a failed reload, want 2 (the old one)", got)
			}
			if !strings.Contains(logs.String(), "still serving the old certificate") {
				t.Errorf("the failed reload is not logged:\n%s", logs.String())
			}
		})
	}
}

// TestReloadOnChange: a handshake once CheckEvery has passed picks up
// changed files; a broken change is logged once, not at every check, and
// the fixed files are picked up.
func TestReloadOnChange(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "a")
	first := ca.Server(t, 1, dir)
	var logs syncBuffer
	r, err := New(Config{CertFile: first.CertFile, KeyFile: first.KeyFile, CheckEvery: time.Minute,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	r.now = func() time.Time { return time.Unix(0, clock.Load()) }
	later := func() { clock.Add(int64(2 * time.Minute)) }
	addr := serve(t, r)

	ca.Server(t, 2, t.TempDir()).Install(t, first.CertFile, first.KeyFile)
	if got := peerSerial(t, addr, ca.Pool()); got != 1 {
		t.Errorf("serial %d before CheckEvery passed, want 1", got)
	}
	later()
	if got := peerSerial(t, addr, ca.Pool()); got != 2 {
		t.Errorf("serial %d once the files changed and CheckEvery passed, want 2", got)
	}

	os.WriteFile(first.CertFile, []byte("broken\n"), 0o644)
	for range 3 {
		later()
		if got := peerSerial(t, addr, ca.Pool()); got != 2 {
			t.Errorf("serial %d after a broken change, want 2", got)
		}
	}
	if n := strings.Count(logs.String(), "TLS reload failed"); n != 1 {
		t.Errorf("%d failed reloads logged for one broken change, want 1:\n%s", n, logs.String())
	}

	ca.Server(t, 3, t.TempDir()).Install(t, first.CertFile, first.KeyFile)
	later()
	if got := peerSerial(t, addr, ca.Pool()); got != 3 {
		t.Errorf("serial %d after the fix, want 3", got)
	}
}

// TestClientCA: with ClientCAFile, a client without a certificate, or
// with one of another CA, is refused; one of the CA is served; after the
// CA file changes and a Reload, the new CA's clients are.
func TestClientCA(t *testing.T) {
	dir := t.TempDir()
	a, b := tlstest.NewCA(t, "a"), tlstest.NewCA(t, "b")
	srv := a.Server(t, 1, dir)
	caFile := dir + "/clients.pem"
	caA, _ := os.ReadFile(a.CertFile)
	os.WriteFile(caFile, caA, 0o644)
	r, err := New(Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile, ClientCAFile: caFile, CheckEvery: -1,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, r)
	ofA, ofB := a.Client(t, 10, dir), b.Client(t, 20, dir)
	try := func(name string, certs []tls.Certificate, ok bool) {
		t.Helper()
		body, err := get(addr, &tls.Config{RootCAs: a.Pool(), Certificates: certs})
		switch {
		case ok && (err != nil || body != "ok"):
			t.Errorf("%s: %q, %v; want served", name, body, err)
		case !ok && err == nil:
			t.Errorf("%s: served %q, want the handshake refused", name, body)
		}
	}
	try("no client certificate", nil, false)
	try("a certificate of another CA", []tls.Certificate{ofB.TLS}, false)
	try("a server certificate of the CA", []tls.Certificate{srv.TLS}, false)
	try("a client certificate of the CA", []tls.Certificate{ofA.TLS}, true)

	caB, _ := os.ReadFile(b.CertFile)
	os.WriteFile(caFile, caB, 0o644)
	if err := r.Reload("SIGHUP"); err != nil {
		t.Fatal(err)
	}
	try("a client of the old CA after the reload", []tls.Certificate{ofA.TLS}, false)
	try("a client of the new CA after the reload", []tls.Certificate{ofB.TLS}, true)

	os.WriteFile(caFile, []byte("nothing\n"), 0o644)
	if err := r.Reload("SIGHUP"); err == nil {
		t.Error("Reload of a broken CA file succeeded")
	}
	try("a client of the new CA after a failed reload", []tls.Certificate{ofB.TLS}, true)
}

// TestMinVersion: the config asks for TLS 1.2 at least (not only Go's
// default), and a TLS 1.1 client is refused.
func TestMinVersion(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "a")
	srv := ca.Server(t, 1, dir)
	r, err := New(Config{CertFile: srv.CertFile, KeyFile: srv.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	if v := r.ServerConfig().MinVersion; v < tls.VersionTLS12 {
		t.Errorf("MinVersion %#x, want TLS 1.2 (%#x) or more", v, tls.VersionTLS12)
	}
	addr := serve(t, r)
	if _, err := get(addr, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	if _, err := get(addr, &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("a TLS 1.2 client: %v", err)
	}
}
