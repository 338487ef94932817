//go:build integration

package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/fleetdb/fleetdbtest"
)

// The fleet load: loadDevices simulated devices, loadConcurrency at a
// time, each checks in (and is offered the delta) and then posts an
// install report with an ID of its own; the run ends at loadDeadline
// whatever happened.
const (
	loadDevices     = 10_000
	loadConcurrency = 200
	loadDeadline    = 5 * time.Minute
)

// TestIntegrationLoadFleetPostgres: the fleet load against one server on
// PostgreSQL.
func TestIntegrationLoadFleetPostgres(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	fleetLoad(t, "PostgreSQL, one server", dsn, 1, countPostgres(dsn))
}

// TestIntegrationLoadFleetPostgresTwoServers: the same load split between
// two servers (two listeners) that share the state directory, the cache
// and one PostgreSQL database.
func TestIntegrationLoadFleetPostgresTwoServers(t *testing.T) {
	dsn := fleetdbtest.PostgresDSN(t)
	fleetLoad(t, "PostgreSQL, two servers", dsn, 2, countPostgres(dsn))
}

// TestIntegrationLoadFleetSQLite: the same load against one server on
// SQLite, for comparison.
func TestIntegrationLoadFleetSQLite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fleet.db")
	fleetLoad(t, "SQLite, one server", "sqlite:"+path, 1, func(q string) (int64, error) {
		db, err := sql.Open("sqlite", path)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		var n int64
		return n, db.QueryRow(q).Scan(&n)
	})
}

// counter runs a SELECT COUNT(…) on the load's database.
type counter func(query string) (int64, error)

func countPostgres(dsn string) counter {
	return func(q string) (int64, error) {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return 0, err
		}
		defer db.Close()
		var n int64
		return n, db.QueryRow(q).Scan(&n)
	}
}

