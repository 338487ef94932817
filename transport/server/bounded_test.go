package server

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
)

// stalledPair publishes versions of an image through an in-process
// registry whose blob downloads then hang until the request is cancelled
// (a stuck upstream), and returns the test server and the devices: one
// on each version but the last, which is the target.
func stalledPair(t *testing.T, n int, mod func(*Config)) (*testServer, []func() string) {
	t.Helper()
	host, stall := imagetest.StallingRegistry(t)
	ts := newTestServer(t, t.TempDir(), t.TempDir(), mod)
	imgs := versions(t, n)
	for i, img := range imgs {
		ref := fmt.Sprintf("docker://%s/app:%d", host, i+1)
		if err := layerfs.Write(context.Background(), ref, img, layerfs.WithInsecure(true)); err != nil {
			t.Fatal(err)
		}
		ts.publish("stable", "web", ref)
	}
	stall.Store(true)
	var devs []func() string
	for _, img := range imgs[:n-1] {
		dev := device(t, img, "stable", "web")
		devs = append(devs, func() string {
			resp := ts.check(dev)
			if resp.Pending {
				return "pending"
			}
			return "error: " + resp.Error
		})
	}
	return ts, devs
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20s", what)
		}
	}
}

// TestComputeTimeout: a computation stuck on its upstream fails at
// ComputeTimeout, frees its slot, and devices are told why.
func TestComputeTimeout(t *testing.T) {
	ts, devs := stalledPair(t, 2, func(c *Config) { c.ComputeTimeout = 500 * time.Millisecond })
	if got := devs[0](); got != "pending" {
		t.Fatalf("first check: %s, want pending", got)
	}
	var got string
	waitFor(t, "the stalled computation to time out", func() bool { got = devs[0](); return got != "pending" })
	if !strings.Contains(got, "timed out after 500ms") {
		t.Errorf("answer %q, want the timeout named", got)
	}
	if n := ts.flightCount(); n != 0 {
		t.Errorf("%d computations still held", n)
	}
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("error")); got != 1 {
		t.Errorf("%v failed computations, want 1", got)
	}
}

// TestCheckinsShareOneFlight: thousands of check-ins while the pair's
// computation is stuck are answered pending by one flight, not one
// goroutine each (there were 10,013 goroutines for 10,000 check-ins).
func TestCheckinsShareOneFlight(t *testing.T) {
	ts, devs := stalledPair(t, 2, func(c *Config) { c.ComputeTimeout = time.Minute })
	devs[0]()
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	var notPending atomic.Int64
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if devs[0]() != "pending" {
					notPending.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	after := runtime.NumGoroutine()
	if notPending.Load() != 0 {
		t.Errorf("%d of 2000 checks were not answered pending", notPending.Load())
	}
	if after-before > 20 {
		t.Errorf("goroutines %d -> %d over 2000 check-ins of one stalled pair", before, after)
	}
	if n := ts.flightCount(); n != 1 {
		t.Errorf("%d flights for one pair", n)
	}
}

// TestAbandonedComputation: a computation no device asks for any more is
// cancelled after AbandonAfter and not remembered as a failure: the next
// device to ask starts it again.
func TestAbandonedComputation(t *testing.T) {
	ts, devs := stalledPair(t, 2, func(c *Config) {
		c.ComputeTimeout, c.AbandonAfter = time.Minute, 300*time.Millisecond
	})
	before := runtime.NumGoroutine()
	devs[0]()
	waitFor(t, "the abandoned computation to end", func() bool { return ts.flightCount() == 0 })
	waitFor(t, "the abandoned computation to be counted", func() bool {
		return testutil.ToFloat64(ts.metrics.computations.WithLabelValues("abandoned")) == 1
	})
	waitFor(t, "the goroutines to return", func() bool { return runtime.NumGoroutine() <= before+2 })
	if got := devs[0](); got != "pending" {
		t.Errorf("after abandonment: %s, want pending (a new attempt, no failure remembered)", got)
	}
}

// TestQueueFull: with MaxQueuedDiffs pairs queued, a check of another
// pair is answered pending without queuing it.
func TestQueueFull(t *testing.T) {
	ts, devs := stalledPair(t, 3, func(c *Config) { c.ComputeTimeout, c.MaxQueuedDiffs = time.Minute, 1 })
	if got := devs[0](); got != "pending" {
		t.Fatalf("first pair: %s", got)
	}
	if got := devs[1](); got != "pending" {
		t.Fatalf("second pair: %s", got)
	}
	if n := ts.flightCount(); n != 1 {
		t.Errorf("%d flights, want 1 (the queue holds 1)", n)
	}
	if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("queue_full")); got != 1 {
		t.Errorf("queue_full %v, want 1", got)
	}
}
