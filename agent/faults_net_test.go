package agent

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/transport"
)

// Network faults: a rollout server or registry that dies (its listener
// closed, every open connection reset) and comes back on the same address.

// flakyServer serves h on a fixed loopback address that can go away and
// come back.
type flakyServer struct {
	t    *testing.T
	h    http.Handler
	addr string
	mu   sync.Mutex
	srv  *http.Server
	// deaths counts stops of a running server.
	deaths int
}

func newFlakyServer(t *testing.T, h http.Handler) *flakyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyServer{t: t, h: h, addr: ln.Addr().String()}
	f.serve(ln)
	t.Cleanup(f.stop)
	return f
}

func (f *flakyServer) URL() string { return "http://" + f.addr }

func (f *flakyServer) serve(ln net.Listener) {
	srv := &http.Server{Handler: f.h, ConnState: func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*net.TCPConn); ok && s == http.StateNew {
			tc.SetLinger(0) // closing resets the connection
		}
	}}
	f.srv = srv
	go srv.Serve(ln)
}

// stop closes the listener (new connections are refused) and resets every
// open connection, mid-response or not.
func (f *flakyServer) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
		f.deaths++
	}
}

// died is how many times a running server was stopped.
func (f *flakyServer) died() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deaths
}

// start listens again on the same address.
func (f *flakyServer) start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		return
	}
	var ln net.Listener
	var err error
	for range 100 {
		if ln, err = net.Listen("tcp", f.addr); err == nil {
			f.serve(ln)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Errorf("listen on %s again: %v", f.addr, err)
}

// dieAt returns an onChunk function for throttledServer that stops f once
// off reaches at and, if back > 0, starts it again after back.
func (f *flakyServer) dieAt(at int64, back time.Duration) *func(off int64) {
	var once sync.Once
	fn := func(off int64) {
		if off < at {
			return
		}
		once.Do(func() {
			f.stop()
			if back > 0 {
				time.AfterFunc(back, f.start)
			}
		})
	}
	return &fn
}

// checkConnError checks that err says the server could not be reached.
func checkConnError(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the run succeeded", what)
	}
	msg := err.Error()
	for _, w := range append([]string{"connection refused"}, want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: the error does not say %q: %v", what, w, err)
		}
	}
}

