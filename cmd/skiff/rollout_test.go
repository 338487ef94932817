package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server"
	"github.com/skiff-dev/skiff/transport/server/rollout"
)

// rolloutServer is an in-process rollout server with v1 of stable/web
// published and 20 devices checked in on it; it returns the server and
// the reference of v2, not published.
func rolloutServer(t *testing.T) (*httptest.Server, string) {
	t.Helper()
	s, err := server.New(server.Config{StateDir: t.TempDir(), CacheDir: t.TempDir(),
		AdminTokens: []string{fleetAdmin}, DeviceTokens: []string{fleetDevice}, RolloutTick: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	var refs []string
	for i := range 2 {
		img := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "app/version", Data: fmt.Sprint(i + 1)}))
		ref := fmt.Sprintf("oci:%s:v%d", dir, i+1)
		if err := layerfs.Write(context.Background(), ref, img); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	do := func(method, path, token string, body any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, hs.URL+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
		}
	}
	do("PUT", api.PathTargets+"stable/web", fleetAdmin, api.PublishRequest{Ref: refs[0]})
	for i := range 20 {
		do("POST", api.PathCheck, fleetDevice, api.CheckRequest{Device: fmt.Sprintf("kiosk-%02d", i), Channel: "stable", Image: "web"})
	}
	// Check-ins are written after their answer: wait until all are in.
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", hs.URL+api.PathDevices+"?limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+fleetAdmin)
		resp, err := hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var dr api.DevicesResponse
		json.NewDecoder(resp.Body).Decode(&dr)
		resp.Body.Close()
		if len(dr.Devices) == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d devices in the inventory, want 20", len(dr.Devices))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return hs, refs[1]
}

// TestRolloutCLI: start, pause with a reason, the status table and the
// list, resume, pin and unpin, abort; a refused change is an error naming
// the server's reason.
func TestRolloutCLI(t *testing.T) {
	hs, ref := rolloutServer(t)
	t.Setenv("SKIFF_ADMIN_TOKEN", fleetAdmin)
	ctx := context.Background()
	opts := rolloutOptions{adminClientOptions: adminClientOptions{server: hs.URL}, format: formatOptions{format: formatJSON}}

	var buf bytes.Buffer
	start := &rolloutStartOptions{rolloutOptions: opts, waves: "10%,100%", errors: 0.1, soak: 10 * time.Minute}
	if err := runRolloutStart(ctx, start, []string{"stable/web", ref}, &buf); err != nil {
		t.Fatal(err)
	}
	var ro api.Rollout
	if err := json.Unmarshal(buf.Bytes(), &ro); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if ro.Status != "running" || ro.Plan != "10%,100%" || ro.ErrorThreshold != 0.1 || ro.Soak != "10m0s" {
		t.Fatalf("started %+v", ro)
	}
	created, _ := time.Parse(time.RFC3339Nano, ro.Created)

	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := newRolloutCommand(&globalOptions{})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append(args, "--server", hs.URL))
		err := cmd.ExecuteContext(ctx)
		return out.String(), err
	}
	if _, err := run("pause", ro.ID, "--reason", "checking the dashboards"); err != nil {
		t.Fatal(err)
	}
	_, err := run("skip", ro.ID)
	if err == nil || !strings.Contains(err.Error(), "409") || !strings.Contains(err.Error(), "cannot skip a wave of a paused rollout") {
		t.Errorf("skip of a paused rollout: %v, want the server's 409", err)
	}

	// The table, with the times relative to a fixed now.
	status := &rolloutStatusOptions{rolloutOptions: rolloutOptions{adminClientOptions: adminClientOptions{server: hs.URL}, format: formatOptions{format: formatTable},
		now: func() time.Time { return created.Add(90 * time.Second) }}}
	buf.Reset()
	if err := runRolloutStatus(ctx, status, []string{ro.ID}, &buf); err != nil {
		t.Fatal(err)
	}
	got := regexp.MustCompile(`sha256:[0-9a-f]{64}`).ReplaceAllStringFunc(buf.String(), func(d string) string {
		switch d {
		case ro.Target:
			return "TARGET"
		case ro.Previous:
			return "PREVIOUS"
		}
		return d
	})
	got = strings.ReplaceAll(got, ro.ID, "ID")
	wave1 := 0
	for i := range 20 {
		if rollout.Bucket(ro.ID, fmt.Sprintf("kiosk-%02d", i)) < 10 {
			wave1++
		}
	}
	// MinDevices 5: the first wave holds at least 5 of the 20.
	wave1 = max(wave1, 5)
	want := fmt.Sprintf(`Rollout:   ID (stable/web, created 1m ago)
Target:    TARGET (previous PREVIOUS)
Status:    paused: paused by an admin: checking the dashboards
Plan:      10%%,100%% (success ≥ 90%%, errors > 10%% pause, at least 5 devices a wave, soak 10m0s)

WAVE  SELECTS  STARTED  SUCCEEDED  DEVICES  INSTALLED  ROLLED BACK  FAILED
1*    10%%      1m ago   -          %-7d  0          0            0
2     100%%     -        -          0        0          0            0
`, wave1)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("status table (-want +got):\n%s", d)
	}

	// The list.
	list := &rolloutStatusOptions{rolloutOptions: status.rolloutOptions, status: "paused"}
	buf.Reset()
	if err := runRolloutStatus(ctx, list, nil, &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], ro.ID+"  stable/web  paused  1 of 2  10%,100%") ||
		!strings.HasSuffix(lines[1], "1m ago") {
		t.Errorf("list:\n%s", buf.String())
	}

	if out, err := run("resume", ro.ID); err != nil || !strings.Contains(out, "Status:    running\n") {
		t.Errorf("resume: %v\n%s", err, out)
	}
	if out, err := run("pin", ro.ID, "kiosk-07", ro.Previous); err != nil || !strings.Contains(out, "Pins:      1\n") {
		t.Errorf("pin: %v\n%s", err, out)
	}
	if out, err := run("unpin", ro.ID, "kiosk-07"); err != nil || strings.Contains(out, "Pins:") {
		t.Errorf("unpin: %v\n%s", err, out)
	}
	if out, err := run("abort", ro.ID); err != nil || !strings.Contains(out, "Status:    aborted\n") || strings.Contains(out, "1*") {
		t.Errorf("abort: %v\n%s", err, out)
	}
	if _, err := run("start", "stable", ref, "--waves", "100%"); err == nil || !strings.Contains(err.Error(), "CHANNEL/IMAGE") {
		t.Errorf("start without IMAGE: %v", err)
	}
	if _, err := run("start", "stable/web", ref, "--waves", "50%,10%"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("start with a bad plan: %v", err)
	}
}
