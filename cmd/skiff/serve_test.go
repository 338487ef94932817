package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/transport/api"
)

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "tokens")
	os.WriteFile(good, []byte("# fleet A\nalpha\n\n  beta  \n#gamma\n"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("# nothing\n\n"), 0o600)
	for _, tc := range []struct {
		name, path, env string
		want            []string
		wantErr         string
	}{
		{"file", good, "", []string{"alpha", "beta"}, ""},
		{"env and file", good, " one, ,two ", []string{"one", "two", "alpha", "beta"}, ""},
		{"env only", "", "solo", []string{"solo"}, ""},
		{"nothing", "", "", nil, ""},
		{"empty file", empty, "", nil, "holds no token"},
		{"missing file", filepath.Join(dir, "nope"), "", nil, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("SKIFF_TEST_TOKENS", tc.env)
			got, err := loadTokens(tc.path, "SKIFF_TEST_TOKENS")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestServeUsage(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "")
	t.Setenv("SKIFF_DEVICE_TOKENS", "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no state", []string{"serve", "--cache", dir}, "required flag"},
		{"no tokens", []string{"serve", "--state", dir, "--cache", dir}, "no tokens"},
		{"bad log format", []string{"serve", "--state", dir, "--cache", dir, "--log-format", "xml"}, "--log-format"},
		{"bad log level", []string{"serve", "--state", dir, "--cache", dir, "--log-level", "loud"}, "--log-level"},
		{"bad max-diffs", []string{"serve", "--state", dir, "--cache", dir, "--max-diffs", "0"}, "--max-diffs"},
		{"bad max-connections", []string{"serve", "--state", dir, "--cache", dir, "--max-connections", "-1"}, "--max-connections -1"},
		{"bad read-timeout", []string{"serve", "--state", dir, "--cache", dir, "--read-timeout", "10ms"}, "--read-timeout 10ms: must be at least 1s"},
		{"bad report-retention", []string{"serve", "--state", dir, "--cache", dir, "--report-retention", "-1h"}, "--report-retention -1h0m0s: must be 0 (forever) or positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || exitCode(err) != 2 {
				t.Errorf("err %v (exit %d), want a usage error containing %q", err, exitCode(err), tc.want)
			}
		})
	}
}

