package server

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestNoDowngradeFromAnotherChannel: a device running an image another
// channel published after this channel's target gets no delta — the
// server used to compute and sign a newer→older delta from any image it
// ever published; a downgrade is made only once an admin publishes the
// older image on the track (a rollback). (Upgrades across channels still
// get deltas: TestRestart.)
func TestNoDowngradeFromAnotherChannel(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("beta", "web", refs[0])
	ts.publish("beta", "web", refs[1])
	ts.publish("stable", "web", refs[0])
	newer := device(t, imgs[1], "stable", "web")
	resp := ts.check(newer)
	if !resp.Update || resp.Delta != nil || resp.Pending {
		t.Fatalf("a base from another channel: %+v, want an update without a delta", resp)
	}
	if ts.flightCount() != 0 {
		t.Error("a computation started for a base of another channel")
	}
	// The admin rolls stable back from imgs[1] to imgs[0]: the delta down
	// is the admin's choice, and is made.
	ts.publish("stable", "web", refs[1])
	ts.publish("stable", "web", refs[0])
	if resp := ts.waitDelta(newer); resp.Delta == nil {
		t.Fatalf("after a rollback publish: %+v, want a delta", resp)
	}
}

// TestCheckNeedsDiffIDs: a check naming a config digest without diff_ids
// is refused (it skipped the check that the device runs that image).
func TestCheckNeedsDiffIDs(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 1)
	ts.publish("stable", "web", writeLayout(t, t.TempDir(), imgs)[0])
	req := device(t, imgs[0], "stable", "web")
	req.DiffIDs = nil
	if w := ts.do("POST", api.PathCheck, deviceToken, req); w.Code != http.StatusBadRequest {
		t.Errorf("no diff_ids: %d %s, want 400", w.Code, w.Body)
	}
	req.ConfigDigest = "" // a device with nothing yet: a full pull
	if w := ts.do("POST", api.PathCheck, deviceToken, req); w.Code != http.StatusOK {
		t.Errorf("nothing running: %d %s, want 200", w.Code, w.Body)
	}
}

// TestDeviceScopes: a scoped device token checks only its pairs; an
// unscoped one and the admin token any.
func TestDeviceScopes(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) {
		c.DeviceScopes = map[string][]string{deviceToken: {"stable/web", "beta/*"}}
	})
	imgs := versions(t, 1)
	ref := writeLayout(t, t.TempDir(), imgs)[0]
	for _, p := range [][2]string{{"stable", "web"}, {"stable", "cam"}, {"beta", "cam"}} {
		ts.publish(p[0], p[1], ref)
	}
	for _, tc := range []struct {
		token, channel, image string
		code                  int
	}{
		{deviceToken, "stable", "web", 200},
		{deviceToken, "beta", "cam", 200},
		{deviceToken, "stable", "cam", 403},
		{"another-device-token", "stable", "cam", 200},
		{adminToken, "stable", "cam", 200},
	} {
		req := device(t, imgs[0], tc.channel, tc.image)
		if w := ts.do("POST", api.PathCheck, tc.token, req); w.Code != tc.code {
			t.Errorf("%s on %s/%s: %d %s, want %d", tc.token, tc.channel, tc.image, w.Code, w.Body, tc.code)
		}
	}
}

// TestSerials: every publish that sets a target numbers it, one up on
// its track (a rollback too; a no-op publish not), and checks name it.
func TestSerials(t *testing.T) {
	ts := newTestServer(t, t.TempDir(), t.TempDir(), nil)
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	for _, step := range []struct {
		ref  string
		want int64
	}{{refs[0], 1}, {refs[1], 2}, {refs[1], 2}, {refs[0], 3}} {
		if tg := ts.publish("stable", "web", step.ref); tg.Serial != step.want {
			t.Errorf("publish %s: serial %d, want %d", step.ref, tg.Serial, step.want)
		}
	}
	if resp := ts.check(device(t, imgs[1], "stable", "web")); resp.Target == nil || resp.Target.Serial != 3 {
		t.Errorf("check answer %+v, want the target's serial 3", resp.Target)
	}
	if tg := ts.publish("beta", "web", refs[1]); tg.Serial != 1 {
		t.Errorf("another track's first publish: serial %d, want 1", tg.Serial)
	}
}

// TestWarningsThrottled: checks with diff_ids that differ from the
// published image's — caller-chosen, one WARN each before — log at most
// one line a minute per config digest, with the device name cut short.
func TestWarningsThrottled(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	ts := newTestServer(t, t.TempDir(), t.TempDir(), func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	ts.publish("stable", "web", refs[0])
	ts.publish("stable", "web", refs[1])
	req := device(t, imgs[0], "stable", "web")
	req.DiffIDs = []string{"sha256:" + strings.Repeat("0", 64)}
	req.Device = strings.Repeat("d", 256)
	for range 100 {
		if resp := ts.check(req); resp.Delta != nil || resp.Pending {
			t.Fatalf("a device whose diff_ids differ got %+v", resp)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "diff_ids differ"); n != 1 {
		t.Errorf("%d warnings for 100 checks, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), strings.Repeat("d", 65)) {
		t.Error("the device name is logged whole")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
