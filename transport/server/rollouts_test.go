package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server/rollout"
)

func (ts *testServer) startRollout(req api.RolloutRequest) api.Rollout {
	ts.t.Helper()
	w := ts.do("POST", api.PathRollouts, adminToken, req)
	if w.Code != http.StatusCreated {
		ts.t.Fatalf("start rollout %+v: %d %s", req, w.Code, w.Body)
	}
	var ro api.Rollout
	if err := json.Unmarshal(w.Body.Bytes(), &ro); err != nil {
		ts.t.Fatal(err)
	}
	return ro
}

func (ts *testServer) getRollout(id string) api.Rollout {
	ts.t.Helper()
	w := ts.do("GET", api.PathRollouts+id, adminToken, nil)
	if w.Code != http.StatusOK {
		ts.t.Fatalf("get rollout %s: %d %s", id, w.Code, w.Body)
	}
	var ro api.Rollout
	if err := json.Unmarshal(w.Body.Bytes(), &ro); err != nil {
		ts.t.Fatal(err)
	}
	return ro
}

// simDevice is one device of a simulated fleet: what it runs and the
// serial it installed it as.
type simDevice struct {
	id      string
	img     v1.Image
	running string
	serial  int64
}

type simFleet struct {
	t       *testing.T
	ts      *testServer
	devs    []*simDevice
	byID    map[string]v1.Image // config digest -> image
	reports int
}

func newSimFleet(t *testing.T, ts *testServer, n int, imgs []v1.Image) *simFleet {
	f := &simFleet{t: t, ts: ts, byID: map[string]v1.Image{}}
	for _, img := range imgs {
		f.byID[configDigest(t, img)] = img
	}
	for i := range n {
		f.devs = append(f.devs, &simDevice{id: fmt.Sprintf("sim-%03d", i), img: imgs[0], running: configDigest(t, imgs[0])})
	}
	return f
}

func (f *simFleet) req(d *simDevice) api.CheckRequest {
	r := device(f.t, d.img, "stable", "web")
	r.Device = d.id
	return r
}

// check is one check-in of d; a pending answer is waited out.
func (f *simFleet) check(d *simDevice) api.CheckResponse {
	f.t.Helper()
	resp := f.ts.check(f.req(d))
	if resp.Pending {
		resp = f.ts.waitDelta(f.req(d))
	}
	return resp
}

// install makes d run what resp offers, and reports it.
func (f *simFleet) install(d *simDevice, resp api.CheckResponse, result string) {
	f.t.Helper()
	from := d.running
	if result == api.ResultInstalled {
		d.img, d.running, d.serial = f.byID[resp.Target.ConfigDigest], resp.Target.ConfigDigest, resp.Target.Serial
	}
	f.report(d, from, resp.Target.ConfigDigest, result)
	f.ts.check(f.req(d)) // the check-in after the attempt: the inventory learns what runs
}

func (f *simFleet) report(d *simDevice, from, to, result string) {
	f.t.Helper()
	f.reports++
	r := api.Report{ID: fmt.Sprintf("%032x", f.reports), Device: d.id, Channel: "stable", Image: "web",
		FromDigest: from, ToDigest: to, Result: result, Time: time.Now().UTC()}
	if w := f.ts.do("POST", api.PathReports, deviceToken, r); w.Code != http.StatusOK {
		f.t.Fatalf("report %+v: %d %s", r, w.Code, w.Body)
	}
}

func (f *simFleet) count(digest string) int {
	n := 0
	for _, d := range f.devs {
		if d.running == digest {
			n++
		}
	}
	return n
}

func rolloutGauge(ts *testServer, ro api.Rollout, state string) float64 {
	return testutil.ToFloat64(ts.metrics.rolloutDevices.WithLabelValues("stable", "web", ro.ID, state))
}