// TestServe runs the command on a loopback port: tokens from a file and
// the environment, JSON logs, graceful stop when the context ends.
func TestServe(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "devices")
	os.WriteFile(tokFile, []byte("dev-token-0123456789\n"), 0o600)
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "")
	addrc := make(chan net.Addr, 1)
	o := &serveOptions{addr: "127.0.0.1:0", stateDir: filepath.Join(dir, "state"), cacheDir: filepath.Join(dir, "cache"),
		deviceFile: tokFile, logFormat: "json", logLevel: "info", maxDiffs: 1, retryAfter: 5 * time.Second,
		readTimeout: time.Second, maxConns: 8,
		shutdownGrace: 5 * time.Second, onListen: func(a net.Addr) { addrc <- a }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- runServe(ctx, o, &globalOptions{}, &logs) }()
	var base string
	select {
	case a := <-addrc:
		base = "http://" + a.String()
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	}
	req := func(method, path, token, body string) (int, string) {
		t.Helper()
		r, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := req("GET", "/healthz", "", ""); code != 200 || body != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, _ := req("PUT", "/v1/targets/stable/web", "dev-token-0123456789", `{"ref":"oci:/nonexistent:v1"}`); code != 403 {
		t.Errorf("publish with the device token from the file: %d, want 403", code)
	}
	if code, body := req("PUT", "/v1/targets/stable/web", "adm-token-0123456789", `{"ref":"oci:/nonexistent:v1"}`); code != 422 || !strings.Contains(body, "does not exist") {
		t.Errorf("publish with the admin token from the environment: %d %s, want 422", code, body)
	}
	code, body := req("POST", "/v1/check", "dev-token-0123456789", `{"channel":"stable","image":"web"}`)
	var e api.Error
	if code != 404 || json.Unmarshal([]byte(body), &e) != nil || e.Error == "" {
		t.Errorf("check: %d %s", code, body)
	}
	// A client that announces a body and never sends it, and clients that
	// hold every connection slot (--max-connections 8) idle, are cut after
	// --read-timeout: the server answers others again.
	addr := strings.TrimPrefix(base, "http://")
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	fmt.Fprintf(silent, "POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
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
	if code, _ := req("GET", "/healthz", "", ""); code != 200 {
		t.Errorf("healthz with every slot held: %d", code)
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("healthz took %s with every slot held by idle clients (read timeout 1s)", el)
	}
	silent.SetReadDeadline(time.Now().Add(8 * time.Second))
	if _, err := io.ReadAll(silent); err != nil {
		t.Errorf("the client that never sent its body: %v, want the server to close the connection", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v after the context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop")
	}
	var first map[string]any
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil || first["msg"] != "serving" {
		t.Errorf("first log line is not a JSON \"serving\" record: %q", line)
	}
	if want := "sqlite:" + filepath.Join(o.stateDir, "fleet.db"); first["db"] != want {
		t.Errorf("serving log: db %v, want %s", first["db"], want)
	}
	if !strings.Contains(logs.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown log:\n%s", logs.String())
	}
}

func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "tokens")
	os.WriteFile(open, []byte("x\n"), 0o644)
	private := filepath.Join(dir, "key")
	os.WriteFile(private, []byte("x\n"), 0o600)
	long := strings.Repeat("a", minTokenLen)
	for _, tc := range []struct {
		name          string
		admin, device []string
		files         []string
		err           string
		warn          []string
		quiet         bool
	}{
		{name: "one token in two roles", admin: []string{long, "shared-" + long}, device: []string{"shared-" + long},
			err: "device token 1 is also an admin token"},
		{name: "short token", admin: []string{"short"}, device: []string{long},
			warn: []string{"weak token", `"role":"admin"`, `"length":5`}},
		{name: "world-readable token file", admin: []string{long}, files: []string{"", open},
			warn: []string{"secret file readable by other users", `"mode":"0644"`}},
		{name: "good", admin: []string{long}, device: []string{long + "b"}, files: []string{"", private, private}, quiet: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			err := checkSecrets(log, tc.admin, tc.device, tc.files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || exitCode(err) != 2 {
					t.Fatalf("err = %v, want a usage error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.warn {
				if !strings.Contains(logs.String(), w) {
					t.Errorf("logs %q, want %q", logs.String(), w)
				}
			}
			if tc.quiet && logs.Len() != 0 {
				t.Errorf("logs %q, want none", logs.String())
			}
			if strings.Contains(logs.String(), "short\"") {
				t.Errorf("a token was logged: %s", logs.String())
			}
		})
	}
}

// TestScopedTokens: a device token file line may name the (channel,
// image) pairs its token may check; admin tokens take no scopes.
func TestScopedTokens(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SKIFF_TEST_TOKENS", "")
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	good := file("devices", "# kiosk fleet\nkiosk-token-0123456789 stable/web stable/cam\nlab-token-0123456789 beta/*\nany-token-0123456789\n")
	toks, scopes, err := loadScopedTokens(good, "SKIFF_TEST_TOKENS")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"kiosk-token-0123456789", "lab-token-0123456789", "any-token-0123456789"}, toks); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	want := map[string][]string{"kiosk-token-0123456789": {"stable/web", "stable/cam"}, "lab-token-0123456789": {"beta/*"}}
	if diff := cmp.Diff(want, scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	if _, _, err := loadScopedTokens(file("bad", "tok-0123456789abcdef stable\n"), "SKIFF_TEST_TOKENS"); err == nil || !strings.Contains(err.Error(), `scope "stable"`) {
		t.Errorf("a scope without an image: %v", err)
	}
	if _, err := loadTokens(good, "SKIFF_TEST_TOKENS"); err == nil || !strings.Contains(err.Error(), "admin tokens have no scopes") {
		t.Errorf("scopes in an admin token file: %v", err)
	}
}

// TestServeReportRetention: the flag reaches the server's config, 0
// meaning forever (the server's -1) and the default 90 days.
func TestServeReportRetention(t *testing.T) {
	for _, tc := range []struct {
		flag time.Duration
		want time.Duration
	}{{90 * 24 * time.Hour, 90 * 24 * time.Hour}, {0, -1}, {time.Hour, time.Hour}} {
		o := &serveOptions{reportRetention: tc.flag}
		if got := o.serverConfig(&globalOptions{}, nil, nil, nil, nil, nil, 0).ReportRetention; got != tc.want {
			t.Errorf("--report-retention %v: config %v, want %v", tc.flag, got, tc.want)
		}
	}
}
