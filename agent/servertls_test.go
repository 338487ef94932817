package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/tlstest"
	"github.com/skiff-dev/skiff/transport/api"
)

// tlsServer is a rollout server on HTTPS with a certificate of ca that
// requires client certificates of ca, and records the client certificate
// (its common name) of each request by path.
type tlsServer struct {
	*httptest.Server
	mu    sync.Mutex
	peers map[string]string
}

func newTLSServer(t *testing.T, ca *tlstest.CA, update bool) *tlsServer {
	t.Helper()
	s := &tlsServer{peers: map[string]string{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			s.peers[r.URL.Path] = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		s.mu.Unlock()
		if r.URL.Path != api.PathCheck {
			http.NotFound(w, r)
			return
		}
		resp := api.CheckResponse{}
		if update {
			resp = api.CheckResponse{Update: true,
				Target: &api.Target{Ref: "x", ConfigDigest: "sha256:" + strings.Repeat("1", 64), ManifestDigest: "sha256:" + strings.Repeat("2", 64)},
				Delta:  &api.Delta{URL: api.PathDeltas + "sha256:" + strings.Repeat("3", 64), Digest: "sha256:" + strings.Repeat("3", 64), Size: 10}}
		}
		json.NewEncoder(w).Encode(resp)
	}))
	srv := ca.Server(t, 1, t.TempDir())
	s.TLS = &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *tlsServer) peer(path string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[path]
}

// tlsSource is a server source block with the given TLS fields.
func tlsSource(url, caFile, cert, key string) string {
	src := serverSource(url)
	for _, f := range []struct{ k, v string }{{"ca_file", caFile}, {"client_cert", cert}, {"client_key", key}} {
		if f.v != "" {
			src += "\n" + f.k + ": " + f.v
		}
	}
	return src
}

// TestServerTLS: an agent whose ca_file is the server's CA and with a
// client certificate of the CA the server requires checks in, presenting
// its certificate (to the check and to the delta download); pinned to
// another CA, or with the system's roots, it fails naming the
// certificate; without a client certificate the server refuses it.
func TestServerTLS(t *testing.T) {
	p := testPair(t)
	ca, other := tlstest.NewCA(t, "a"), tlstest.NewCA(t, "b")
	dir := t.TempDir()
	own, foreign := ca.Client(t, 10, dir), other.Client(t, 20, dir)
	s := newTLSServer(t, ca, false)
	for _, tc := range []struct {
		name, caFile string
		client       *tlstest.Pair
		err          string
	}{
		{"pinned to the server's CA", ca.CertFile, own, ""},
		{"pinned to another CA", other.CertFile, own, "certificate"},
		{"system roots", "", own, "certificate"},
		{"no client certificate", ca.CertFile, nil, "certificate"},
		{"client certificate of another CA", ca.CertFile, foreign, "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := "", ""
			if tc.client != nil {
				cert, key = tc.client.CertFile, tc.client.KeyFile
			}
			d := newDevice(t, p)
			a := newAgent(t, d.config(t, tlsSource(s.URL, tc.caFile, cert, key), ""))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := a.Check(ctx, "web")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Check: %v, want an error naming the %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Update {
				t.Errorf("update offered: %+v", res)
			}
			if got := s.peer(api.PathCheck); got != "device-10" {
				t.Errorf("the server saw client certificate %q, want device-10", got)
			}
		})
	}
}

// TestServerTLSDelta: the delta download from the server's own origin
// goes with the server's TLS settings (client certificate, pinned CA).
func TestServerTLSDelta(t *testing.T) {
	p := testPair(t)
	ca := tlstest.NewCA(t, "a")
	own := ca.Client(t, 10, t.TempDir())
	s := newTLSServer(t, ca, true)
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, tlsSource(s.URL, ca.CertFile, own.CertFile, own.KeyFile), ""))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := a.Update(ctx, "web")
	if err == nil || strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Update: %v, want a failure of the download (404), not of TLS", err)
	}
	if got := s.peer(api.PathDeltas + "sha256:" + strings.Repeat("3", 64)); got != "device-10" {
		t.Errorf("the delta download presented client certificate %q, want device-10 (err %v)", got, err)
	}
}

// TestServerTLSFiles: unusable TLS files are refused when the agent
// starts, as config errors naming the field, the file and the problem.
func TestServerTLSFiles(t *testing.T) {
	p := testPair(t)
	ca := tlstest.NewCA(t, "a")
	dir := t.TempDir()
	one, two := ca.Client(t, 1, dir), ca.Client(t, 2, dir)
	openKey := filepath.Join(dir, "open.key")
	os.WriteFile(openKey, one.KeyPEM, 0o644)
	os.Chmod(openKey, 0o644)
	notPEM := writeFile(t, dir, "notpem.pem", []byte("hello\n"))
	for _, tc := range []struct {
		name, caFile, cert, key string
		want                    []string
	}{
		{"missing ca_file", filepath.Join(dir, "nope.pem"), "", "", []string{"images[0] (web).source.ca_file", "nope.pem", "no such file"}},
		{"ca_file not PEM", notPEM, "", "", []string{"source.ca_file", "notpem.pem", "not PEM"}},
		{"ca_file without certificates", one.KeyFile, "", "", []string{"source.ca_file", "client-1.key", "holds no certificate"}},
		{"missing client_cert", "", filepath.Join(dir, "nope.crt"), one.KeyFile, []string{"client_cert", "nope.crt", "no such file"}},
		{"client_key of another certificate", "", one.CertFile, two.KeyFile, []string{"client_key", "client-2.key", "does not match the certificate in", "client-1.pem"}},
		{"client_key readable by others", "", one.CertFile, openKey, []string{"client_key", "open.key", "readable by other users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, p)
			c := d.config(t, tlsSource("https://127.0.0.1:9", tc.caFile, tc.cert, tc.key), "")
			_, err := New(c, WithLogger(quietLogger()))
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q, want %q in it", err, w)
				}
			}
		})
	}
}
