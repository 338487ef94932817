package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/transport/api"
)

func testReport(id, device, channel, image string) api.Report {
	return api.Report{ID: id, Device: device, Channel: channel, Image: image, Result: api.ResultInstalled,
		ToDigest: "sha256:" + strings.Repeat("b", 64), Time: time.Now().UTC().Truncate(time.Millisecond),
		AgentVersion: "v1.2.3", Platform: "linux/arm/v7"}
}

func (ts *testServer) devices(query string) api.DevicesResponse {
	ts.t.Helper()
	w := ts.do("GET", api.PathDevices+query, adminToken, nil)
	if w.Code != http.StatusOK {
		ts.t.Fatalf("GET devices%s: %d %s", query, w.Code, w.Body)
	}
	var resp api.DevicesResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		ts.t.Fatal(err)
	}
	return resp
}

// TestFleetAuth: devices may report, not list the fleet; admins may do
// both; a scoped device token may report only for its pairs.
func TestFleetAuth(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) {
		c.DeviceScopes = map[string][]string{deviceToken: {"stable/web"}}
	})
	ids := 0
	id := func() string { ids++; return fmt.Sprintf("%032x", ids) }
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		code                      int
	}{
		{"device reports in scope", "POST", api.PathReports, deviceToken, testReport(id(), "d1", "stable", "web"), 200},
		{"device reports out of scope", "POST", api.PathReports, deviceToken, testReport(id(), "d1", "stable", "cam"), 403},
		{"unscoped device reports anything", "POST", api.PathReports, "another-device-token", testReport(id(), "d1", "beta", "cam"), 200},
		{"admin reports", "POST", api.PathReports, adminToken, testReport(id(), "d2", "beta", "cam"), 200},
		{"no token reports", "POST", api.PathReports, "", testReport(id(), "d1", "stable", "web"), 401},
		{"unknown token reports", "POST", api.PathReports, "nope", testReport(id(), "d1", "stable", "web"), 401},
		{"device lists", "GET", api.PathDevices, deviceToken, nil, 403},
		{"unscoped device lists", "GET", api.PathDevices, "another-device-token", nil, 403},
		{"no token lists", "GET", api.PathDevices, "", nil, 401},
		{"admin lists", "GET", api.PathDevices, adminToken, nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := ts.do(tc.method, tc.path, tc.token, tc.body); w.Code != tc.code {
				t.Errorf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
		})
	}
}

// TestReportValidation: malformed reports and oversized bodies are 400.
func TestReportValidation(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	ok := testReport(strings.Repeat("a", 32), "d1", "stable", "web")
	for _, tc := range []struct {
		name string
		mod  func(*api.Report)
	}{
		{"short id", func(r *api.Report) { r.ID = "abc" }},
		{"uppercase id", func(r *api.Report) { r.ID = strings.Repeat("A", 32) }},
		{"no device", func(r *api.Report) { r.Device = "" }},
		{"bad channel", func(r *api.Report) { r.Channel = "../x" }},
		{"bad digest", func(r *api.Report) { r.ToDigest = "sha256:zz" }},
		{"bad result", func(r *api.Report) { r.Result = "exploded" }},
		{"long error", func(r *api.Report) { r.Error = strings.Repeat("e", maxReportError+1) }},
		{"no time", func(r *api.Report) { r.Time = time.Time{} }},
		{"negative bytes", func(r *api.Report) { r.Bytes = -1 }},
		{"control char", func(r *api.Report) { r.AgentVersion = "v1\x1b[31m" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := ok
			tc.mod(&r)
			if w := ts.do("POST", api.PathReports, deviceToken, r); w.Code != http.StatusBadRequest {
				t.Errorf("%d %s, want 400", w.Code, w.Body)
			}
		})
	}
	big := `{"id":"` + strings.Repeat("a", 32) + `","error":"` + strings.Repeat("x", maxBody) + `"}`
	if w := ts.do("POST", api.PathReports, deviceToken, big); w.Code != http.StatusBadRequest {
		t.Errorf("a body over %d bytes: %d, want 400", maxBody, w.Code)
	}
	if w := ts.do("POST", api.PathReports, deviceToken, ok); w.Code != http.StatusOK {
		t.Errorf("the valid report: %d %s", w.Code, w.Body)
	}
}

