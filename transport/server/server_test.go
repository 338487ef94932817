package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

func TestAuth(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	missing := api.PathDeltas + "sha256:" + strings.Repeat("0", 64)
	checkBody := api.CheckRequest{Channel: "stable", Image: "web"}
	for _, tc := range []struct {
		name          string
		method, path  string
		body          any
		auth          string // full Authorization header
		want          int
		wantChallenge bool
	}{
		{"check without token", "POST", api.PathCheck, checkBody, "", 401, true},
		{"check with unknown token", "POST", api.PathCheck, checkBody, "Bearer nope", 401, true},
		{"check with basic auth", "POST", api.PathCheck, checkBody, "Basic " + deviceToken, 401, true},
		{"check with empty bearer", "POST", api.PathCheck, checkBody, "Bearer ", 401, true},
		{"check with token prefix", "POST", api.PathCheck, checkBody, "Bearer " + deviceToken[:5], 401, true},
		{"check with device token", "POST", api.PathCheck, checkBody, "Bearer " + deviceToken, 404, false},
		{"check with second device token", "POST", api.PathCheck, checkBody, "Bearer another-device-token", 404, false},
		{"check with admin token", "POST", api.PathCheck, checkBody, "Bearer " + adminToken, 404, false},
		{"delta without token", "GET", missing, nil, "", 401, true},
		{"delta with device token", "GET", missing, nil, "Bearer " + deviceToken, 404, false},
		{"publish without token", "PUT", api.PathTargets + "stable/web", api.PublishRequest{Ref: "oci:/nonexistent:v1"}, "", 401, true},
		{"publish with unknown token", "PUT", api.PathTargets + "stable/web", api.PublishRequest{Ref: "oci:/nonexistent:v1"}, "Bearer x", 401, true},
		{"publish with device token", "PUT", api.PathTargets + "stable/web", api.PublishRequest{Ref: "oci:/nonexistent:v1"}, "Bearer " + deviceToken, 403, false},
		{"publish with admin token", "PUT", api.PathTargets + "stable/web", api.PublishRequest{Ref: "oci:/nonexistent:v1"}, "Bearer " + adminToken, 422, false},
		{"notify with device token", "POST", api.PathNotifications, Envelope{}, "Bearer " + deviceToken, 403, false},
		{"notify with admin token", "POST", api.PathNotifications, Envelope{}, "Bearer " + adminToken, 200, false},
		{"healthz without token", "GET", api.PathHealthz, nil, "", 200, false},
		{"metrics without token", "GET", api.PathMetrics, nil, "", 200, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := ts.do(tc.method, tc.path, "", tc.body, "Authorization", tc.auth)
			if w.Code != tc.want {
				t.Errorf("%s %s: got %d, want %d: %s", tc.method, tc.path, w.Code, tc.want, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate") != ""; got != tc.wantChallenge {
				t.Errorf("WWW-Authenticate present %v, want %v", got, tc.wantChallenge)
			}
			if w.Code >= 400 {
				var e api.Error
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not an api.Error", w.Body)
				}
			}
		})
	}
	if w := ts.do("GET", api.PathHealthz, "", nil); w.Body.String() != "ok" {
		t.Errorf("healthz body %q", w.Body)
	}
}

// TestNoTokenNoRole: a role without configured tokens is refused to all,
// and an empty token never matches.
func TestNoTokenNoRole(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.AdminTokens = []string{"", "  "}; c.DeviceTokens = nil })
	for _, tok := range []string{adminToken, deviceToken, "", " "} {
		if w := ts.do("PUT", api.PathTargets+"a/b", "", api.PublishRequest{Ref: "oci:/x:y"}, "Authorization", "Bearer "+tok); w.Code != 401 {
			t.Errorf("publish with %q: %d, want 401", tok, w.Code)
		}
		if w := ts.do("POST", api.PathCheck, "", api.CheckRequest{Channel: "a", Image: "b"}, "Authorization", "Bearer "+tok); w.Code != 401 {
			t.Errorf("check with %q: %d, want 401", tok, w.Code)
		}
	}
}