// TestRolloutSimulatedFleet: 200 devices on v1. A rollout of v2 in waves
// 10%,100% offers v2 (with a delta) to the devices of the first wave
// only, those whose bucket is below 10; their rollbacks pause it; the
// others are offered v1 throughout and never a delta to v2. Abort sends
// the devices that installed v2 back to v1 with a higher serial, which
// their anti-rollback accepts. A rollout of a fixed v3 then completes
// every wave as devices report installs, and v3 becomes the track's
// target.
func TestRolloutSimulatedFleet(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 3)
	refs := writeLayout(t, t.TempDir(), imgs)
	v1d, v2d, v3d := configDigest(t, imgs[0]), configDigest(t, imgs[1]), configDigest(t, imgs[2])
	pub := ts.publish("stable", "web", refs[0])
	f := newSimFleet(t, ts, 200, imgs)
	for _, d := range f.devs {
		d.serial = pub.Serial
		if resp := f.check(d); resp.Update {
			t.Fatalf("%s runs the target and is offered %+v", d.id, resp)
		}
	}

	ro := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "10%,100%"})
	if ro.Status != "running" || ro.Target != v2d || ro.Previous != v1d || ro.Wave != 0 {
		t.Fatalf("started %+v", ro)
	}
	// The track's target did not move: a plain publish is refused while
	// the rollout governs it.
	if w := ts.do("PUT", api.PathTargets+"stable/web", adminToken, api.PublishRequest{Ref: refs[2]}); w.Code != http.StatusConflict {
		t.Errorf("publish during the rollout: %d %s, want 409", w.Code, w.Body)
	}
	if w := ts.do("POST", api.PathRollouts, adminToken, api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[2], Waves: "100%"}); w.Code != http.StatusConflict {
		t.Errorf("a second rollout: %d %s, want 409", w.Code, w.Body)
	}

	var wave1 []*simDevice
	for _, d := range f.devs {
		inWave := rollout.Bucket(ro.ID, d.id) < 10
		resp := f.check(d)
		switch {
		case inWave && (!resp.Update || resp.Target.ConfigDigest != v2d || resp.Delta == nil):
			t.Fatalf("%s (bucket %.2f) is offered %+v, want a delta to v2", d.id, rollout.Bucket(ro.ID, d.id), resp)
		case !inWave && (resp.Update || resp.Delta != nil || resp.Target.ConfigDigest != v1d):
			t.Fatalf("%s (bucket %.2f, not in wave 1) is offered %+v, want v1 and no update", d.id, rollout.Bucket(ro.ID, d.id), resp)
		}
		if inWave {
			wave1 = append(wave1, d)
			if resp.Target.Serial <= pub.Serial {
				t.Errorf("v2 offered as publish #%d, not above v1's #%d", resp.Target.Serial, pub.Serial)
			}
		}
	}
	if len(wave1) < 10 || len(wave1) > 35 {
		t.Fatalf("%d devices in wave 1 of 200 at 10%%", len(wave1))
	}
	// 5 install, then 3 roll back: more than 5% of the wave; the rest
	// have not reported.
	offer := f.ts.check(f.req(wave1[0]))
	for _, d := range wave1[:5] {
		f.install(d, offer, api.ResultInstalled)
	}
	for _, d := range wave1[5:8] {
		f.install(d, offer, api.ResultRolledBack)
	}
	ro = ts.getRollout(ro.ID)
	if ro.Status != "paused" || !strings.Contains(ro.PauseReason, "rolled back or failed") {
		t.Fatalf("after 3 rollbacks in a wave of %d: status %s (%q), want paused", len(wave1), ro.Status, ro.PauseReason)
	}
	// Paused: the wave's devices that run v2 keep it; nobody else gets it.
	for _, d := range f.devs {
		resp := f.check(d)
		want := v1d
		if d.running == v2d {
			want = v2d
		}
		if resp.Target.ConfigDigest != want || resp.Update || resp.Delta != nil {
			t.Fatalf("paused: %s (runs %s) is offered %+v, want %s and no update", d.id, d.running, resp, want)
		}
	}
	for state, want := range map[string]int{"target": 5, "rolled_back": 3, "failed": 0, "pending": len(wave1) - 8, "previous": 200 - len(wave1)} {
		if got := rolloutGauge(ts, ro, state); got != float64(want) {
			t.Errorf("skiff_rollout_devices{state=%s} = %v, want %d", state, got, want)
		}
	}
	if got := testutil.ToFloat64(ts.metrics.rolloutStatus.WithLabelValues("stable", "web", ro.ID, "paused")); got != 1 {
		t.Errorf("skiff_rollout_status{status=paused} = %v", got)
	}
	if got := testutil.ToFloat64(ts.metrics.rolloutEvents.WithLabelValues("paused")); got != 1 {
		t.Errorf("skiff_rollout_events_total{event=paused} = %v", got)
	}

	// Abort: the five that installed v2 are offered v1 as a newer publish.
	if w := ts.do("POST", api.PathRollouts+ro.ID+"/abort", adminToken, nil); w.Code != http.StatusOK {
		t.Fatalf("abort: %d %s", w.Code, w.Body)
	}
	for _, d := range f.devs {
		resp := f.check(d)
		if resp.Target.ConfigDigest != v1d {
			t.Fatalf("aborted: %s is offered %+v, want v1", d.id, resp)
		}
		if d.running == v2d {
			if !resp.Update || resp.Delta == nil || resp.Target.Serial <= d.serial {
				t.Fatalf("aborted: %s (installed v2 as #%d) is offered %+v, want a delta to v1 with a higher serial", d.id, d.serial, resp)
			}
			f.install(d, resp, api.ResultInstalled)
		} else if resp.Update {
			t.Fatalf("aborted: %s runs v1 and is offered an update %+v", d.id, resp)
		}
	}
	if f.count(v1d) != 200 {
		t.Fatalf("%d devices run v1 after the abort", f.count(v1d))
	}

	// A fixed target: a new rollout completes every wave.
	ro2 := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[2], Waves: "10%,100%"})
	for round := 0; round < 5 && ts.getRollout(ro2.ID).Status == "running"; round++ {
		for _, d := range f.devs {
			if d.running == v3d {
				continue
			}
			resp := f.check(d)
			if resp.Update && resp.Target.ConfigDigest == v3d {
				if resp.Delta == nil {
					t.Fatalf("%s offered v3 without a delta: %+v", d.id, resp)
				}
				f.install(d, resp, api.ResultInstalled)
			}
		}
	}
	ro2 = ts.getRollout(ro2.ID)
	if ro2.Status != "completed" || ro2.Wave != 1 || f.count(v3d) != 200 {
		t.Fatalf("second rollout: %s at wave %d, %d devices run v3; want completed, every device", ro2.Status, ro2.Wave+1, f.count(v3d))
	}
	if cur, _ := ts.state.current("stable", "web"); cur.ConfigDigest != v3d {
		t.Errorf("after completion the track's target is %s, want v3", cur.ConfigDigest)
	}
	if got := testutil.ToFloat64(ts.metrics.rolloutEvents.WithLabelValues("wave_started")); got != 1 {
		t.Errorf("skiff_rollout_events_total{event=wave_started} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(ts.metrics.rolloutEvents.WithLabelValues("completed")); got != 1 {
		t.Errorf("skiff_rollout_events_total{event=completed} = %v, want 1", got)
	}
	// The gauges are as the last Advance, the one that completed it, saw.
	if got, want := rolloutGauge(ts, ro2, "target"), ro2.Waves[1].Installed; got != float64(want) || want < 180 {
		t.Errorf("skiff_rollout_devices{state=target} = %v, want the last count %d (at least 90%% of 200)", got, want)
	}
	// Bounded series: the aborted rollout's are gone, the last finished
	// one's stay.
	if n := testutil.CollectAndCount(ts.metrics.rolloutStatus); n != 4 {
		t.Errorf("%d skiff_rollout_status series, want 4 (one rollout)", n)
	}
	// Settled: a plain publish works again.
	ts.publish("stable", "web", refs[0])
}

