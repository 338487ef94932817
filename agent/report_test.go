package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/buildinfo"
	"github.com/skiff-dev/skiff/internal/tlstest"
	"github.com/skiff-dev/skiff/transport/api"
)

// reportServer is fakeServer plus POST /v1/reports, which can be down
// (503) or lose its answer (stores the report, answers 500).
type reportServer struct {
	*fakeServer
	down     atomic.Bool
	loseNext atomic.Bool
	mu       sync.Mutex
	got      []api.Report // every report received and stored, repeats too
}

func (s *reportServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != api.PathReports {
		s.fakeServer.ServeHTTP(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer dev-token" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if s.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	var rep api.Report
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.got = append(s.got, rep)
	s.mu.Unlock()
	if s.loseNext.CompareAndSwap(true, false) {
		http.Error(w, "lost", http.StatusInternalServerError)
		return
	}
	json.NewEncoder(w).Encode(api.ReportResponse{ID: rep.ID})
}

func (s *reportServer) reports() []api.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.Report(nil), s.got...)
}

func queued(t *testing.T, a *Agent) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(a.cfg.StateDir, ReportsDir))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

var queuedName = regexp.MustCompile(`^\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{32}\.json$`)

// TestReportQueue: an install is reported; while the server is down the
// report waits in the queue (one complete file, nothing temporary), is
// sent once the server is back, re-sent with the same ID when the answer
// was lost, and deleted once acknowledged. Check-ins carry the agent's
// version and platform.
func TestReportQueue(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.forward}}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	cfg := d.config(t, serverSource(srv.URL), "")
	cfg.Labels = map[string]string{"group": "canary"}
	a := newAgent(t, cfg)
	ctx := context.Background()

	rs.down.Store(true)
	res, err := a.Update(ctx, "web")
	if err != nil || !res.Updated {
		t.Fatalf("update: %+v %v", res, err)
	}
	if v := rs.lastReq.AgentVersion; v == "" || v != buildinfo.Get().Release {
		t.Errorf("check-in agent_version %q, want %q", v, buildinfo.Get().Release)
	}
	if pl := rs.lastReq.Platform; pl != buildinfo.Get().Platform {
		t.Errorf("check-in platform %q, want %q", pl, buildinfo.Get().Platform)
	}
	if l := rs.lastReq.Labels; len(l) != 1 || l["group"] != "canary" {
		t.Errorf("check-in labels %v, want the configured group=canary", l)
	}
	names := queued(t, a)
	if len(names) != 1 || !queuedName.MatchString(names[0]) {
		t.Fatalf("queue %v, want one <time>-<id>.json", names)
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, ReportsDir, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	var r api.Report
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("queued report: %v\n%s", err, b)
	}
	if r.Result != api.ResultInstalled || r.FromDigest != p.oldID || r.ToDigest != p.newID || r.Device != "test-device" ||
		r.Channel != "stable" || r.Image != "web" || r.Bytes != int64(len(p.forward)) || r.Time.IsZero() ||
		!strings.Contains(names[0], r.ID) || r.AgentVersion == "" || r.Platform == "" {
		t.Errorf("queued report %+v", r)
	}

	// Back up, but the first answer is lost: kept, and re-sent next time.
	rs.down.Store(false)
	rs.loseNext.Store(true)
	if _, err := a.Update(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := queued(t, a); len(got) != 1 {
		t.Fatalf("after a lost answer the queue is %v, want the report still there", got)
	}
	if _, err := a.Update(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := queued(t, a); len(got) != 0 {
		t.Fatalf("after the ack the queue is %v, want empty", got)
	}
	got := rs.reports()
	if len(got) != 2 || got[0].ID != r.ID || got[1].ID != r.ID {
		t.Fatalf("server got %+v, want the same report twice", got)
	}
	// Nothing more to send.
	if n, err := a.SendReports(ctx); n != 0 || err != nil {
		t.Errorf("SendReports on an empty queue: %d %v", n, err)
	}
}

// TestReportResults: a failed attempt reports failed with its error; a
// health check that fails reports rolled_back.
func TestReportResults(t *testing.T) {
	p := testPair(t)
	t.Run("failed", func(t *testing.T) {
		d := newDevice(t, p)
		rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.backward}} // a delta for another base
		srv := httptest.NewServer(rs)
		defer srv.Close()
		a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
		if _, err := a.Update(context.Background(), "web"); err == nil {
			t.Fatal("update with a delta for another base: no error")
		}
		got := rs.reports()
		if len(got) != 1 || got[0].Result != api.ResultFailed || got[0].Error == "" || got[0].ToDigest != p.newID || got[0].FromDigest != p.oldID {
			t.Fatalf("reports %+v, want one failed with an error", got)
		}
		if len(queued(t, a)) != 0 {
			t.Error("the acknowledged report is still queued")
		}
	})
	t.Run("rolled back", func(t *testing.T) {
		d := newDevice(t, p)
		rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.forward}}
		srv := httptest.NewServer(rs)
		defer srv.Close()
		cfg, _, _ := healthConfig(t, d, srv.URL, "command: exit 3\ninterval: 10ms\ntimeout: 50ms")
		a := newAgent(t, cfg)
		if _, err := a.Update(context.Background(), "web"); err == nil {
			t.Fatal("unhealthy update: no error")
		}
		got := rs.reports()
		if len(got) != 1 || got[0].Result != api.ResultRolledBack || !strings.Contains(got[0].Error, "no pass within") || got[0].ToDigest != p.newID {
			t.Fatalf("reports %+v, want one rolled_back", got)
		}
	})
}