func TestBadRequests(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 1)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	for _, tc := range []struct {
		name         string
		method, path string
		token        string
		body         any
		want         int
		wantMsg      string
	}{
		{"bad json", "POST", api.PathCheck, deviceToken, "{", 400, "not a valid"},
		{"unknown field", "POST", api.PathCheck, deviceToken, `{"channel":"stable","image":"web","cfg":"x"}`, 400, "unknown field"},
		{"trailing data", "POST", api.PathCheck, deviceToken, `{"channel":"stable","image":"web"} {}`, 400, "trailing"},
		{"bad channel", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "../x", Image: "web"}, 400, "channel"},
		{"missing image", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "stable"}, 400, "image"},
		{"bad config digest", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "stable", Image: "web", ConfigDigest: "sha256:abc"}, 400, "config_digest"},
		{"bad diff id", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "stable", Image: "web", DiffIDs: []string{"md5:x"}}, 400, "diff_ids[0]"},
		{"huge body", "POST", api.PathCheck, deviceToken, `{"device":"` + strings.Repeat("x", maxBody) + `"}`, 400, "larger than"},
		{"unpublished image", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "stable", Image: "db"}, 404, "no target published"},
		{"unpublished channel", "POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "beta", Image: "web"}, 404, "no target published"},
		{"publish bad ref", "PUT", api.PathTargets + "stable/web", adminToken, api.PublishRequest{Ref: "ftp:/x"}, 400, "unknown transport"},
		{"publish empty ref", "PUT", api.PathTargets + "stable/web", adminToken, api.PublishRequest{}, 400, "ref is empty"},
		{"publish bad channel", "PUT", api.PathTargets + "st%20able/web", adminToken, api.PublishRequest{Ref: refs[0]}, 400, "channel"},
		{"publish missing image", "PUT", api.PathTargets + "stable/web", adminToken, api.PublishRequest{Ref: refs[0] + "x"}, 422, "not in the layout"},
		{"delta short digest", "GET", api.PathDeltas + "sha256:abc", deviceToken, nil, 400, "delta digest"},
		{"delta upper-case digest", "GET", api.PathDeltas + "sha256:" + strings.Repeat("A", 64), deviceToken, nil, 400, "delta digest"},
		{"delta traversal", "GET", api.PathDeltas + "..%2f..%2fstate.json", deviceToken, nil, 400, "delta digest"},
		{"delta other algorithm", "GET", api.PathDeltas + "sha512:" + strings.Repeat("0", 64), deviceToken, nil, 400, "delta digest"},
		{"delta missing", "GET", api.PathDeltas + "sha256:" + strings.Repeat("1", 64), deviceToken, nil, 404, "no delta"},
		{"delta subpath", "GET", api.PathDeltas + "sha256/x", deviceToken, nil, 404, ""},
		{"notify bad json", "POST", api.PathNotifications, adminToken, "[", 400, "not a notification envelope"},
		{"wrong method", "GET", api.PathCheck, deviceToken, nil, 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := ts.do(tc.method, tc.path, tc.token, tc.body)
			if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.wantMsg) {
				t.Errorf("got %d %q, want %d containing %q", w.Code, w.Body, tc.want, tc.wantMsg)
			}
		})
	}
}

// fetchRanges downloads a delta in pieces with Range requests, checking
// each is a 206 with the right Content-Range.
func fetchRanges(t *testing.T, ts *testServer, d *api.Delta) []byte {
	t.Helper()
	var got []byte
	step := d.Size/3 + 1
	for off := int64(0); off < d.Size; off += step {
		end := min(off+step, d.Size) - 1
		w := ts.do("GET", d.URL, deviceToken, nil, "Range", fmt.Sprintf("bytes=%d-%d", off, end))
		if w.Code != http.StatusPartialContent {
			t.Fatalf("range %d-%d: status %d, want 206", off, end, w.Code)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", off, end, d.Size); w.Header().Get("Content-Range") != want {
			t.Fatalf("Content-Range %q, want %q", w.Header().Get("Content-Range"), want)
		}
		if w.Body.Len() != int(end-off+1) {
			t.Fatalf("range %d-%d: %d bytes", off, end, w.Body.Len())
		}
		got = append(got, w.Body.Bytes()...)
	}
	return got
}