// TestRolloutAuth: devices may not start or change rollouts; admins may.
func TestRolloutAuth(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	start := api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "10%,100%"}
	for _, tok := range []string{"", deviceToken} {
		want := http.StatusForbidden
		if tok == "" {
			want = http.StatusUnauthorized
		}
		if w := ts.do("POST", api.PathRollouts, tok, start); w.Code != want {
			t.Errorf("start with %q: %d, want %d", tok, w.Code, want)
		}
		if w := ts.do("GET", api.PathRollouts, tok, nil); w.Code != want {
			t.Errorf("list with %q: %d, want %d", tok, w.Code, want)
		}
	}
	ro := ts.startRollout(start)
	for _, tc := range []struct {
		name, method, path, token string
		body                      any
		code                      int
	}{
		{"device pauses", "POST", api.PathRollouts + ro.ID + "/pause", deviceToken, nil, 403},
		{"device gets", "GET", api.PathRollouts + ro.ID, deviceToken, nil, 403},
		{"device pins", "PUT", api.PathRollouts + ro.ID + "/pins/d1", deviceToken, api.RolloutPin{ConfigDigest: ro.Previous}, 403},
		{"admin pauses", "POST", api.PathRollouts + ro.ID + "/pause", adminToken, api.RolloutPauseRequest{Reason: "lunch"}, 200},
		{"admin pauses again", "POST", api.PathRollouts + ro.ID + "/pause", adminToken, nil, 409},
		{"admin skips a paused rollout", "POST", api.PathRollouts + ro.ID + "/skip", adminToken, nil, 409},
		{"admin resumes", "POST", api.PathRollouts + ro.ID + "/resume", adminToken, nil, 200},
		{"admin pins", "PUT", api.PathRollouts + ro.ID + "/pins/d1", adminToken, api.RolloutPin{ConfigDigest: ro.Previous}, 200},
		{"admin pins to an unknown image", "PUT", api.PathRollouts + ro.ID + "/pins/d1", adminToken, api.RolloutPin{ConfigDigest: "sha256:" + strings.Repeat("9", 64)}, 404},
		{"admin unpins", "DELETE", api.PathRollouts + ro.ID + "/pins/d1", adminToken, nil, 200},
		{"admin unpins again", "DELETE", api.PathRollouts + ro.ID + "/pins/d1", adminToken, nil, 404},
		{"unknown action", "POST", api.PathRollouts + ro.ID + "/explode", adminToken, nil, 404},
		{"unknown rollout", "GET", api.PathRollouts + "nope", adminToken, nil, 404},
		{"admin lists", "GET", api.PathRollouts + "?status=running", adminToken, nil, 200},
		{"bad filter", "GET", api.PathRollouts + "?state=running", adminToken, nil, 400},
		{"admin skips", "POST", api.PathRollouts + ro.ID + "/skip", adminToken, nil, 200},
		{"admin aborts", "POST", api.PathRollouts + ro.ID + "/abort", adminToken, nil, 200},
		{"pin after the abort", "PUT", api.PathRollouts + ro.ID + "/pins/d1", adminToken, api.RolloutPin{ConfigDigest: ro.Previous}, 409},
		{"bad plan", "POST", api.PathRollouts, adminToken, api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "50%,10%"}, 400},
		{"ref and digest", "POST", api.PathRollouts, adminToken, api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], ConfigDigest: ro.Target, Waves: "100%"}, 400},
		{"unpublished track", "POST", api.PathRollouts, adminToken, api.RolloutRequest{Channel: "beta", Image: "web", Ref: refs[1], Waves: "100%"}, 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if w := ts.do(tc.method, tc.path, tc.token, tc.body); w.Code != tc.code {
				t.Errorf("%d %s, want %d", w.Code, w.Body, tc.code)
			}
		})
	}
	if got := ts.getRollout(ro.ID); got.Status != "aborted" || got.Wave != 1 {
		t.Errorf("rollout after the table: %s at wave %d", got.Status, got.Wave+1)
	}
}

