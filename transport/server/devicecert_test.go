package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/tlstest"
	"github.com/skiff-dev/skiff/transport/api"
)

// TestDeviceIDFromCert: with DeviceIDFromCert a check-in or report must
// name the device of its client certificate (device-10 here); another
// name is 403, and so is a request without a certificate. Without the
// option the name is free.
func TestDeviceIDFromCert(t *testing.T) {
	ca := tlstest.NewCA(t, "fleet")
	serverPair := ca.Server(t, 1, t.TempDir())
	client := ca.Client(t, 10, t.TempDir()) // CN device-10
	for _, bind := range []bool{true, false} {
		ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.DeviceIDFromCert = bind })
		hs := httptest.NewUnstartedServer(ts)
		hs.TLS = &tls.Config{Certificates: []tls.Certificate{serverPair.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
		hs.StartTLS()
		t.Cleanup(hs.Close)
		cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}}}
		post := func(path string, body any) (int, string) {
			t.Helper()
			b, _ := json.Marshal(body)
			req, _ := http.NewRequest("POST", hs.URL+path, bytes.NewReader(b))
			req.Header.Set("Authorization", "Bearer "+deviceToken)
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, string(msg)
		}
		for _, tc := range []struct {
			device  string
			refused bool
		}{{"device-10", false}, {"device-11", bind}, {"", bind}} {
			code, msg := post(api.PathCheck, api.CheckRequest{Device: tc.device, Channel: "stable", Image: "web"})
			if (code == http.StatusForbidden) != tc.refused || tc.refused && !strings.Contains(msg, "does not match its client certificate") {
				t.Errorf("bind %v: check as %q: %d %s; want refused=%v", bind, tc.device, code, msg, tc.refused)
			}
		}
		for _, tc := range []struct {
			device  string
			refused bool
		}{{"device-10", false}, {"device-11", bind}} {
			r := testReport(strings.Repeat("f", 30)+tc.device[len(tc.device)-2:], tc.device, "stable", "web")
			code, msg := post(api.PathReports, r)
			if (code == http.StatusForbidden) != tc.refused || (!tc.refused && code != http.StatusOK) {
				t.Errorf("bind %v: report as %q: %d %s; want refused=%v", bind, tc.device, code, msg, tc.refused)
			}
		}
	}
	// Without TLS (a proxy in front that passes no certificate) the bound
	// server refuses every device.
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.DeviceIDFromCert = true })
	if w := ts.do("POST", api.PathCheck, deviceToken, api.CheckRequest{Device: "device-10", Channel: "stable", Image: "web"}); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "client certificate is required") {
		t.Errorf("check without TLS: %d %s", w.Code, w.Body)
	}
}