func TestPublishCheckApply(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	layout := t.TempDir()
	imgs := versions(t, 2)
	refs := writeLayout(t, layout, imgs)

	tg1 := ts.publish("stable", "web", refs[0])
	man1, _ := imgs[0].Digest()
	if diff := cmp.Diff(api.Target{Ref: refs[0], ConfigDigest: configDigest(t, imgs[0]), ManifestDigest: man1.String(), Serial: 1}, tg1); diff != "" {
		t.Errorf("publish v1 (-want +got):\n%s", diff)
	}
	dev := device(t, imgs[0], "stable", "web")
	// Devices are not told the server's own references (an OCI layout's
	// path): only a registry's, which they can pull.
	tg1.Ref = ""
	if resp := ts.check(dev); resp.Update || resp.Delta != nil || resp.Pending || resp.Target == nil || *resp.Target != tg1 {
		t.Errorf("device on the target: %+v", resp)
	}

	tg2 := ts.publish("stable", "web", refs[1])
	tg2.Ref = ""
	first := ts.check(dev)
	if !first.Update || !first.Pending || first.RetryAfter != 5 || first.Delta != nil || *first.Target != tg2 {
		t.Errorf("first check after publishing v2: %+v, want update, pending, retry_after 5", first)
	}
	resp := ts.waitDelta(dev)
	if !resp.Update || resp.Delta == nil || resp.Error != "" {
		t.Fatalf("after computing: %+v", resp)
	}
	d := resp.Delta
	if d.URL != api.PathDeltas+d.Digest || d.Size <= 0 {
		t.Errorf("delta %+v", d)
	}
	data := fetchRanges(t, ts, d)
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest {
		t.Fatalf("downloaded delta sha256 %s, want %s", got, d.Digest)
	}
	// Whole file, ETag and conditional requests.
	w := ts.do("GET", d.URL, deviceToken, nil)
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), data) || w.Header().Get("ETag") != `"`+d.Digest+`"` {
		t.Errorf("full GET: %d, %d bytes, ETag %q", w.Code, w.Body.Len(), w.Header().Get("ETag"))
	}
	if w := ts.do("GET", d.URL, deviceToken, nil, "If-None-Match", `"`+d.Digest+`"`); w.Code != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", w.Code)
	}
	if w := ts.do("GET", d.URL, deviceToken, nil, "Range", "bytes=10-", "If-Range", `"sha256:other"`); w.Code != 200 {
		t.Errorf("If-Range with another ETag: %d, want the whole file (200)", w.Code)
	}
	if w := ts.do("GET", d.URL, deviceToken, nil, "Range", fmt.Sprintf("bytes=%d-", d.Size+10)); w.Code != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("range past the end: %d, want 416", w.Code)
	}
	if cc := w.Header().Get("Cache-Control"); !strings.HasPrefix(cc, "private,") {
		t.Errorf("Cache-Control %q of a delta behind a device token, want private", cc)
	}
	// A few ranges are served; thousands of tiny ones would amplify.
	if w := ts.do("GET", d.URL, deviceToken, nil, "Range", "bytes=0-0,2-2,4-4,6-6"); w.Code != http.StatusPartialContent {
		t.Errorf("4 ranges: %d, want 206", w.Code)
	}
	many := "bytes=0-0" + strings.Repeat(",2-2", 70000)
	if w := ts.do("GET", d.URL, deviceToken, nil, "Range", many); w.Code != http.StatusRequestedRangeNotSatisfiable ||
		!strings.Contains(w.Body.String(), "70001 ranges in one request: at most 4") || int64(w.Body.Len()) > d.Size {
		t.Errorf("70001 ranges: %d, %d bytes %q, want 416 saying at most 4", w.Code, w.Body.Len(), w.Body.String())
	}
	if got := testutil.ToFloat64(ts.metrics.servedBytes); got < float64(2*d.Size) {
		t.Errorf("served bytes metric %v, want at least %d", got, 2*d.Size)
	}

	// The device rebuilds v2 from v1 and the delta.
	base, err := layerfs.Open(context.Background(), refs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer base.Close()
	res, err := delta.Apply(context.Background(), base, bytes.NewReader(data), delta.ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if got := configDigest(t, res.Image); got != tg2.ConfigDigest {
		t.Errorf("rebuilt config %s, want %s", got, tg2.ConfigDigest)
	}
	if man, err := res.Image.Digest(); err != nil || man.String() != tg2.ManifestDigest {
		t.Errorf("rebuilt manifest %v (%v), want %s (the OCI target's manifest is reproduced)", man, err, tg2.ManifestDigest)
	}

	// The pair index and the delta are where the contract puts them.
	hex1, hex2 := strings.TrimPrefix(tg1.ConfigDigest, "sha256:"), strings.TrimPrefix(tg2.ConfigDigest, "sha256:")
	if _, err := os.Stat(filepath.Join(ts.cacheDir, "pairs", hex1+"_"+hex2+".json")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(ts.cacheDir, "deltas", "sha256", strings.TrimPrefix(d.Digest, "sha256:"))); err != nil {
		t.Error(err)
	}
	// A device on v2 is current; the counters saw every kind of answer.
	if resp := ts.check(device(t, imgs[1], "stable", "web")); resp.Update {
		t.Errorf("device on v2: %+v", resp)
	}
	for result, atLeast := range map[string]float64{resultCurrent: 2, resultPending: 1, resultDelta: 1} {
		if got := testutil.ToFloat64(ts.metrics.checks.WithLabelValues(result)); got < atLeast {
			t.Errorf("checks{result=%s} = %v, want >= %v", result, got, atLeast)
		}
	}
	ts.Close()
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")); got != 1 {
		t.Errorf("computations = %v, want 1", got)
	}
}