// TestRolloutLabels: a group wave takes the devices whose check-ins carry
// its labels; bad labels are refused.
func TestRolloutLabels(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ro := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "group=canary,100%"})
	canary := device(t, imgs[0], "stable", "web")
	canary.Device, canary.Labels = "c1", map[string]string{"group": "canary", "site": "berlin"}
	other := device(t, imgs[0], "stable", "web")
	other.Device = "o1"
	if resp := ts.check(canary); !resp.Update || resp.Target.ConfigDigest != ro.Target {
		t.Errorf("canary offered %+v, want the target", resp)
	}
	if resp := ts.check(other); resp.Update || resp.Target.ConfigDigest != ro.Previous {
		t.Errorf("a device outside the group offered %+v, want the previous", resp)
	}
	for _, l := range []map[string]string{{"": "x"}, {"group": "a b"}, {"k": strings.Repeat("v", 129)}} {
		bad := canary
		bad.Labels = l
		if w := ts.do("POST", api.PathCheck, deviceToken, bad); w.Code != http.StatusBadRequest {
			t.Errorf("labels %v: %d, want 400", l, w.Code)
		}
	}
	many := canary
	many.Labels = map[string]string{}
	for i := range rollout.MaxLabels + 1 {
		many.Labels[fmt.Sprint("k", i)] = "v"
	}
	if w := ts.do("POST", api.PathCheck, deviceToken, many); w.Code != http.StatusBadRequest {
		t.Errorf("%d labels: %d, want 400", len(many.Labels), w.Code)
	}
}