// TestServerDiesAndReturns drives the agent's run loop (fake clock, real
// network) against a rollout server that dies:
//
//  1. the server is down at check time: the check fails, the error and a
//     backoff are recorded, the image is not touched;
//  2. it comes back and dies at 40% of the download, for longer than the
//     run lasts: the run fails naming the refused connection, the backoff
//     doubles, the old image stays, the partial download stays;
//  3. it comes back, dies again at 75% and returns a second later: the same
//     run retries, resumes and completes the update.
//
// Each run is bounded (as a supervisor's timeout would): the agent's own
// fetch retries would otherwise wait out the dead server for minutes.
func TestServerDiesAndReturns(t *testing.T) {
	p := testPair(t)
	size := int64(len(p.forward))
	srv := newThrottledServer(p, 2*size)
	fl := newFlakyServer(t, srv)
	d := newDevice(t, p)
	c := d.config(t, serverSource(fl.URL()), "    policy: {interval: 1h, jitter: 1m, backoff_min: 1m, backoff_max: 8m}\n")
	clock := &fakeClock{now: time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)}
	a := newAgent(t, c, WithClock(clock))
	workDir := c.WorkDir
	old, target := describe(t, p.old), describe(t, p.new)
	w := &wasted{size: size}

	type cycle struct {
		name    string
		before  func()
		timeout time.Duration
		fail    []string // what the error must say; nil: the run succeeds
		// after the run: failures in a row and the backoff drawn from
		// [lo, hi] after the end of the run.
		failures int
		lo, hi   time.Duration
	}
	cycles := []cycle{
		{name: "server down at check time", before: fl.stop, timeout: 10 * time.Second,
			fail: []string{"POST " + fl.URL() + "/v1/check"}, failures: 1, lo: 30 * time.Second, hi: time.Minute},
		{name: "server dies at 40% of the download", before: func() {
			fl.start()
			srv.onChunk.Store(fl.dieAt(size*4/10, 0))
		}, timeout: 3 * time.Second, fail: []string{"fetch " + fl.URL(), "deadline exceeded"},
			failures: 2, lo: time.Minute, hi: 2 * time.Minute},
		{name: "server dies at 75% and returns after 1s", before: func() {
			fl.start()
			srv.onChunk.Store(fl.dieAt(size*3/4, time.Second))
		}, timeout: 30 * time.Second, failures: 0, lo: time.Hour, hi: time.Hour + time.Minute},
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		i          int
		ended      time.Time
		have, sent int64
		lastErr    error
	)
	// verify checks what the previous cycle left.
	verify := func() {
		cy := cycles[i-1]
		st, err := ReadStatus(d.stateDir)
		if err != nil {
			t.Fatal(err)
		}
		s := st.Images["web"]
		if s == nil {
			t.Fatalf("%s: no state", cy.name)
		}
		if s.Failures != cy.failures {
			t.Errorf("%s: state has %d failures, want %d", cy.name, s.Failures, cy.failures)
		}
		if wait := s.NextCheck.Sub(ended); wait < cy.lo || wait > cy.hi {
			t.Errorf("%s: next check %s after the run, want [%s, %s]", cy.name, wait, cy.lo, cy.hi)
		}
		if cy.fail != nil {
			checkConnError(t, cy.name, lastErr, cy.fail...)
			if s.LastError != lastErr.Error() {
				t.Errorf("%s: state has last_error %q, want %q", cy.name, s.LastError, lastErr)
			}
			checkLayout(t, d.images, old, old)
			if s.Current.ConfigDigest != p.oldID {
				t.Errorf("%s: state has current %s, want the old image", cy.name, s.Current.ConfigDigest)
			}
		} else {
			if lastErr != nil {
				t.Errorf("%s: %v", cy.name, lastErr)
			}
			checkLayout(t, d.images, old, target)
			if s.LastError != "" || s.Current.ConfigDigest != p.newID {
				t.Errorf("%s: state %+v after the update", cy.name, s)
			}
		}
		now := downloaded(workDir, srv.dg, size)
		if cy.fail == nil {
			now = size // used and removed
		}
		w.add(t, cy.name, srv.sent.Load()-sent, now-have)
		t.Logf("%s: %d of %d bytes downloaded, %d sent in the run; error: %v", cy.name, now, size, srv.sent.Load()-sent, lastErr)
	}
	a.cycle = func(ctx context.Context, image string) (time.Duration, error) {
		if i > 0 {
			verify()
		}
		if i == len(cycles) {
			cancel()
			return 0, ctx.Err()
		}
		cy := cycles[i]
		i++
		cy.before()
		have, sent = downloaded(workDir, srv.dg, size), srv.sent.Load()
		cctx, ccancel := context.WithTimeout(ctx, cy.timeout)
		defer ccancel()
		retry, err := a.runOnce(cctx, image)
		srv.onChunk.Store(nil)
		lastErr, ended = err, clock.Now()
		return retry, err
	}
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if i != len(cycles) {
		t.Fatalf("the loop ran %d cycles, want %d", i, len(cycles))
	}
	if m, _ := filepath.Glob(filepath.Join(workDir, "deltas", "*")); len(m) > 0 {
		t.Errorf("left behind after the update: %v", m)
	}
	t.Logf("server died %d times; delta %d bytes, the server sent %d (+%d); at most %d bytes (%.2f%%) fetched again in one run, %d (%.2f%%) in all",
		fl.died(), size, srv.sent.Load(), srv.sent.Load()-size, w.most, 100*float64(w.most)/float64(size), w.total, 100*float64(w.total)/float64(size))
}

// blobCounter wraps a registry: it sends the blobs of one repository in
// small, paced chunks, counts them and calls onChunk after each.
type blobCounter struct {
	h       http.Handler
	prefix  string // e.g. /v2/web-deltas/blobs/
	rate    int64  // bytes/s
	sent    atomic.Int64
	onChunk atomic.Pointer[func(total int64)]
}

func (b *blobCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, b.prefix) {
		w = &pacedWriter{ResponseWriter: w, b: b}
	}
	b.h.ServeHTTP(w, r)
}

type pacedWriter struct {
	http.ResponseWriter
	b *blobCounter
}

func (p *pacedWriter) Write(buf []byte) (int, error) {
	const chunk = 2 << 10
	n := 0
	for n < len(buf) {
		c := min(chunk, len(buf)-n)
		time.Sleep(time.Duration(c) * time.Second / time.Duration(p.b.rate))
		m, err := p.ResponseWriter.Write(buf[n : n+c])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := p.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		total := p.b.sent.Add(int64(m))
		if f := p.b.onChunk.Load(); f != nil {
			(*f)(total)
		}
	}
	return n, nil
}