func TestUnknownBase(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 3)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	never := device(t, imgs[2], "stable", "web") // built, never published
	liar := device(t, imgs[0], "stable", "web")  // known config, other layers
	liar.DiffIDs = liar.DiffIDs[:1]
	fresh := api.CheckRequest{Device: "new", Channel: "stable", Image: "web"}
	for name, req := range map[string]api.CheckRequest{"never published": never, "diff_ids differ": liar, "runs nothing": fresh} {
		t.Run(name, func(t *testing.T) {
			resp := ts.check(req)
			if !resp.Update || resp.Delta != nil || resp.Pending || resp.Target.ConfigDigest != configDigest(t, imgs[1]) {
				t.Errorf("%+v, want update to v2 with no delta", resp)
			}
		})
	}
	if got := testutil.ToFloat64(ts.metrics.checks.WithLabelValues(resultUnknownBase)); got != 3 {
		t.Errorf("unknown_base checks %v, want 3", got)
	}
	time.Sleep(50 * time.Millisecond)
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")); got != 0 {
		t.Errorf("an unknown base started %v computations", got)
	}
}

// TestSingleflight: many devices asking for a new pair at once cause one
// computation.
func TestSingleflight(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 3)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[2])
	dev := device(t, imgs[0], "stable", "web")
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req := dev
			req.Device = fmt.Sprintf("dev-%d", i)
			w := ts.do("POST", api.PathCheck, deviceToken, req)
			if w.Code != 200 {
				t.Errorf("check: %d %s", w.Code, w.Body)
			}
		}()
	}
	close(start)
	wg.Wait()
	resp := ts.waitDelta(dev)
	if resp.Delta == nil {
		t.Fatalf("%+v", resp)
	}
	for range 5 { // more checks after it is ready compute nothing
		ts.check(dev)
	}
	ts.Close() // wait for the background work to be counted
	if got := testutil.ToFloat64(ts.metrics.checks.WithLabelValues(resultPending)); got < 2 {
		t.Errorf("only %v checks saw the computation pending; the test did not overlap them", got)
	}
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")); got != 1 {
		t.Errorf("%v computations for one pair, want 1", got)
	}
}

