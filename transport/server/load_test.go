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