// fleetLoad runs the load against n servers on the database dsn and
// checks that nothing was lost: every report is a row of reports, and
// every device is in GET /v1/devices of every server, seen, with its
// report as the last.
func fleetLoad(t *testing.T, name, dsn string, n int, count counter) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	withDB := func(c *Config) { c.FleetDB = dsn }
	first := newTestServer(t, stateDir, cacheDir, withDB)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	first.publish("stable", "web", refs[0])
	target := first.publish("stable", "web", refs[1])
	dev := device(t, imgs[0], "stable", "web")
	if resp := first.waitDelta(dev); resp.Delta == nil {
		t.Fatalf("%+v", resp)
	}
	servers := []*testServer{first}
	for len(servers) < n {
		// The others share the state directory and the cache (the
		// published target and its delta) and the database.
		servers = append(servers, newTestServer(t, stateDir, cacheDir, withDB))
	}
	urls := make([]string, n)
	for i, ts := range servers {
		hs := httptest.NewServer(ts)
		t.Cleanup(hs.Close)
		urls[i] = hs.URL
	}

	tr := &http.Transport{MaxIdleConnsPerHost: loadConcurrency}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for _, u := range urls {
		if _, err := loadCheckin(c, u, dev); err != nil {
			t.Fatalf("warm-up check-in on %s: %v", u, err)
		}
	}

	nonce := make([]byte, 8)
	rand.Read(nonce)
	reportID := func(i int) string { return fmt.Sprintf("%s%016x", hex.EncodeToString(nonce), i) }
	deviceID := func(i int) string { return fmt.Sprintf("load-%05d", i) }
	checkLat := make([]time.Duration, loadDevices)
	reportLat := make([]time.Duration, loadDevices)
	errs := make([]error, loadDevices)
	var done atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), loadDeadline)
	defer cancel()
	next := make(chan int)
	go func() {
		defer close(next)
		for i := range loadDevices {
			select {
			case next <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	t0 := time.Now()
	for range loadConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				u := urls[i%n]
				req := dev
				req.Device, req.AgentVersion, req.Platform = deviceID(i), "v0.0.0-load", "linux/arm64"
				s := time.Now()
				resp, err := loadCheckin(c, u, req)
				checkLat[i] = time.Since(s)
				if err != nil {
					errs[i] = fmt.Errorf("check-in: %w", err)
					continue
				}
				rep := api.Report{ID: reportID(i), Device: req.Device, Channel: "stable", Image: "web",
					FromDigest: req.ConfigDigest, ToDigest: resp.Target.ConfigDigest, Result: api.ResultInstalled,
					Bytes: resp.Delta.Size, DurationMS: 1234, AgentVersion: req.AgentVersion, Platform: req.Platform,
					Time: time.Now().UTC()}
				s = time.Now()
				errs[i] = loadReport(c, u, rep)
				reportLat[i] = time.Since(s)
				if errs[i] == nil {
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(t0)
	var failed int
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("device %d: %v", i, err)
			}
		}
	}
	if got := done.Load(); got != loadDevices || failed > 0 {
		t.Fatalf("%s: %d of %d devices checked in and reported (%d failed) in %v (deadline %v)",
			name, got, loadDevices, failed, wall.Round(time.Millisecond), loadDeadline)
	}
	pct := func(lat []time.Duration, p float64) time.Duration {
		s := slices.Clone(lat)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1))].Round(100 * time.Microsecond)
	}
	t.Logf("%s: %d devices (%d at a time) checked in and reported in %v: %.0f requests/s; check-in p50 %v p99 %v; report p50 %v p99 %v",
		name, loadDevices, loadConcurrency, wall.Round(time.Millisecond), 2*loadDevices/wall.Seconds(),
		pct(checkLat, 0.50), pct(checkLat, 0.99), pct(reportLat, 0.50), pct(reportLat, 0.99))

	// Nothing lost: one row per report, and (check-ins are written after
	// their answer: wait for the last) every device seen.
	if got, err := count(`SELECT COUNT(*) FROM reports WHERE device LIKE 'load-%'`); err != nil || got != loadDevices {
		t.Errorf("%d reports stored (%v), want %d", got, err, loadDevices)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := count(`SELECT COUNT(*) FROM inventory WHERE device LIKE 'load-%' AND last_seen > 0 AND report_id <> ''`)
		if err != nil {
			t.Fatal(err)
		}
		if got == loadDevices {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d inventory rows seen and reported, want %d", got, loadDevices)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, u := range urls {
		seen := make([]bool, loadDevices)
		after := ""
		for {
			dr, err := loadDevicesPage(c, u, after)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range dr.Devices {
				var i int
				if _, err := fmt.Sscanf(d.ID, "load-%05d", &i); err != nil || i < 0 || i >= loadDevices {
					continue
				}
				im := d.Images[0]
				if len(d.Images) != 1 || im.LastSeen.IsZero() || im.LastReport == nil || im.LastReport.ID != reportID(i) ||
					im.ConfigDigest != dev.ConfigDigest || im.LastReport.ToDigest != target.ConfigDigest {
					t.Fatalf("%s on %s: %+v, want one row, seen, running %s, last report %s", d.ID, u, d, dev.ConfigDigest, reportID(i))
				}
				seen[i] = true
			}
			if dr.Next == "" {
				break
			}
			after = dr.Next
		}
		if missing := slices.Index(seen, false); missing >= 0 {
			t.Fatalf("GET /v1/devices on %s: %s missing", u, deviceID(missing))
		}
	}
}

func loadPost(c *http.Client, base, path string, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequest("POST", base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+deviceToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(rb)))
	}
	return json.Unmarshal(rb, out)
}

// loadCheckin checks in and wants the delta offered.
func loadCheckin(c *http.Client, base string, req api.CheckRequest) (*api.CheckResponse, error) {
	var cr api.CheckResponse
	if err := loadPost(c, base, api.PathCheck, req, &cr); err != nil {
		return nil, err
	}
	if !cr.Update || cr.Delta == nil || cr.Target == nil {
		return nil, fmt.Errorf("no delta offered: %+v", cr)
	}
	return &cr, nil
}

// loadReport posts a report and wants it stored as new.
func loadReport(c *http.Client, base string, rep api.Report) error {
	var rr api.ReportResponse
	if err := loadPost(c, base, api.PathReports, rep, &rr); err != nil {
		return err
	}
	if rr.ID != rep.ID || rr.Duplicate {
		return fmt.Errorf("report %s answered %+v", rep.ID, rr)
	}
	return nil
}

func loadDevicesPage(c *http.Client, base, after string) (*api.DevicesResponse, error) {
	q := "?limit=1000"
	if after != "" {
		q += "&after=" + url.QueryEscape(after)
	}
	req, err := http.NewRequest("GET", base+api.PathDevices+q, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("GET /v1/devices: %d %s", resp.StatusCode, b)
	}
	var dr api.DevicesResponse
	return &dr, json.NewDecoder(resp.Body).Decode(&dr)
}