// TestRolloutTickSettles: a final rollout whose outcome was not written
// to the targets (its server stopped in between) is settled by the next
// tick of any server.
func TestRolloutTickSettles(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ro := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "100%"})
	st, err := ts.rollouts.GetRollout(t.Context(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	old := st.Rev
	if _, err := st.Skip(time.Now()); err != nil || st.Status != rollout.StatusCompleted {
		t.Fatalf("skip: %v, %s", err, st.Status)
	}
	if err := ts.rollouts.UpdateRollout(t.Context(), st, old); err != nil {
		t.Fatal(err)
	}
	cur, _ := ts.state.current("stable", "web")
	if cur.ConfigDigest != ro.Previous {
		t.Fatalf("the target moved before settling: %s", cur.ConfigDigest)
	}
	// state.json itself refuses a publish of the marked track (the check
	// under its lock, for a publish racing a rollout's start).
	cur.Ref += "-again"
	if _, err := ts.state.publish("stable", "web", cur); !errors.Is(err, ErrRolloutActive) {
		t.Errorf("state publish of a governed track: %v, want ErrRolloutActive", err)
	}
	// Completed, not settled: it still governs the check-ins.
	d := device(t, imgs[0], "stable", "web")
	if resp := ts.check(d); resp.Target.ConfigDigest != ro.Target {
		t.Errorf("completed, unsettled: offered %s, want the target", resp.Target.ConfigDigest)
	}
	ts.rolloutRound(t.Context())
	if cur, _ := ts.state.current("stable", "web"); cur.ConfigDigest != ro.Target {
		t.Errorf("after the tick the track's target is %s, want the rollout's", cur.ConfigDigest)
	}
	if _, err := ts.rollouts.GoverningRollout(t.Context(), "stable", "web"); err == nil {
		t.Error("a settled rollout still governs the track")
	}
}

// TestRolloutTwoServers: two servers sharing the state directory and the
// fleet database agree on a rollout: one starts it, the other offers its
// target to the same devices, advances it from reports, and sees the
// first one's pause; a stale write loses its compare-and-set.
func TestRolloutTwoServers(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	a := newTestServer(t, stateDir, cacheDir, func(c *Config) { c.RolloutTick = -1 })
	b := newTestServer(t, stateDir, cacheDir, func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	a.publish("stable", "web", refs[0])
	// A plain publish reaches b when it next reads state.json (at most a
	// second later); do not wait for it.
	b.state.mu.Lock()
	b.state.checked = time.Time{}
	b.state.mu.Unlock()
	fa, fb := newSimFleet(t, a, 40, imgs), newSimFleet(t, b, 40, imgs)
	for i, d := range fa.devs {
		if i%2 == 0 {
			fa.check(d)
		} else {
			fb.check(fb.devs[i])
		}
	}
	ro := a.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "25%,100%", MinDevices: 1})
	// b learns of the rollout when it re-reads state.json, at most a
	// second later: do not wait.
	b.state.mu.Lock()
	b.state.checked = time.Time{}
	b.state.mu.Unlock()
	for i, d := range fb.devs {
		inWave := rollout.Bucket(ro.ID, d.id) < 25
		ra, rb := fa.ts.check(fa.req(fa.devs[i])), fb.ts.check(fb.req(d))
		if ra.Target.ConfigDigest != rb.Target.ConfigDigest || (rb.Target.ConfigDigest == ro.Target) != inWave {
			t.Fatalf("%s (bucket %.1f): a offers %s, b offers %s", d.id, rollout.Bucket(ro.ID, d.id), ra.Target.ConfigDigest, rb.Target.ConfigDigest)
		}
	}
	// Reports to b move the rollout a started.
	for _, d := range fb.devs {
		if rollout.Bucket(ro.ID, d.id) < 25 {
			fb.install(d, fb.check(d), api.ResultInstalled)
		}
	}
	if got := a.getRollout(ro.ID); got.Wave != 1 || got.Status != "running" {
		t.Fatalf("after wave 1 installed via b: wave %d, %s; want wave 2 running", got.Wave+1, got.Status)
	}
	// a pauses; b's stale copy loses its write.
	stale, err := b.rollouts.GetRollout(t.Context(), ro.ID)
	if err != nil {
		t.Fatal(err)
	}
	if w := a.do("POST", api.PathRollouts+ro.ID+"/pause", adminToken, nil); w.Code != http.StatusOK {
		t.Fatalf("pause on a: %d %s", w.Code, w.Body)
	}
	old := stale.Rev
	if _, err := stale.Skip(time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.rollouts.UpdateRollout(t.Context(), stale, old); err == nil {
		t.Fatal("b's write over a's pause landed")
	}
	if got := b.getRollout(ro.ID); got.Status != "paused" {
		t.Errorf("b sees %s, want paused", got.Status)
	}
	// Paused on a: b offers the target to nobody new.
	for _, d := range fb.devs {
		if resp := fb.check(d); d.running != ro.Target && resp.Target.ConfigDigest == ro.Target {
			t.Fatalf("paused: b offers the target to %s", d.id)
		}
	}
}

// TestEventKind: the event label of skiff_rollout_events_total for the
// texts rollout.State and the handlers make.
func TestEventKind(t *testing.T) {
	for ev, want := range map[string]string{
		"started": "started",
		"wave 2 (10%) started: wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%)":               "wave_started",
		"wave 1 (1%): 10 of 10 devices installed (100% ≥ 90%); soaking until 2026-12-04T19:00:00Z": "soaking",
		"paused: wave 1 (1%): 3 of 10 devices rolled back or failed (30% > 5%)":                    "paused",
		"paused":  "paused",
		"resumed": "resumed",
		"skipped: wave 2 (100%) started: skipped by an admin": "skipped",
		"aborted": "aborted",
		"completed: wave 2 (100%): 200 of 200 devices installed (100% ≥ 90%)": "completed",
		"pinned d1 to sha256:00": "pinned",
		"unpinned d1":            "unpinned",
		"something new":          "other",
	} {
		if got := eventKind(ev); got != want {
			t.Errorf("eventKind(%q) = %q, want %q", ev, got, want)
		}
	}
}

// TestRolloutSoakTick: a wave that succeeded waits its soak, and the
// server's own tick, with no report arriving, starts the next wave once
// the soak is over.
func TestRolloutSoakTick(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = 20 * time.Millisecond })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	f := newSimFleet(t, ts, 10, imgs)
	for _, d := range f.devs {
		f.check(d)
	}
	ro := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "10%,100%", MinDevices: 2, Soak: "300ms"})
	for _, d := range f.devs {
		if resp := f.check(d); resp.Update && resp.Target.ConfigDigest == ro.Target {
			f.install(d, resp, api.ResultInstalled)
		}
	}
	got := ts.getRollout(ro.ID)
	if got.Wave != 0 || got.Waves[0].Succeeded == "" {
		t.Fatalf("after wave 1 installed: wave %d, succeeded %q; want wave 1 soaking", got.Wave+1, got.Waves[0].Succeeded)
	}
	deadline := time.Now().Add(10 * time.Second)
	for ts.getRollout(ro.ID).Wave == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the tick did not start wave 2 after the soak")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(ts.metrics.rolloutEvents.WithLabelValues("soaking")); got != 1 {
		t.Errorf("skiff_rollout_events_total{event=soaking} = %v, want 1", got)
	}
}