// cached is how many bytes of the delta's blobs the pull cache holds,
// whole or partial.
func cached(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	m, _ := filepath.Glob(filepath.Join(dir, "sha256", "*"))
	for _, p := range m {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestRegistryDiesAndReturns: the delta is an OCI artifact in a registry
// that is down at check time, then dies during the pull. A run while it is
// down fails, naming the
// pull and the refused connection; the old image stays. The next runs
// take the blobs already in the pull cache as they are and continue the
// partial one with a Range request, so what the registry sends again is
// only what was in flight when it died.
func TestRegistryDiesAndReturns(t *testing.T) {
	p := testPair(t)
	size := int64(len(p.forward))
	ctx := context.Background()
	bc := &blobCounter{h: registry.New(registry.WithReferrersSupport(true), registry.Logger(log.New(io.Discard, "", 0))), prefix: "/v2/web-deltas/blobs/", rate: 2 * size}
	fl := newFlakyServer(t, bc)
	host := fl.addr
	if err := remote.Write(imagetest.Ref(t, host+"/web:stable"), p.new); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, p)
	deltaPath := writeFile(t, d.dir, "fw.skiff", p.forward)
	if _, err := transport.Push(ctx, deltaPath, imagetest.Ref(t, host+"/web-deltas:1-2"), transport.TargetSubject(&p.forwardHeaderRaw.Manifest)); err != nil {
		t.Fatal(err)
	}
	bc.sent.Store(0)
	c := d.config(t, "registry: docker://"+host+"/web\ntag: stable\ndeltas: docker://"+host+"/web-deltas\ninsecure: true", "")
	a := newAgent(t, c)
	cacheDir := filepath.Join(c.WorkDir, "blobs")
	old, target := describe(t, p.old), describe(t, p.new)
	w := &wasted{size: size}

	runs := []struct {
		name    string
		at      int64         // the registry dies once it has sent this much of the delta's blobs
		back    time.Duration // and comes back after this (0: not during the run)
		timeout time.Duration
		fail    bool
	}{
		{"registry dies at 40% of the pull", size * 4 / 10, 0, 3 * time.Second, true},
		{"registry dies at 70% of the pull", size * 7 / 10, 0, 3 * time.Second, true},
		{"registry dies at 90% and returns after 1s", size * 9 / 10, time.Second, 30 * time.Second, false},
	}
	// Down at check time: the check fails, nothing is fetched or changed.
	fl.stop()
	t0 := time.Now()
	if _, err := a.Update(ctx, "web"); true {
		checkConnError(t, "registry down at check time", err, "HEAD "+host+"/web:stable")
		t.Logf("registry down at check time (%s): %v", time.Since(t0).Round(time.Millisecond), err)
	}
	checkLayout(t, d.images, old, old)
	if st, err := ReadStatus(d.stateDir); err != nil || st.Images["web"] == nil || !strings.Contains(st.Images["web"].LastError, "connection refused") {
		t.Errorf("registry down at check time: state %+v (%v)", st, err)
	}
	for _, r := range runs {
		fl.start()
		stop := fl.dieAt(r.at, r.back)
		f := func(total int64) { (*stop)(total) }
		bc.onChunk.Store(&f)
		have, sent0 := cached(t, cacheDir), bc.sent.Load()
		rctx, cancel := context.WithTimeout(ctx, r.timeout)
		res, err := a.Update(rctx, "web")
		cancel()
		bc.onChunk.Store(nil)
		sent := bc.sent.Load() - sent0
		if r.fail {
			checkConnError(t, r.name, err, "pull "+host+"/web-deltas@sha256:", "deadline exceeded")
			checkLayout(t, d.images, old, old)
			st, serr := ReadStatus(d.stateDir)
			if serr != nil {
				t.Fatal(serr)
			}
			if s := st.Images["web"]; s == nil || err == nil || s.LastError != err.Error() || s.Current.ConfigDigest != p.oldID {
				t.Errorf("%s: state %+v", r.name, s)
			}
			now := cached(t, cacheDir)
			w.add(t, r.name, sent, now-have)
			t.Logf("%s: the cache holds %d of %d bytes, %d sent in the run; error: %v", r.name, now, size, sent, err)
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		if !res.Updated {
			t.Fatalf("%s: no update: %+v", r.name, res)
		}
		checkLayout(t, d.images, old, target)
		w.add(t, r.name, sent, size-have)
		t.Logf("%s: %d sent in the run, the cache held %d", r.name, sent, have)
	}
	if fl.died() != len(runs)+1 {
		t.Errorf("the registry died %d times, want %d", fl.died(), len(runs)+1)
	}
	if m, _ := filepath.Glob(filepath.Join(cacheDir, "sha256", "*")); len(m) > 0 {
		t.Errorf("left in the pull cache after the update: %v", m)
	}
	t.Logf("registry died %d times; delta %d bytes in blobs, the registry sent %d (+%d); at most %d bytes (%.2f%%) fetched again in one run, %d (%.2f%%) in all",
		fl.died(), size, bc.sent.Load(), bc.sent.Load()-size, w.most, 100*float64(w.most)/float64(size), w.total, 100*float64(w.total)/float64(size))
}
