package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

// TestSoak runs skiff serve on loopback under what a fleet and a bad
// network do at once: check-ins while the pair's computation is stuck on
// a registry whose blob downloads hang, slow clients trickling their
// headers, and a download whose reader stops. /healthz and another
// device's check keep answering, and goroutines and file descriptors
// come back to where they were. SKIFF_SOAK=1 runs the sizes
// (10,000 check-ins, 500 slow clients) and the 100 ms p99 bound; the
// default is a tenth of that, for make test.
func TestSoak(t *testing.T) {
	checks, slow, p99Bound, span := 1000, 50, time.Second, 2*time.Second
	if os.Getenv("SKIFF_SOAK") != "" {
		checks, slow, p99Bound, span = 10000, 500, 100*time.Millisecond, 10*time.Second
	}
	host, stall := imagetest.StallingRegistry(t)
	from, to, edgeImgs := smallPair(t)
	// The stable pair: other images (another pair of config digests).
	var imgs [2]v1.Image
	for i := range imgs {
		imgs[i] = imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "app/data", Data: strings.Repeat("stable soak ", 4000) + fmt.Sprint(i)}))
	}
	ctx := context.Background()
	for i, img := range imgs {
		if err := layerfs.Write(ctx, fmt.Sprintf("docker://%s/app:%d", host, i+1), img, layerfs.WithInsecure(true)); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	t.Setenv("SKIFF_DEVICE_TOKENS", "dev-token-0123456789")
	addrc := make(chan net.Addr, 1)
	o := &serveOptions{addr: "127.0.0.1:0", stateDir: filepath.Join(dir, "state"), cacheDir: filepath.Join(dir, "cache"),
		logFormat: "json", logLevel: "error", maxDiffs: 2, retryAfter: time.Second,
		readTimeout: 2 * time.Second, maxConns: slow + 200, computeTimeout: 10 * time.Minute,
		shutdownGrace: 5 * time.Second, onListen: func(a net.Addr) { addrc <- a }}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runServe(sctx, o, &globalOptions{insecure: true}, io.Discard) }()
	base := "http://" + (<-addrc).String()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}
	do := func(method, path, token string, body any) (int, []byte) {
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, base+path, r)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	publish := func(channel, ref string) {
		if code, b := do("PUT", api.PathTargets+channel+"/app", "adm-token-0123456789", api.PublishRequest{Ref: ref}); code != 200 {
			t.Fatalf("publish %s: %d %s", ref, code, b)
		}
	}
	// stable: from the registry, about to stall; edge: OCI layouts, whose
	// delta is computed at once and then downloaded by a reader that stops.
	publish("stable", fmt.Sprintf("docker://%s/app:1", host))
	publish("stable", fmt.Sprintf("docker://%s/app:2", host))
	publish("edge", from)
	publish("edge", to)
	check := func(channel string) api.CheckRequest {
		img := imgs[0]
		if channel == "edge" {
			img = edgeImgs[0]
		}
		cf, _ := img.ConfigFile()
		id, _ := img.ConfigName()
		req := api.CheckRequest{Device: "soak", Channel: channel, Image: "app", ConfigDigest: id.String()}
		for _, d := range cf.RootFS.DiffIDs {
			req.DiffIDs = append(req.DiffIDs, d.String())
		}
		return req
	}
	var edgeDelta *api.Delta
	for deadline := time.Now().Add(60 * time.Second); edgeDelta == nil; time.Sleep(50 * time.Millisecond) {
		_, b := do("POST", api.PathCheck, "dev-token-0123456789", check("edge"))
		var resp api.CheckResponse
		json.Unmarshal(b, &resp)
		edgeDelta = resp.Delta
		if time.Now().After(deadline) {
			t.Fatal("the edge delta was not computed")
		}
	}
	client.CloseIdleConnections()
	time.Sleep(200 * time.Millisecond)
	goroutines, fds := runtime.NumGoroutine(), openFDs(t)
	stall.Store(true)

	// /healthz latency, sampled all along.
	var lat []time.Duration
	var latMu sync.Mutex
	stopProbe := make(chan struct{})
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-stopProbe:
				return
			case <-time.After(20 * time.Millisecond):
			}
			t0 := time.Now()
			code, _ := do("GET", "/healthz", "", nil)
			d := time.Since(t0)
			if code != 200 {
				d = time.Hour // a failure counts as the worst
			}
			latMu.Lock()
			lat = append(lat, d)
			latMu.Unlock()
		}
	}()
	// Slow clients: a request line, then one header byte a second.
	var conns []net.Conn
	for range slow {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		go func() {
			c.Write([]byte("POST /v1/check HTTP/1.1\r\nHost: x\r\n"))
			for range 30 {
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
				time.Sleep(time.Second)
			}
		}()
	}
	// A download whose reader stops after the first bytes.
	stalled, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(stalled, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-token-0123456789\r\n\r\n", edgeDelta.URL)
	stalled.Read(make([]byte, 64))
	// The check-ins of the stalled pair.
	var pending, other atomic.Int64
	var wg sync.WaitGroup
	work := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				code, b := do("POST", api.PathCheck, "dev-token-0123456789", check("stable"))
				var resp api.CheckResponse
				if code == 200 && json.Unmarshal(b, &resp) == nil && resp.Pending {
					pending.Add(1)
				} else if other.Add(1) == 1 {
					t.Logf("a check-in answered %d %s", code, b)
				}
			}
		}()
	}
	t0 := time.Now()
	for range checks {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	took := time.Since(t0)
	// The slow clients and the stalled download hold on for the span.
	for time.Since(t0) < span {
		time.Sleep(50 * time.Millisecond)
	}
	// Another device meanwhile: answered with its delta.
	if code, b := do("POST", api.PathCheck, "dev-token-0123456789", check("edge")); code != 200 || !strings.Contains(string(b), edgeDelta.Digest) {
		t.Errorf("another device during the soak: %d %s", code, b)
	}
	close(stopProbe)
	<-probed
	if other.Load() != 0 {
		t.Errorf("%d of %d check-ins not answered pending", other.Load(), checks)
	}
	latMu.Lock()
	slices.Sort(lat)
	p99 := lat[len(lat)*99/100]
	latMu.Unlock()
	t.Logf("%d check-ins in %v (%.0f/s), %d slow clients, one stalled download: /healthz p99 %v over %d probes",
		checks, took.Round(time.Millisecond), float64(checks)/took.Seconds(), slow, p99, len(lat))
	if p99 > p99Bound {
		t.Errorf("/healthz p99 %v, want at most %v", p99, p99Bound)
	}
	// Everything released: back to the baseline.
	for _, c := range conns {
		c.Close()
	}
	stalled.Close()
	client.CloseIdleConnections()
	var g, f int
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		g, f = runtime.NumGoroutine(), openFDs(t)
		if (g <= goroutines+10 && f <= fds+10) || time.Now().After(deadline) {
			break
		}
	}
	t.Logf("goroutines %d -> %d, fds %d -> %d after the soak", goroutines, g, fds, f)
	if g > goroutines+10 || f > fds+10 {
		t.Errorf("not back to baseline: goroutines %d (was %d), fds %d (was %d)", g, goroutines, f, fds)
	}
	cancel()
	<-done
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}
