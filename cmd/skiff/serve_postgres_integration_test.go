//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb"
	"github.com/skiff-dev/skiff/transport/server/fleetdb/fleetdbtest"
)

// TestIntegrationServePostgres: skiff serve --db postgres://… with a
// password in the DSN (the infra's trust login ignores it) serves, stores
// a report in PostgreSQL, and logs the DSN without the password.
func TestIntegrationServePostgres(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "pg-s3cret"
	u.User = url.UserPassword(u.User.Username(), pw)
	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "dev-token-0123456789")
	addrc := make(chan net.Addr, 1)
	o := &serveOptions{addr: "127.0.0.1:0", stateDir: filepath.Join(dir, "state"), cacheDir: filepath.Join(dir, "cache"),
		db: u.String(), logFormat: "json", logLevel: "info", maxDiffs: 1, retryAfter: 5 * time.Second,
		readTimeout: 5 * time.Second, shutdownGrace: 5 * time.Second, onListen: func(a net.Addr) { addrc <- a }}
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
	rep := api.Report{ID: strings.Repeat("ab", 16), Device: "dev-1", Channel: "stable", Image: "web",
		Result: api.ResultInstalled, Time: time.Now().UTC()}
	body, _ := json.Marshal(rep)
	req, _ := http.NewRequest("POST", base+api.PathReports, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer dev-token-0123456789")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("report: %d", resp.StatusCode)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var first map[string]any
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil || first["msg"] != "serving" {
		t.Fatalf("first log line is not a JSON \"serving\" record: %q", line)
	}
	if db, _ := first["db"].(string); !strings.HasPrefix(db, "postgres://skiff:xxxxx@127.0.0.1:") {
		t.Errorf("serving log: db %q, want the DSN with the password as xxxxx", db)
	}
	if strings.Contains(logs.String(), pw) {
		t.Errorf("the password is logged:\n%s", logs.String())
	}
	// The report is in the database.
	st, err := fleetdb.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	devs, _, err := st.Devices(context.Background(), fleetdb.Filter{})
	if err != nil || len(devs) != 1 || devs[0].Images[0].LastReport == nil || devs[0].Images[0].LastReport.ID != rep.ID {
		t.Errorf("devices in PostgreSQL: %+v (%v), want dev-1 with report %s", devs, err, rep.ID)
	}
	out, _, err := run(t, "serve", "--help")
	if err != nil || !strings.Contains(out, "postgres://") || !strings.Contains(out, "sqlite:PATH") {
		t.Errorf("serve --help does not name both backends: %v\n%s", err, out)
	}
}
