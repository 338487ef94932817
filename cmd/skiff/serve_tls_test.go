package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/tlstest"
)

// lockedBuffer is a log sink the server writes to while a test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs runServe with o on loopback until the test ends and
// returns the address it listens on and its logs.
func startServe(t *testing.T, ctx context.Context, o *serveOptions) (string, *lockedBuffer) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "dev-token-0123456789")
	o.addr, o.stateDir, o.cacheDir = "127.0.0.1:0", filepath.Join(dir, "state"), filepath.Join(dir, "cache")
	o.logFormat, o.logLevel, o.maxDiffs, o.retryAfter = "json", "info", 1, 5*time.Second
	o.readTimeout, o.shutdownGrace = time.Second, 5*time.Second
	if o.maxConns == 0 {
		o.maxConns = 8
	}
	addrc := make(chan net.Addr, 1)
	o.onListen = func(a net.Addr) { addrc <- a }
	ctx, cancel := context.WithCancel(ctx)
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, &globalOptions{}, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v after the context ended", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	})
	select {
	case a := <-addrc:
		return a.String(), logs
	case err := <-done:
		t.Fatalf("serve ended: %v\n%s", err, logs.String())
	}
	return "", nil
}

// httpsGet fetches https://addr/healthz on a fresh connection.
func httpsGet(addr string, cfg *tls.Config) (int, string, error) {
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("https://" + addr + "/healthz")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// servedSerial is the serial of the certificate a fresh connection sees.
func servedSerial(t *testing.T, addr string, roots *x509.CertPool) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestServeTLS: with --tls-cert and --tls-key, serve speaks HTTPS (and a
// plain-HTTP request is not served), its connection limit and read
// timeout hold under TLS, and SIGHUP reloads the certificate instead of
// stopping the server; a broken replacement keeps the old one.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "a")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	ca.Server(t, 1, t.TempDir()).Install(t, certFile, keyFile)
	// The signal handling of main: SIGHUP would end skiff but serve
	// claims it.
	ctx, in := notifyInterrupts(context.Background(), io.Discard)
	defer in.stop()
	o := &serveOptions{tls: serveTLSOptions{certFile: certFile, keyFile: keyFile, checkEvery: -1}}
	addr, logs := startServe(t, ctx, o)
	roots := &tls.Config{RootCAs: ca.Pool()}

	if code, body, err := httpsGet(addr, roots); err != nil || code != 200 || body != "ok" {
		t.Fatalf("https healthz: %d %q %v", code, body, err)
	}
	// HTTP/2 is offered, as ServeTLS does without our TLS config.
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: roots.Clone(), ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	if resp, err := h2.Get("https://" + addr + "/healthz"); err != nil || resp.ProtoMajor != 2 {
		t.Errorf("an HTTP/2 client: %v %v, want HTTP/2", resp, err)
	} else {
		resp.Body.Close()
	}
	h2.CloseIdleConnections()
	var first map[string]any
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil || first["msg"] != "serving https on "+addr {
		t.Errorf("first log line is not \"serving https on %s\": %q", addr, line)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("a plain-HTTP request to the HTTPS port was served: %d %q", resp.StatusCode, b)
		}
	}
	if _, _, err := httpsGet(addr, &tls.Config{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a client trusting only the system roots: %v, want a certificate error", err)
	}

	// Clients holding every slot (--max-connections 8) without a
	// handshake are cut by the read timeout: the server answers again.
	var idle []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	start := time.Now()
	if code, _, err := httpsGet(addr, roots); err != nil || code != 200 {
		t.Errorf("healthz with every slot held: %d %v", code, err)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("healthz took %s with every slot held by stalled handshakes (read timeout 1s)", el)
	}

	// Rotation: new files, then SIGHUP.
	ca.Server(t, 2, t.TempDir()).Install(t, certFile, keyFile)
	if got := servedSerial(t, addr, ca.Pool()); got != 1 {
		t.Fatalf("serial %d before SIGHUP, want 1", got)
	}
	hangup := func() {
		t.Helper()
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	hangup()
	waitFor(t, "the reload", func() bool { return strings.Contains(logs.String(), "TLS certificate reloaded") })
	if got := servedSerial(t, addr, ca.Pool()); got != 2 {
		t.Errorf("serial %d after SIGHUP, want 2", got)
	}
	if ctx.Err() != nil {
		t.Fatal("SIGHUP ended the server")
	}

	os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o644)
	hangup()
	waitFor(t, "the failed reload", func() bool { return strings.Contains(logs.String(), "TLS reload failed") })
	if got := servedSerial(t, addr, ca.Pool()); got != 2 {
		t.Errorf("serial %d after a broken replacement, want 2 (the old one)", got)
	}
	if code, _, err := httpsGet(addr, roots); err != nil || code != 200 {
		t.Errorf("healthz after a failed reload: %d %v", code, err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServeClientCA: with --client-ca, a device without a certificate,
// or with one of another CA, fails the handshake; one the CA issued is
// served.
func TestServeClientCA(t *testing.T) {
	dir := t.TempDir()
	ca, other := tlstest.NewCA(t, "a"), tlstest.NewCA(t, "b")
	srv := ca.Server(t, 1, dir)
	o := &serveOptions{tls: serveTLSOptions{certFile: srv.CertFile, keyFile: srv.KeyFile, clientCA: ca.CertFile}}
	addr, _ := startServe(t, context.Background(), o)
	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
		ok    bool
	}{
		{"no client certificate", nil, false},
		{"a certificate of another CA", []tls.Certificate{other.Client(t, 20, dir).TLS}, false},
		{"a certificate of the client CA", []tls.Certificate{ca.Client(t, 10, dir).TLS}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true,
				TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: tc.certs}}, Timeout: 10 * time.Second}
			defer cl.CloseIdleConnections()
			code, body, proto := 0, "", 0
			resp, err := cl.Get("https://" + addr + "/healthz")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				code, body, proto = resp.StatusCode, string(b), resp.ProtoMajor
			}
			if tc.ok && proto != 2 {
				t.Errorf("HTTP/%d, want HTTP/2 (offered with --client-ca too)", proto)
			}
			switch {
			case tc.ok && (err != nil || code != 200 || body != "ok"):
				t.Errorf("healthz: %d %q %v, want 200", code, body, err)
			case !tc.ok && err == nil:
				t.Errorf("healthz: %d %q, want the handshake refused", code, body)
			}
		})
	}
}