// TestComputationFailure: a base that vanished is reported, not retried on
// every check, and retried after FailureTTL.
func TestComputationFailure(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.FailureTTL = 300 * time.Millisecond })
	imgs := versions(t, 2)
	gone := t.TempDir()
	refs := writeLayout(t, gone, imgs[:1])
	refs = append(refs, writeLayout(t, t.TempDir(), imgs)[1])
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	dev := device(t, imgs[0], "stable", "web")
	resp := ts.waitDelta(dev)
	if !resp.Update || resp.Delta != nil || !strings.Contains(resp.Error, "no longer where it was published") || strings.Contains(resp.Error, gone) {
		t.Errorf("%+v, want update without delta and an error saying the base is gone, without the server's path", resp)
	}
	ts.check(dev)
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("error")); got != 1 {
		t.Errorf("%v failed computations, want 1 (failures are remembered)", got)
	}
	time.Sleep(400 * time.Millisecond)
	if resp := ts.check(dev); !resp.Pending {
		t.Errorf("after FailureTTL: %+v, want a new attempt (pending)", resp)
	}
	ts.waitDelta(dev)
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("error")); got != 2 {
		t.Errorf("%v failed computations, want 2", got)
	}
}

// TestMovedTag: an OCI tag republished with other content is refused as
// a base (the server pins what it published).
func TestMovedTag(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 3)
	layout := t.TempDir()
	ref := "oci:" + layout + ":app"
	if err := layerfs.Write(context.Background(), ref, imgs[0]); err != nil {
		t.Fatal(err)
	}
	ts.publish("stable", "web", ref)
	if err := layerfs.Write(context.Background(), ref, imgs[1]); err != nil {
		t.Fatal(err)
	}
	ts.publish("stable", "web", ref)
	resp := ts.waitDelta(device(t, imgs[0], "stable", "web"))
	if resp.Delta != nil || !strings.Contains(resp.Error, "changed since it was published") || strings.Contains(resp.Error, layout) {
		t.Errorf("%+v, want an error: the base tag moved", resp)
	}
}

func TestIdempotentPublish(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	a := ts.publish("stable", "web", refs[0])
	statePath := filepath.Join(ts.stateDir, "state.json")
	fi1, err := os.Stat(statePath)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(statePath)
	time.Sleep(10 * time.Millisecond)
	if b := ts.publish("stable", "web", refs[0]); b != a {
		t.Errorf("republish answered %+v, first %+v", b, a)
	}
	fi2, _ := os.Stat(statePath)
	after, _ := os.ReadFile(statePath)
	if !fi2.ModTime().Equal(fi1.ModTime()) || !bytes.Equal(before, after) {
		t.Errorf("republishing the same image rewrote state.json")
	}
	if got := testutil.ToFloat64(ts.metrics.publishes.WithLabelValues("unchanged")); got != 1 {
		t.Errorf("unchanged publishes %v, want 1", got)
	}
	// Roll forward, then back: history keeps one entry per image.
	ts.publish("stable", "web", refs[1])
	ts.publish("stable", "web", refs[0])
	var sf stateFile
	b, _ := os.ReadFile(statePath)
	if err := json.Unmarshal(b, &sf); err != nil {
		t.Fatal(err)
	}
	tr := sf.Tracks["stable"]["web"]
	if len(tr.History) != 2 || tr.Current != a.ConfigDigest {
		t.Errorf("after v1, v1, v2, v1: current %s, %d history entries, want v1 and 2", tr.Current, len(tr.History))
	}
	// The rolled-back device (on v2) gets a delta back to v1.
	if resp := ts.waitDelta(device(t, imgs[1], "stable", "web")); resp.Delta == nil || resp.Target.ConfigDigest != a.ConfigDigest {
		t.Errorf("rollback check: %+v", resp)
	}
}