// TestReportLoadRolledBack: a load whose check fails and whose previous
// image is put back reports rolled_back (not failed) with the cause.
func TestReportLoadRolledBack(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.forward}}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	eng := &misreporting{OCIEngine: &OCIEngine{Dir: d.images}}
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""), WithEngine("web", eng))
	_, err := a.Update(context.Background(), "web")
	if !errors.Is(err, ErrVerify) || eng.restos != 1 {
		t.Fatalf("update: %v (%d restores), want ErrVerify after one restore", err, eng.restos)
	}
	got := rs.reports()
	if len(got) != 1 || got[0].Result != api.ResultRolledBack || !strings.Contains(got[0].Error, "after the load") {
		t.Fatalf("reports %+v, want one rolled_back naming the failed check", got)
	}
}

// TestReportQueueBounded: past the bound the oldest reports go.
func TestReportQueueBounded(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, serverSource("http://127.0.0.1:1"), ""))
	a.maxReports = 3
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var ids []string
	for i := range 5 {
		r := api.Report{ID: fmt.Sprintf("%032x", i), Device: "d", Channel: "stable", Image: "web", Result: api.ResultInstalled, Time: t0.Add(time.Duration(i) * time.Second)}
		ids = append(ids, r.ID)
		if err := a.queueReport(r); err != nil {
			t.Fatal(err)
		}
	}
	names := queued(t, a)
	if len(names) != 3 {
		t.Fatalf("queue %v, want 3", names)
	}
	for i, n := range names {
		if !strings.Contains(n, ids[i+2]) {
			t.Errorf("queue[%d] = %s, want the report %s (the newest three kept)", i, n, ids[i+2])
		}
	}
	// A server that is down keeps them all.
	if n, err := a.SendReports(context.Background()); n != 0 || err == nil {
		t.Errorf("SendReports to a closed port: %d %v, want an error", n, err)
	}
	if len(queued(t, a)) != 3 {
		t.Error("reports lost while the server is down")
	}
}

// TestCheckinOldServer: a server that refuses the new check-in fields as
// unknown (servers before them) is asked again without them.
func TestCheckinOldServer(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	var tries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		// What an old server's decode says: the struct without the fields.
		var old struct {
			Device, Channel, Image string
			ConfigDigest           string   `json:"config_digest"`
			DiffIDs                []string `json:"diff_ids"`
		}
		if err := dec.Decode(&old); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(api.Error{Error: "body is not a valid *api.CheckRequest: " + err.Error() + ": bad request"})
			return
		}
		json.NewEncoder(w).Encode(api.CheckResponse{Target: &api.Target{ConfigDigest: p.oldID}})
	}))
	defer srv.Close()
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
	for i := range 2 {
		if _, err := a.Check(context.Background(), "web"); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	if n := tries.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (one refused, then without the fields twice)", n)
	}
}