// TestServeTLSUsage: the TLS flags go together, and unusable files are
// refused at start, naming the file.
func TestServeTLSUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "")
	ca := tlstest.NewCA(t, "a")
	srv := ca.Server(t, 1, dir)
	openKey := filepath.Join(dir, "open.key")
	os.WriteFile(openKey, srv.KeyPEM, 0o644)
	os.Chmod(openKey, 0o644)
	certAsKey := filepath.Join(dir, "cert-as.key")
	os.WriteFile(certAsKey, srv.CertPEM, 0o600)
	base := []string{"serve", "--state", filepath.Join(dir, "state"), "--cache", filepath.Join(dir, "cache"), "--addr", "127.0.0.1:0"}
	for _, tc := range []struct {
		name  string
		args  []string
		want  []string
		usage bool
	}{
		{"cert without key", []string{"--tls-cert", srv.CertFile}, []string{"--tls-cert without --tls-key"}, true},
		{"key without cert", []string{"--tls-key", srv.KeyFile}, []string{"--tls-key without --tls-cert"}, true},
		{"client CA without cert", []string{"--client-ca", ca.CertFile}, []string{"--client-ca needs --tls-cert"}, true},
		{"device IDs from certs without client CA", []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--device-id-from-cert"}, []string{"--device-id-from-cert needs --client-ca"}, true},
		{"missing cert file", []string{"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", srv.KeyFile}, []string{"nope.pem", "no such file"}, false},
		{"key readable by others", []string{"--tls-cert", srv.CertFile, "--tls-key", openKey}, []string{"open.key", "readable by other users"}, false},
		{"a certificate as the key", []string{"--tls-cert", srv.CertFile, "--tls-key", certAsKey}, []string{"cert-as.key", "holds no private key"}, false},
		{"missing client CA", []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", filepath.Join(dir, "nope-ca.pem")}, []string{"nope-ca.pem", "no such file"}, false},
		{"client CA without certificates", []string{"--tls-cert", srv.CertFile, "--tls-key", srv.KeyFile, "--client-ca", srv.KeyFile}, []string{srv.KeyFile, "holds no certificate"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := newRootCommand()
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			cmd.SetArgs(append(append([]string{}, base...), tc.args...))
			err := cmd.ExecuteContext(ctx)
			if err == nil {
				t.Fatal("serve started")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q, want %q in it", err, w)
				}
			}
			if got := exitCode(err) == 2; got != tc.usage {
				t.Errorf("exit %d for %v, want a usage error: %v", exitCode(err), err, tc.usage)
			}
		})
	}
}