// TestRestart: published targets, their history and computed deltas
// survive a new Server on the same directories.
func TestRestart(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts := newTestServer(t, stateDir, cacheDir, nil)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	ts.publish("beta", "web", refs[1])
	dev := device(t, imgs[0], "stable", "web")
	want := ts.waitDelta(dev)
	if want.Delta == nil {
		t.Fatalf("%+v", want)
	}
	ts.Close()

	ts2 := newTestServer(t, stateDir, cacheDir, nil)
	got := ts2.check(dev)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after restart (-before +after):\n%s", diff)
	}
	// The base learnt on stable is known on beta too.
	dev.Channel = "beta"
	if resp := ts2.check(dev); resp.Delta == nil || resp.Delta.Digest != want.Delta.Digest {
		t.Errorf("beta check after restart: %+v", resp)
	}
	if got := testutil.ToFloat64(ts2.metrics.computations.WithLabelValues("ok")); got != 0 {
		t.Errorf("the restarted server computed %v deltas, want 0", got)
	}
	if w := ts2.do("GET", want.Delta.URL, deviceToken, nil); w.Code != 200 || int64(w.Body.Len()) != want.Delta.Size {
		t.Errorf("GET after restart: %d, %d bytes", w.Code, w.Body.Len())
	}
}

// TestSharedState: two servers on one state and cache directory see each
// other's publishes and deltas (the load-balancer setup).
func TestSharedState(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	a := newTestServer(t, stateDir, cacheDir, nil)
	b := newTestServer(t, stateDir, cacheDir, nil)
	a.publish("stable", "web", refs[0])
	a.publish("stable", "web", refs[1])
	dev := device(t, imgs[0], "stable", "web")
	time.Sleep(1100 * time.Millisecond) // b re-reads state.json at most once a second
	want := a.waitDelta(dev)
	got := b.check(dev)
	if got.Delta == nil || *got.Delta != *want.Delta {
		t.Errorf("server b: %+v, want the delta server a computed", got)
	}
	if n := testutil.ToFloat64(b.metrics.computations.WithLabelValues("ok")); n != 0 {
		t.Errorf("server b computed %v deltas", n)
	}
}

func TestPublicURL(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) { c.PublicURL = "https://cdn.example.com/skiff/" })
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	resp := ts.waitDelta(device(t, imgs[0], "stable", "web"))
	if resp.Delta == nil || resp.Delta.URL != "https://cdn.example.com/skiff/v1/deltas/"+resp.Delta.Digest {
		t.Errorf("%+v", resp.Delta)
	}
}