// TestRolloutConcurrentReports: the reports of a whole wave arriving at
// once start the next wave exactly once, and those of the rest complete
// the rollout once: concurrent advances coalesce, and compare-and-set
// lets one writer win each step.
func TestRolloutConcurrentReports(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.RolloutTick = -1 })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	f := newSimFleet(t, ts, 100, imgs)
	for _, d := range f.devs {
		f.check(d)
	}
	ro := ts.startRollout(api.RolloutRequest{Channel: "stable", Image: "web", Ref: refs[1], Waves: "50%,100%"})
	inWave := func(d *simDevice) bool { return rollout.Bucket(ro.ID, d.id) < 50 }
	n := 0
	reportAll := func(pick func(*simDevice) bool) {
		var wg sync.WaitGroup
		for _, d := range f.devs {
			if !pick(d) {
				continue
			}
			n++
			r := api.Report{ID: fmt.Sprintf("%032x", 1000+n), Device: d.id, Channel: "stable", Image: "web",
				FromDigest: ro.Previous, ToDigest: ro.Target, Result: api.ResultInstalled, Time: time.Now().UTC()}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b, _ := json.Marshal(r)
				req := httptest.NewRequest("POST", api.PathReports, bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+deviceToken)
				w := httptest.NewRecorder()
				ts.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					t.Errorf("report: %d %s", w.Code, w.Body)
				}
			}()
		}
		wg.Wait()
	}
	reportAll(inWave)
	if got := ts.getRollout(ro.ID); got.Wave != 1 || got.Status != "running" {
		t.Fatalf("after wave 1's reports: wave %d, %s (%s)", got.Wave+1, got.Status, got.PauseReason)
	}
	reportAll(func(d *simDevice) bool { return !inWave(d) })
	if got := ts.getRollout(ro.ID); got.Status != "completed" {
		t.Fatalf("after every report: %s at wave %d", got.Status, got.Wave+1)
	}
	for ev, want := range map[string]float64{"wave_started": 1, "completed": 1} {
		if got := testutil.ToFloat64(ts.metrics.rolloutEvents.WithLabelValues(ev)); got != want {
			t.Errorf("skiff_rollout_events_total{event=%s} = %v, want %v", ev, got, want)
		}
	}
}