// TestReportIdempotentHandler: the same report sent three times is
// stored and counted once; the answers say it was a duplicate.
func TestReportIdempotentHandler(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	r := testReport(strings.Repeat("c", 32), "d1", "stable", "web")
	r.Result = api.ResultRolledBack
	r.Error = "health check failed"
	for i, dup := range []bool{false, true, true} {
		w := ts.do("POST", api.PathReports, deviceToken, r)
		var resp api.ReportResponse
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.Duplicate != dup || resp.ID != r.ID {
			t.Fatalf("send %d: %d %s, want duplicate=%v", i, w.Code, w.Body, dup)
		}
	}
	if n := testutil.ToFloat64(ts.metrics.reports.WithLabelValues(api.ResultRolledBack)); n != 1 {
		t.Errorf("skiff_server_reports_total{result=rolled_back} = %v, want 1", n)
	}
	devs := ts.devices("")
	if len(devs.Devices) != 1 || devs.Devices[0].Images[0].LastReport == nil ||
		devs.Devices[0].Images[0].LastReport.Error != "health check failed" {
		t.Errorf("inventory %+v", devs)
	}
}

// TestCheckinInventory: check-ins (with and without the new optional
// fields) fill the inventory; filters select; bad filters are 400.
func TestCheckinInventory(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[1])
	ts.publish("beta", "web", refs[1])
	newer := device(t, imgs[1], "stable", "web")
	newer.Device, newer.AgentVersion, newer.Platform = "dev-new", "v2.0.0", "linux/arm64"
	ts.check(newer)
	old := device(t, imgs[0], "beta", "web") // an old agent: no version, no platform
	old.Device = "dev-old"
	ts.check(old)
	// A raw old-agent body (no new fields at all) is accepted.
	raw := `{"device":"dev-raw","channel":"stable","image":"web","config_digest":""}`
	if w := ts.do("POST", api.PathCheck, deviceToken, raw); w.Code != 200 {
		t.Fatalf("an old agent's check: %d %s", w.Code, w.Body)
	}
	anon := device(t, imgs[0], "stable", "web")
	anon.Device = "" // no device name: not in the inventory
	ts.check(anon)

	all := ts.devices("")
	var ids []string
	for _, d := range all.Devices {
		ids = append(ids, d.ID)
	}
	if strings.Join(ids, ",") != "dev-new,dev-old,dev-raw" {
		t.Fatalf("devices %v", ids)
	}
	n := all.Devices[0].Images[0]
	if n.AgentVersion != "v2.0.0" || n.Platform != "linux/arm64" || n.ConfigDigest != configDigest(t, imgs[1]) ||
		n.Channel != "stable" || time.Since(n.LastSeen) > time.Minute {
		t.Errorf("dev-new: %+v", n)
	}
	for _, tc := range []struct{ query, want string }{
		{"?channel=beta", "dev-old"},
		{"?config_digest=" + configDigest(t, imgs[1]), "dev-new"},
		{"?image=web&channel=stable", "dev-new,dev-raw"},
		{"?stale=1h", ""},
		{"?limit=1", "dev-new"},
		{"?limit=1&after=dev-new", "dev-old"},
	} {
		var got []string
		for _, d := range ts.devices(tc.query).Devices {
			got = append(got, d.ID)
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: %v, want %s", tc.query, got, tc.want)
		}
	}
	if next := ts.devices("?limit=2").Next; next != "dev-old" {
		t.Errorf("next %q, want dev-old", next)
	}
	for _, q := range []string{"?stale=forever", "?stale=-1h", "?limit=0", "?limit=5000", "?result=meh",
		"?config_digest=abc", "?chanel=stable", "?channel=a&channel=b", "?image=" + url.QueryEscape("a b")} {
		if w := ts.do("GET", api.PathDevices+q, adminToken, nil); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, w.Code)
		}
	}
	bad := newer
	bad.AgentVersion = strings.Repeat("v", maxLabel+1)
	if w := ts.do("POST", api.PathCheck, deviceToken, bad); w.Code != http.StatusBadRequest {
		t.Errorf("an agent_version over %d bytes: %d, want 400", maxLabel, w.Code)
	}
}

// TestFleetDBFlag: Config.FleetDB names the database; a bad one fails New.
func TestFleetDBFlag(t *testing.T) {
	path := filepath.Join(t.TempDir(), "elsewhere", "inv.db")
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.FleetDB = "sqlite:" + path })
	if w := ts.do("POST", api.PathReports, deviceToken, testReport(strings.Repeat("d", 32), "d", "stable", "web")); w.Code != 200 {
		t.Fatal(w.Code, w.Body)
	}
	ts.Close()
	ts2 := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.FleetDB = "sqlite:" + path })
	if got := ts2.devices(""); len(got.Devices) != 1 {
		t.Errorf("devices in %s after a restart: %+v", path, got)
	}
	if _, err := New(Config{StateDir: t.TempDir(), CacheDir: t.TempDir(), FleetDB: "mysql:x"}); err == nil {
		t.Error("New with a bad FleetDB: no error")
	}
}
