package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/tlstest"
	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
)

const (
	fleetAdmin  = "fleet-admin-token-0123456789"
	fleetDevice = "fleet-device-token-0123456789"
)

// fleetServer is an in-process rollout server that two devices checked
// in with, one of which reported a rollback.
// The report is 3h old; the check-ins are now.
func fleetServer(t *testing.T) *httptest.Server {
	t.Helper()
	s, err := server.New(server.Config{StateDir: t.TempDir(), CacheDir: t.TempDir(),
		AdminTokens: []string{fleetAdmin}, DeviceTokens: []string{fleetDevice},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	post := func(path string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", hs.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+fleetDevice)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// Nothing is published: the check-ins are 404, and still seen.
	post(api.PathCheck, api.CheckRequest{Device: "kiosk-2", Channel: "stable", Image: "web", AgentVersion: "v1.4.0", Platform: "linux/arm/v7",
		Labels: map[string]string{"site": "berlin", "group": "canary"}})
	post(api.PathCheck, api.CheckRequest{Device: "kiosk-1", Channel: "beta", Image: "web"})
	at := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Millisecond)
	post(api.PathReports, api.Report{ID: strings.Repeat("ab", 16), Device: "kiosk-2", Channel: "stable", Image: "web",
		FromDigest: "sha256:" + strings.Repeat("1", 64), ToDigest: "sha256:" + strings.Repeat("2", 64),
		Result: api.ResultRolledBack, Error: "health check failed:\nexit 3", Time: at})
	// Check-ins are written after their answer: wait until both are in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var buf bytes.Buffer
		o := &fleetDevicesOptions{adminClientOptions: adminClientOptions{server: hs.URL}, pageSize: 500, format: formatOptions{format: formatJSON}}
		t.Setenv("SKIFF_ADMIN_TOKEN", fleetAdmin)
		if err := runFleetDevices(context.Background(), o, &buf); err != nil {
			t.Fatal(err)
		}
		var devs []api.Device
		json.Unmarshal(buf.Bytes(), &devs)
		if len(devs) == 2 && !devs[1].Images[0].LastSeen.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return hs
}

// TestFleetDevicesTable: the table, paged one device at a time, with the
// filters passed on.
func TestFleetDevicesTable(t *testing.T) {
	hs := fleetServer(t)
	tok := filepath.Join(t.TempDir(), "admin")
	os.WriteFile(tok, []byte("# admin\n"+fleetAdmin+"\n"), 0o600)
	t.Setenv("SKIFF_ADMIN_TOKEN", "")
	now := time.Now().Add(5 * time.Minute)
	var buf bytes.Buffer
	o := &fleetDevicesOptions{adminClientOptions: adminClientOptions{server: hs.URL + "/", tokenFile: tok}, pageSize: 1, now: func() time.Time { return now }}
	if err := runFleetDevices(context.Background(), o, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table:\n%s", buf.String())
	}
	fields := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	if got, want := fields(lines[0]), "DEVICE IMAGE CHANNEL RUNNING LAST SEEN AGENT PLATFORM LABELS LAST RESULT"; got != want {
		t.Errorf("header %q, want %q", got, want)
	}
	if got, want := fields(lines[1]), "kiosk-1 web beta - 5m ago - - - -"; got != want {
		t.Errorf("kiosk-1: %q, want %q", got, want)
	}
	if got, want := fields(lines[2]), "kiosk-2 web stable - 5m ago v1.4.0 linux/arm/v7 group=canary,site=berlin rolled_back 222222222222 3h ago: health check failed: exit 3"; got != want {
		t.Errorf("kiosk-2: %q, want %q", got, want)
	}

	// Through the command line: filters and JSON.
	out, _, err := run(t, "fleet", "devices", "--server", hs.URL, "--token-file", tok, "--channel", "stable", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var devs []api.Device
	if err := json.Unmarshal([]byte(out), &devs); err != nil || len(devs) != 1 || devs[0].ID != "kiosk-2" {
		t.Errorf("--channel stable --format json: %v %s", err, out)
	}
	out, _, err = run(t, "fleet", "devices", "--server", hs.URL, "--token-file", tok, "--stale", "1h")
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("--stale 1h (everyone seen just now): %v\n%s", err, out)
	}
}

func TestFleetDevicesErrors(t *testing.T) {
	hs := fleetServer(t)
	dir := t.TempDir()
	devTok := filepath.Join(dir, "device")
	os.WriteFile(devTok, []byte(fleetDevice+"\n"), 0o600)
	admTok := filepath.Join(dir, "admin")
	os.WriteFile(admTok, []byte(fleetAdmin+"\n"), 0o600)
	t.Setenv("SKIFF_ADMIN_TOKEN", "")
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"no server", []string{"fleet", "devices"}, "required flag", 2},
		{"no token", []string{"fleet", "devices", "--server", hs.URL}, "no token", 2},
		{"bad server", []string{"fleet", "devices", "--server", "ftp://x", "--token-file", devTok}, "--server", 2},
		{"bad format", []string{"fleet", "devices", "--server", hs.URL, "--token-file", devTok, "--format", "xml"}, "--format", 2},
		{"device token", []string{"fleet", "devices", "--server", hs.URL, "--token-file", devTok}, "403", 1},
		{"bad filter", []string{"fleet", "devices", "--server", hs.URL, "--token-file", admTok, "--result", "meh"}, "400", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != tc.code {
				t.Errorf("err %v (exit %d), want %q (exit %d)", err, exitCode(err), tc.want, tc.code)
			}
		})
	}
}

