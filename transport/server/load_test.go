package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
)

// readyServer serves a published pair whose delta is computed, over a real
// loopback HTTP server, and returns a check request that gets the delta.
func readyServer(t testing.TB) (*httptest.Server, []byte) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	dev := device(t, imgs[0], "stable", "web")
	if resp := ts.waitDelta(dev); resp.Delta == nil {
		t.Fatalf("%+v", resp)
	}
	hs := httptest.NewServer(ts)
	t.Cleanup(hs.Close)
	body, err := json.Marshal(dev)
	if err != nil {
		t.Fatal(err)
	}
	return hs, body
}

func postCheck(c *http.Client, url string, body []byte) error {
	req, err := http.NewRequest("POST", url+api.PathCheck, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+deviceToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var cr api.CheckResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		return err
	}
	if !cr.Update || cr.Delta == nil {
		return fmt.Errorf("no delta offered: %s", b)
	}
	return nil
}

// TestLoadCheckins: 500 devices check in at the same moment, each on its
// own connection; every one gets the delta.
func TestLoadCheckins(t *testing.T) {
	const devices = 500
	hs, body := readyServer(t)
	tr := &http.Transport{MaxIdleConnsPerHost: devices, MaxConnsPerHost: 0, DisableKeepAlives: false}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, devices)
	errs := make([]error, devices)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t0 := time.Now()
			errs[i] = postCheck(c, hs.URL, body)
			lat[i] = time.Since(t0)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	var failed int
	for i, err := range errs {
		if err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("device %d: %v", i, err)
			}
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d check-ins failed", failed, devices)
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	t.Logf("%d concurrent check-ins (new connections): p50 %v, p99 %v, max %v, wall %v (%.0f/s)",
		devices, pct(0.50), pct(0.99), lat[len(lat)-1], wall, devices/wall.Seconds())

	// Second wave on warm keep-alive connections.
	for i := range devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			errs[i] = postCheck(c, hs.URL, body)
			lat[i] = time.Since(t0)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("warm device %d: %v", i, err)
		}
	}
	slices.Sort(lat)
	t.Logf("%d concurrent check-ins (warm connections): p50 %v, p99 %v, max %v", devices, pct(0.50), pct(0.99), lat[len(lat)-1])
}

// TestLoadCheckinsInventory: 500 distinct devices check in at once, each
// an inventory upsert of its own row; all get the delta, all land in the
// inventory, and the latency is logged next to TestLoadCheckins'.
func TestLoadCheckinsInventory(t *testing.T) {
	const devices = 500
	hs, body := readyServer(t)
	var req api.CheckRequest
	if err := json.Unmarshal(body, &req); err != nil {
		t.Fatal(err)
	}
	bodies := make([][]byte, devices)
	for i := range bodies {
		r := req
		r.Device, r.AgentVersion, r.Platform = fmt.Sprintf("load-%04d", i), "v0.0.0-test", "linux/arm64"
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		bodies[i] = b
	}
	tr := &http.Transport{MaxIdleConnsPerHost: devices}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	lat := make([]time.Duration, devices)
	errs := make([]error, devices)
	for wave := range 2 {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				t0 := time.Now()
				errs[i] = postCheck(c, hs.URL, bodies[i])
				lat[i] = time.Since(t0)
			}()
		}
		t0 := time.Now()
		close(start)
		wg.Wait()
		wall := time.Since(t0)
		for i, err := range errs {
			if err != nil {
				t.Fatalf("device %d: %v", i, err)
			}
		}
		s := slices.Clone(lat)
		slices.Sort(s)
		pct := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))] }
		t.Logf("wave %d: %d distinct devices (inventory upserts): p50 %v, p99 %v, max %v, wall %v (%.0f/s)",
			wave+1, devices, pct(0.50), pct(0.99), s[len(s)-1], wall, devices/wall.Seconds())
	}
	// Check-ins are answered before their inventory write: wait for it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := countDevices(c, hs.URL)
		if err != nil {
			t.Fatal(err)
		}
		if n == devices+1 { // and readyServer's dev-1
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d devices in the inventory, want %d", n, devices+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func countDevices(c *http.Client, url string) (int, error) {
	req, err := http.NewRequest("GET", url+api.PathDevices+"?limit=1000", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var dr api.DevicesResponse
	if err := json.NewDecoder(resp.Body).Decode(&dr); err != nil {
		return 0, err
	}
	return len(dr.Devices), nil
}

// BenchmarkCheck measures check-ins answered with a ready delta over
// loopback HTTP, in parallel.
func BenchmarkCheck(b *testing.B) {
	hs, body := readyServer(b)
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := postCheck(c, hs.URL, body); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
