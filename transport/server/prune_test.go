package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestPruneReports: reports older than the retention leave the database
// (counted), newer ones stay, the inventory keeps the device's last report;
// a pruned report sent again is stored again.
func TestPruneReports(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	r := testReport(strings.Repeat("d", 32), "d1", "stable", "web")
	if w := ts.do("POST", api.PathReports, deviceToken, r); w.Code != 200 {
		t.Fatalf("report: %d %s", w.Code, w.Body)
	}
	ctx := context.Background()
	if n, err := ts.pruneReports(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("pruning now: %d, %v; want nothing pruned (retention %v)", n, err, ts.cfg.ReportRetention)
	}
	if ts.cfg.ReportRetention != defaultReportRetention {
		t.Fatalf("retention %v, want the default %v", ts.cfg.ReportRetention, defaultReportRetention)
	}
	n, err := ts.pruneReports(ctx, time.Now().Add(defaultReportRetention+time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("pruning past the retention: %d, %v; want 1", n, err)
	}
	if got := testutil.ToFloat64(ts.metrics.pruned); got != 1 {
		t.Errorf("skiff_server_reports_pruned_total = %v, want 1", got)
	}
	devs := ts.devices("")
	if len(devs.Devices) != 1 || devs.Devices[0].Images[0].LastReport == nil || devs.Devices[0].Images[0].LastReport.ID != r.ID {
		t.Errorf("inventory after the prune: %+v", devs)
	}
	w := ts.do("POST", api.PathReports, deviceToken, r)
	var resp api.ReportResponse
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &resp) != nil || resp.Duplicate {
		t.Errorf("the pruned report sent again: %d %s, want it stored again", w.Code, w.Body)
	}
}