// TestServeBadDB: --db names no known backend or does not parse: a
// usage error; a PostgreSQL database that does not answer fails naming
// its host. The password shows in neither.
func TestServeBadDB(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "")
	const pw = "pg-s3cret"
	for _, db := range []string{"mysql:x", "postgres:db", "postgres://skiff:" + pw + "@db:port/skiff"} {
		_, stderr, err := run(t, "serve", "--state", dir, "--cache", dir, "--addr", "127.0.0.1:0", "--db", db)
		if err == nil || !strings.Contains(err.Error(), "--db") || exitCode(err) != 2 {
			t.Errorf("--db %s: %v (exit %d), want a usage error", db, err, exitCode(err))
		}
		if strings.Contains(fmt.Sprint(err)+stderr, pw) {
			t.Errorf("--db %s: the password shows: %v %s", fleetdb.Redact(db), err, stderr)
		}
	}
	db := "postgres://skiff:" + pw + "@127.0.0.1:1/skiff?connect_timeout=5"
	_, stderr, err := run(t, "serve", "--state", dir, "--cache", dir, "--addr", "127.0.0.1:0", "--db", db)
	if !errors.Is(err, fleetdb.ErrUnreachable) || !strings.Contains(err.Error(), "127.0.0.1:1") || exitCode(err) != 1 {
		t.Errorf("--db of a database that does not answer: %v (exit %d), want ErrUnreachable naming 127.0.0.1:1", err, exitCode(err))
	}
	if strings.Contains(fmt.Sprint(err)+stderr, pw) {
		t.Errorf("the password shows: %v %s", err, stderr)
	}
}

// TestFleetDevicesTLS: against a server on HTTPS that requires client
// certificates, --ca-file and --client-cert/--client-key are needed.
func TestFleetDevicesTLS(t *testing.T) {
	s, err := server.New(server.Config{StateDir: t.TempDir(), CacheDir: t.TempDir(),
		AdminTokens: []string{fleetAdmin}, DeviceTokens: []string{fleetDevice},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ca := tlstest.NewCA(t, "fleet")
	dir := t.TempDir()
	srvPair, cli := ca.Server(t, 1, dir), ca.Client(t, 2, dir)
	hs := httptest.NewUnstartedServer(s)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{srvPair.TLS}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	hs.StartTLS()
	t.Cleanup(hs.Close)
	tok := filepath.Join(dir, "admin")
	os.WriteFile(tok, []byte(fleetAdmin+"\n"), 0o600)
	t.Setenv("SKIFF_ADMIN_TOKEN", "")
	base := []string{"fleet", "devices", "--server", hs.URL, "--token-file", tok, "--format", "json"}
	out, _, err := run(t, append(base, "--ca-file", ca.CertFile, "--client-cert", cli.CertFile, "--client-key", cli.KeyFile)...)
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("with the CA and a client certificate: %v %q", err, out)
	}
	for name, extra := range map[string][]string{
		"system roots":          {"--client-cert", cli.CertFile, "--client-key", cli.KeyFile},
		"no client certificate": {"--ca-file", ca.CertFile},
	} {
		if _, _, err := run(t, append(base, extra...)...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := run(t, append(base, "--client-cert", cli.CertFile)...); exitCode(err) != 2 {
		t.Errorf("--client-cert without --client-key: %v, want a usage error", err)
	}
}