// TestSendReportsSkipsAndDrops: a write in progress (temporary file) is
// left alone and not counted; an unreadable report, one of an image no
// longer configured and one the server refuses as malformed are dropped;
// a good one is sent.
func TestSendReportsSkipsAndDrops(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.forward}}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
	dir := filepath.Join(a.cfg.StateDir, ReportsDir)
	os.MkdirAll(dir, 0o755)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	good := api.Report{ID: strings.Repeat("1", 32), Device: "d", Channel: "stable", Image: "web", Result: api.ResultInstalled, Time: t0}
	gone := good
	gone.ID, gone.Image = strings.Repeat("2", 32), "removed-image"
	for _, r := range []api.Report{good, gone} {
		if err := a.queueReport(r); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, "20260101T000000.000000000Z-"+strings.Repeat("3", 32)+".json", []byte("{not json"))
	// The fake server refuses unknown fields with 400: malformed.
	writeFile(t, dir, "20260101T000000.000000001Z-"+strings.Repeat("4", 32)+".json", []byte(`{"image":"web","surprise":1}`))
	tmp := writeFile(t, dir, ".20260103T000000.000000000Z-"+strings.Repeat("5", 32)+".json.tmp-1", []byte("{"))
	n, err := a.SendReports(context.Background())
	if n != 1 || err != nil {
		t.Fatalf("SendReports: %d %v, want 1 sent", n, err)
	}
	if got := rs.reports(); len(got) != 1 || got[0].ID != good.ID {
		t.Errorf("server got %+v, want the good report only", got)
	}
	if left := queued(t, a); len(left) != 1 || left[0] != filepath.Base(tmp) {
		t.Errorf("queue %v, want only the write in progress", left)
	}
}

// TestReportsOverTLS: reports go with the server's TLS settings (pinned
// CA, client certificate), as check-ins do.
func TestReportsOverTLS(t *testing.T) {
	p := testPair(t)
	ca := tlstest.NewCA(t, "a")
	own := ca.Client(t, 10, t.TempDir())
	s := newTLSServer(t, ca, false) // answers 404 to reports: they stay queued
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, tlsSource(s.URL, ca.CertFile, own.CertFile, own.KeyFile), ""))
	r := api.Report{ID: strings.Repeat("7", 32), Device: "d", Channel: "stable", Image: "web", Result: api.ResultInstalled, Time: time.Now()}
	if err := a.queueReport(r); err != nil {
		t.Fatal(err)
	}
	if _, err := a.SendReports(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("SendReports: %v, want the server's 404", err)
	}
	if got := s.peer(api.PathReports); got != "device-10" {
		t.Errorf("the server saw client certificate %q on the report, want device-10", got)
	}
	if len(queued(t, a)) != 1 {
		t.Error("a report the server did not acknowledge left the queue")
	}
}

// TestReportResumedInstall: a run stopped after the load reports
// nothing; the next run, which finishes the install, reports it.
func TestReportResumedInstall(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	rs := &reportServer{fakeServer: &fakeServer{t: t, p: p, delta: p.forward}}
	srv := httptest.NewServer(rs)
	defer srv.Close()
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
	type stop struct{}
	ctx := context.WithValue(context.Background(), crashKey{}, func(point string) {
		if point == "loaded" {
			panic(stop{}) // the run ends here, as if killed
		}
	})
	func() {
		defer func() {
			if r := recover(); r != (stop{}) {
				t.Fatalf("the run did not stop after the load: %v", r)
			}
		}()
		a.Update(ctx, "web")
	}()
	if got := rs.reports(); len(got) != 0 || len(queued(t, a)) != 0 {
		t.Fatalf("a stopped run reported %+v (queue %v)", got, queued(t, a))
	}
	res, err := a.Update(context.Background(), "web")
	if err != nil || !res.Updated {
		t.Fatalf("the next run: %+v %v", res, err)
	}
	got := rs.reports()
	if len(got) != 1 || got[0].Result != api.ResultInstalled || got[0].FromDigest != p.oldID || got[0].ToDigest != p.newID {
		t.Fatalf("reports %+v, want the finished install", got)
	}
}

// TestCheckinServerWithoutLabels: a server that knows agent_version and
// platform but not labels (the release before staged rollouts) refuses
// labels as unknown: the agent asks again without the new fields.
func TestCheckinServerWithoutLabels(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	var tries atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries.Add(1)
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		var old struct {
			Device, Channel, Image string
			ConfigDigest           string   `json:"config_digest"`
			DiffIDs                []string `json:"diff_ids"`
			AgentVersion           string   `json:"agent_version"`
			Platform               string   `json:"platform"`
		}
		if err := dec.Decode(&old); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(api.Error{Error: "body is not a valid *api.CheckRequest: " + err.Error() + ": bad request"})
			return
		}
		json.NewEncoder(w).Encode(api.CheckResponse{Target: &api.Target{ConfigDigest: p.oldID}})
	}))
	defer srv.Close()
	cfg := d.config(t, serverSource(srv.URL), "")
	cfg.Labels = map[string]string{"group": "canary"}
	a := newAgent(t, cfg)
	if _, err := a.Check(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	if n := tries.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (labels refused, then without)", n)
	}
}
