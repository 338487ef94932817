package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCacheEviction: a delta to a superseded target goes once nobody has
// fetched it for the TTL; deltas to the current target stay, however old;
// an unreferenced file goes once old, a fresh one (its index may be on its
// way) stays.
func TestCacheEviction(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	imgs := versions(t, 3)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts := newTestServer(t, stateDir, cacheDir, func(c *Config) { c.CacheTTL = -1 })
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	v0 := device(t, imgs[0], "stable", "web")
	old := ts.waitDelta(v0).Delta // v0 -> v1
	ts.publish("stable", "web", refs[2])
	toCurrent := ts.waitDelta(v0).Delta // v0 -> v2
	fromV1 := ts.waitDelta(device(t, imgs[1], "stable", "web")).Delta
	if old == nil || toCurrent == nil || fromV1 == nil || old.Digest == toCurrent.Digest {
		t.Fatalf("deltas %+v %+v %+v", old, toCurrent, fromV1)
	}
	orphanOld := filepath.Join(ts.cache.deltaDir(), "00"+old.Digest[9:])
	orphanNew := filepath.Join(ts.cache.deltaDir(), "11"+old.Digest[9:])
	for _, p := range []string{orphanOld, orphanNew} {
		if err := os.WriteFile(p, []byte("left by a server killed before it wrote the index"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if err := os.Chtimes(orphanOld, now.Add(-3*time.Hour), now.Add(-3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	exists := func(d string) bool { _, err := os.Stat(ts.cache.deltaPath(d)); return err == nil }
	const ttl = time.Hour

	steps := []struct {
		name    string
		at      time.Time
		served  bool // the old delta is fetched just before
		pairs   int
		oldGone bool
	}{
		{"fresh: everything stays but the old orphan", now, false, 0, false},
		{"old delta fetched 30 min before the sweep: stays", now.Add(90 * time.Minute), true, 0, false},
		{"not fetched for over the TTL: goes", now.Add(3 * time.Hour), false, 1, true},
	}
	for _, st := range steps {
		if st.served {
			if w := ts.do("GET", old.URL, deviceToken, nil); w.Code != 200 {
				t.Fatalf("%s: GET %d", st.name, w.Code)
			}
			// Serving recorded the time; make it 30 min before the sweep.
			fi, _ := os.Stat(ts.cache.deltaPath(old.Digest))
			if a := atime(fi); a.IsZero() {
				t.Skip("access times are not read on this platform")
			}
			os.Chtimes(ts.cache.deltaPath(old.Digest), st.at.Add(-30*time.Minute), fi.ModTime())
		}
		es, err := ts.evict(st.at, ttl)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if es.Pairs != st.pairs {
			t.Errorf("%s: %d pair indexes removed, want %d", st.name, es.Pairs, st.pairs)
		}
		if exists(old.Digest) == st.oldGone {
			t.Errorf("%s: old delta exists = %v", st.name, !st.oldGone)
		}
		if !exists(toCurrent.Digest) || !exists(fromV1.Digest) {
			t.Errorf("%s: a delta to the current target was removed", st.name)
		}
		if _, err := os.Stat(orphanOld); err == nil {
			t.Errorf("%s: an unreferenced 3-hour-old file stayed", st.name)
		}
		// The other unreferenced file is as old as the sweep's clock says.
		if _, err := os.Stat(orphanNew); (err == nil) != (st.at.Sub(now) <= ttl) {
			t.Errorf("%s: unreferenced file %v old: stat %v", st.name, st.at.Sub(now).Round(time.Minute), err)
		}
	}
	if w := ts.do("GET", old.URL, deviceToken, nil); w.Code != 404 {
		t.Errorf("GET of an evicted delta: %d, want 404", w.Code)
	}
	// Devices on either old image still get their delta to the current target.
	if r := ts.check(v0); r.Delta == nil || r.Delta.Digest != toCurrent.Digest {
		t.Errorf("check after eviction: %+v", r)
	}
	if got := testutil.ToFloat64(ts.metrics.evicted); got < 2 {
		t.Errorf("evicted metric %v, want at least 2 (old delta, old orphan)", got)
	}
}
