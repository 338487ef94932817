package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-dev/skiff/internal/imagetest"
)

// misreporting is an OCI engine that, after a load, reports another image
// ID for the loaded ref until Restore is called: the post-load check fails
// although the load itself worked (what the containerd image store did to
// every Docker load before issue 12).
type misreporting struct {
	*OCIEngine
	lying, honest bool
	loads, restos int
}

var _ restorer = (*misreporting)(nil)

func (m *misreporting) Load(ctx context.Context, img v1.Image, ref string) error {
	m.loads++
	if err := m.OCIEngine.Load(ctx, img, ref); err != nil {
		return err
	}
	m.lying = !m.honest
	return nil
}

func (m *misreporting) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	info, err := m.OCIEngine.Inspect(ctx, ref)
	if err == nil && m.lying && ref == "web:stable" {
		info.ID = "sha256:" + strings.Repeat("e", 64)
	}
	return info, err
}

func (m *misreporting) Restore(ctx context.Context, ref, previous string) error {
	m.restos++
	m.lying = false
	return m.OCIEngine.Restore(ctx, ref, previous)
}

// TestFailedCheckAfterLoadRollsBack: a full pull whose post-load check
// fails puts the old image back under its name, removes the pulled image,
// does not run the hook, records one failure, and the next run backs off
// instead of pulling the whole image again; once the backoff has passed
// the next try goes ahead.
func TestFailedCheckAfterLoadRollsBack(t *testing.T) {
	p := testPair(t)
	ctx := context.Background()
	// Layer downloads count (a check reads the target's config blob).
	layers := map[string]bool{}
	ls, _ := p.new.Layers()
	for _, l := range ls {
		h, _ := l.Digest()
		layers[h.String()] = true
	}
	var blobGets atomic.Int64
	reg := registry.New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.LastIndex(r.URL.Path, "/blobs/"); r.Method == http.MethodGet && i >= 0 && layers[r.URL.Path[i+len("/blobs/"):]] {
			blobGets.Add(1)
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	if err := remote.Write(imagetest.Ref(t, host+"/web:stable"), p.new); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, p)
	c := d.config(t, "registry: docker://"+host+"/web\ntag: stable\ninsecure: true",
		"    allow_full_pull: true\n    policy:\n      backoff_min: 10m\n      backoff_max: 1h\n")
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	eng := &misreporting{OCIEngine: &OCIEngine{Dir: d.images}}
	a := newAgent(t, c, WithEngine("web", eng), WithClock(clk))

	_, err := a.Update(ctx, "web")
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("update = %v, want ErrVerify", err)
	}
	if eng.loads != 1 || eng.restos != 1 {
		t.Errorf("%d loads, %d restores, want 1 and 1", eng.loads, eng.restos)
	}
	if got := d.running(t).ID; got != p.oldID {
		t.Errorf("web:stable is %s after the rollback, want the old image %s", got, p.oldID)
	}
	// Nothing of the failed attempt is left: no retained entry, no blob
	// of the new image only.
	if _, err := (&OCIEngine{Dir: d.images}).Inspect(ctx, retainedName("web:stable", p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("retained entry after the rollback: %v, want none", err)
	}
	newCfg, _ := p.new.ConfigName()
	if _, err := os.Stat(filepath.Join(d.images, "blobs", "sha256", newCfg.Hex)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the failed image's config blob is still in the layout: %v", err)
	}
	if _, err := os.Stat(d.hookOut); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the hook ran after a failed load: %v", err)
	}
	st, _ := a.Status()
	s := st.Images["web"]
	if s.Failed == nil || s.Failed.Count != 1 || s.Failed.Target != p.newID || s.Failed.Via != "full-pull" {
		t.Fatalf("failed install %+v, want one failure of %s via full-pull", s.Failed, p.newID)
	}
	if s.Install != nil || s.Current.ConfigDigest != p.oldID || !strings.Contains(s.LastError, "after the load") {
		t.Errorf("state %+v, want no pending install, current the old image, last_error the check", s)
	}
	if min, max := clk.Now().Add(5*time.Minute), clk.Now().Add(10*time.Minute); s.Failed.Until.Before(min) || s.Failed.Until.After(max) {
		t.Errorf("backoff until %s, want in [%s, %s]", s.Failed.Until, min, max)
	}
	lastError := s.LastError

	// The next run, before the backoff: no pull, nothing recorded anew.
	pulled := blobGets.Load()
	clk.now = clk.now.Add(time.Minute)
	if _, err := a.Update(ctx, "web"); !errors.Is(err, ErrBackoff) {
		t.Fatalf("update during the backoff = %v, want ErrBackoff", err)
	}
	if pulled == 0 {
		t.Fatal("the full pull downloaded no layer")
	}
	if n := blobGets.Load() - pulled; n != 0 || eng.loads != 1 {
		t.Errorf("during the backoff: %d layer downloads, %d loads, want none and 1", n, eng.loads)
	}
	st, _ = a.Status()
	if s := st.Images["web"]; s.Failed.Count != 1 || s.LastError != lastError {
		t.Errorf("during the backoff the state changed: %+v", s)
	}

	// After the backoff the target is tried again: a second failure of
	// it doubles the backoff.
	clk.now = clk.now.Add(10 * time.Minute)
	if _, err := a.Update(ctx, "web"); !errors.Is(err, ErrVerify) {
		t.Fatalf("update after the backoff = %v, want ErrVerify again", err)
	}
	st, _ = a.Status()
	if s := st.Images["web"]; s.Failed.Count != 2 || s.Failed.Until.Before(clk.Now().Add(10*time.Minute)) || d.running(t).ID != p.oldID {
		t.Errorf("after a second failure: %+v, running %s", s.Failed, d.running(t).ID)
	}

	// Fixed, the next try after the backoff loads; the hook runs.
	eng.honest = true
	clk.now = clk.now.Add(time.Hour)
	res, err := a.Update(ctx, "web")
	if err != nil || !res.Updated || d.running(t).ID != p.newID || eng.loads != 3 {
		t.Fatalf("update once fixed: %+v, %v (running %s, %d loads)", res, err, d.running(t).ID, eng.loads)
	}
	d.hookEnv(t)
	st, _ = a.Status()
	if s := st.Images["web"]; s.Failed != nil || s.LastError != "" {
		t.Errorf("after the update: %+v", s)
	}
}

// TestRunWaitsOutAFailedTarget: the run loop does not count a check that
// found the failed target still backing off as a new failure; it sleeps
// until the backoff ends.
func TestRunWaitsOutAFailedTarget(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	clk := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := newAgent(t, d.config(t, serverSource("http://127.0.0.1:9"), ""), WithClock(clk))
	until := clk.now.Add(3 * time.Hour)
	if _, err := a.state.Update("web", func(s *ImageState) {
		s.Failed = &FailedInstall{Target: p.newID, Count: 1, Until: until}
		s.Failures = 1
		s.NextCheck = clk.now
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	a.cycle = func(ctx context.Context, image string) (time.Duration, error) {
		calls++
		if calls > 1 {
			cancel()
			return 0, ctx.Err()
		}
		return 0, fmt.Errorf("update web: %w: until then", ErrBackoff)
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := a.Status()
	s := st.Images["web"]
	if s.Failures != 1 || !s.NextCheck.Equal(until) {
		t.Errorf("after a check during the backoff: failures %d, next check %s; want 1 and %s", s.Failures, s.NextCheck, until)
	}
}