// TestNotifications: a push to a published registry tag republishes it
// and precomputes the delta from every known base.
func TestNotifications(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(quietLogger)))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 3)
	ctx := context.Background()
	ref := "docker://" + host + "/fleet/app:stable"
	push := func(img int) {
		t.Helper()
		if err := layerfs.Write(ctx, ref, imgs[img], layerfs.WithInsecure(true)); err != nil {
			t.Fatal(err)
		}
	}
	envelope := func(repo, tag string) Envelope {
		var env Envelope
		env.Events = make([]Event, 1)
		ev := &env.Events[0]
		ev.Action, ev.Target.Repository, ev.Target.Tag = "push", repo, tag
		ev.Target.MediaType = "application/vnd.oci.image.manifest.v1+json"
		ev.Target.URL = reg.URL + "/v2/" + repo + "/manifests/" + tag
		ev.Request.Host = host
		return env
	}
	push(0)
	tg := ts.publish("stable", "app", ref)
	push(1)
	ts.publish("stable", "app", ref)
	push(2)

	// Events that match nothing start nothing.
	for _, env := range []Envelope{envelope("fleet/other", "stable"), envelope("fleet/app", "beta"), {Events: []Event{{Action: "pull"}}}} {
		w := ts.do("POST", api.PathNotifications, adminToken, env)
		if w.Code != 200 || !strings.Contains(w.Body.String(), `"matched":0`) {
			t.Errorf("unrelated event: %d %s", w.Code, w.Body)
		}
	}
	w := ts.do("POST", api.PathNotifications, adminToken, envelope("fleet/app", "stable"))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"matched":1`) {
		t.Fatalf("notification: %d %s", w.Code, w.Body)
	}
	// Both known bases (v1, v2) get their delta to v3 without any check.
	deadline := time.Now().Add(60 * time.Second)
	for testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")) < 2 {
		if time.Now().After(deadline) || testutil.ToFloat64(ts.metrics.computations.WithLabelValues("error")) > 0 {
			t.Fatalf("precompute: %v ok, %v failed", testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")),
				testutil.ToFloat64(ts.metrics.computations.WithLabelValues("error")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 2 {
		resp := ts.check(device(t, imgs[i], "stable", "app"))
		if resp.Pending || resp.Delta == nil || resp.Target.ConfigDigest != configDigest(t, imgs[2]) || resp.Target.Ref != tg.Ref {
			t.Errorf("device on v%d after the push: %+v", i+1, resp)
		}
	}
	if got := testutil.ToFloat64(ts.metrics.checks.WithLabelValues(resultPending)); got != 0 {
		t.Errorf("%v checks were pending; the deltas should have been precomputed", got)
	}
	// The base v1 was pinned by digest: its tag moved twice, the delta
	// from it still rebuilds v3.
	resp := ts.check(device(t, imgs[0], "stable", "app"))
	data := ts.do("GET", resp.Delta.URL, deviceToken, nil).Body.Bytes()
	res, err := delta.Apply(ctx, imgs[0], bytes.NewReader(data), delta.ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if got := configDigest(t, res.Image); got != configDigest(t, imgs[2]) {
		t.Errorf("rebuilt %s, want v3 %s", got, configDigest(t, imgs[2]))
	}
}

func TestRegistryTag(t *testing.T) {
	for _, tc := range []struct {
		ref, repo, tag string
		ok             bool
	}{
		{"docker://127.0.0.1:5000/app:2", "app", "2", true},
		{"docker://reg.example.com/fleet/web:stable", "fleet/web", "stable", true},
		{"docker://nginx:1.27", "library/nginx", "1.27", true},
		{"docker://reg/app@sha256:" + strings.Repeat("a", 64), "", "", false},
		{"oci:/dir:app", "", "", false},
	} {
		repo, tag, ok := registryTag(tc.ref)
		if repo != tc.repo || tag != tc.tag || ok != tc.ok {
			t.Errorf("registryTag(%q) = %q, %q, %v; want %q, %q, %v", tc.ref, repo, tag, ok, tc.repo, tc.tag, tc.ok)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	ts.do("POST", api.PathCheck, deviceToken, api.CheckRequest{Channel: "x", Image: "y"})
	w := ts.do("GET", api.PathMetrics, "", nil)
	for _, want := range []string{
		`skiff_server_check_requests_total{result="no_target"} 1`,
		`skiff_server_http_request_duration_seconds_count{code="404",route="check"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no state dir":       {CacheDir: t.TempDir()},
		"no cache dir":       {StateDir: t.TempDir()},
		"negative diffs":     {StateDir: t.TempDir(), CacheDir: t.TempDir(), MaxConcurrentDiffs: -1},
		"state dir is file":  {StateDir: filepath.Join(writeFile(t, "x"), "sub"), CacheDir: t.TempDir()},
		"corrupt state.json": {StateDir: dirWith(t, "state.json", "{not json"), CacheDir: t.TempDir()},
		"future state.json":  {StateDir: dirWith(t, "state.json", `{"version":99}`), CacheDir: t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatal("New accepted it")
			}
			if strings.Contains(name, "state.json") && !errors.Is(err, ErrCorruptState) {
				t.Errorf("%v, want ErrCorruptState", err)
			}
		})
	}
}

func writeFile(t *testing.T, data string) string {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func dirWith(t *testing.T, name, data string) string {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}
