package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// healthConfig is the device's config with a hook that logs each run
// ("PREVIOUS CONFIG ROLLBACK") and a health block; it returns the config,
// its file and the hook's log.
func healthConfig(t *testing.T, d *device, server, health string) (*Config, string, string) {
	t.Helper()
	runs := filepath.Join(d.dir, "hook.runs")
	hook := "echo $SKIFF_PREVIOUS_DIGEST $SKIFF_CONFIG_DIGEST ${SKIFF_ROLLBACK:-0} >> " + runs
	extra := "    health:\n" + indent(health, "      ")
	y := d.yaml(hook, serverSource(server), extra)
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return c, writeFile(t, d.dir, "agent.yaml", []byte(y)), runs
}

// TestHealthCheckedUpdate: a target whose health check passes stays; one
// whose check fails at once, only after it passed (while settling), or
// whose hook fails is rolled back — the previous image under the ref
// again, its hook run with SKIFF_ROLLBACK=1, the state naming it, the
// target remembered as unhealthy and not installed again when offered.
func TestHealthCheckedUpdate(t *testing.T) {
	p := testPair(t)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	for _, tc := range []struct {
		name, health string
		hookFails    bool
		healthy      bool
		msg          string
	}{
		{name: "passes", health: `command: test "$SKIFF_CONFIG_DIGEST" = ` + p.newID + "\ninterval: 10ms\ntimeout: 1s", healthy: true},
		{name: "passes after two tries", health: "command: 'n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; [ $n -ge 2 ]'\ninterval: 10ms\ntimeout: 5s", healthy: true},
		{name: "fails", health: "command: echo not ready; exit 3\ninterval: 10ms\ntimeout: 100ms", msg: "no pass within 100ms"},
		{name: "fails while settling", health: "command: 'n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; [ $n -lt 2 ]'\ninterval: 10ms\ntimeout: 1s\nsettle: 1s", msg: "while settling"},
		{name: "hook fails", health: "timeout: 1s", hookFails: true, msg: "update hook failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, p)
			cfg, _, runsFile := healthConfig(t, d, srv.URL, tc.health)
			if tc.hookFails {
				cfg.Images[0].Hook = "echo $SKIFF_PREVIOUS_DIGEST $SKIFF_CONFIG_DIGEST ${SKIFF_ROLLBACK:-0} >> " + runsFile + "; [ -n \"$SKIFF_ROLLBACK\" ]"
			}
			a := newAgent(t, cfg)
			ctx := context.Background()
			t.Chdir(d.dir) // the counting commands keep their file here
			res, err := a.Update(ctx, "web")
			st, serr := a.Status()
			if serr != nil {
				t.Fatal(serr)
			}
			s := st.Images["web"]
			if tc.healthy {
				if err != nil || !res.Updated || res.RolledBack || d.running(t).ID != p.newID || s.Current.ConfigDigest != p.newID || s.Install != nil {
					t.Fatalf("healthy update: %+v, %v; state %+v", res, err, s)
				}
				return
			}
			if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), tc.msg) || !res.RolledBack || res.Updated {
				t.Fatalf("unhealthy update: %+v, %v; want ErrUnhealthy saying %q, rolled back", res, err, tc.msg)
			}
			if got := d.running(t).ID; got != p.oldID {
				t.Fatalf("after the rollback web:stable is %s, want the previous %s", got, p.oldID)
			}
			if s.Current.ConfigDigest != p.oldID || s.Install != nil || s.Failed == nil || !s.Failed.Unhealthy || s.Failed.Target != p.newID || !strings.Contains(s.Failed.Reason, tc.msg) {
				t.Fatalf("state after the rollback: %+v, failed %+v", s, s.Failed)
			}
			want := []string{p.oldID + " " + p.newID + " 0", p.newID + " " + p.oldID + " 1"}
			if diff := cmp.Diff(want, hookRuns(t, runsFile)); diff != "" {
				t.Errorf("hook runs (-want +got):\n%s", diff)
			}
			// Offered again, the target is held back: nothing is fetched
			// or loaded, and it is no failure.
			before := fs.fetchedBytes.Load()
			res, err = a.Update(ctx, "web")
			if !errors.Is(err, ErrHeldBack) || res.Updated || fs.fetchedBytes.Load() != before || d.running(t).ID != p.oldID {
				t.Fatalf("the target offered again: %+v, %v (fetched %d more bytes)", res, err, fs.fetchedBytes.Load()-before)
			}
		})
	}
}

// TestHealthRollbackCrash kills the agent (SIGKILL) at each point of a
// health-checked update whose check fails — after the hook, after the
// check, after the rollback is recorded, after the previous image is back
// — and checks that the next run ends with the previous image running,
// its state and hook, the target held back: never neither image.
func TestHealthRollbackCrash(t *testing.T) {
	p := testPair(t)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	for _, point := range []string{"hooked", "checked", "rollback-recorded", "restored"} {
		t.Run(point, func(t *testing.T) {
			d := newDevice(t, p)
			cfg, file, runsFile := healthConfig(t, d, srv.URL, "command: exit 1\ninterval: 10ms\ntimeout: 50ms")
			cmd := exec.Command(os.Args[0], "-test.run=^TestUpdateCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+point, crashEnv+"_CONFIG="+file)
			if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("the helper was not killed: %v\n%s", err, out)
			}
			running := d.running(t).ID
			if running != p.oldID && running != p.newID {
				t.Fatalf("after the kill web:stable is %s, neither image", running)
			}
			a := newAgent(t, cfg)
			_, err := a.Update(context.Background(), "web")
			if err != nil && !errors.Is(err, ErrUnhealthy) && !errors.Is(err, ErrHeldBack) {
				t.Fatalf("the run after the kill: %v", err)
			}
			if got := d.running(t).ID; got != p.oldID {
				t.Fatalf("after the restart web:stable is %s, want the previous %s", got, p.oldID)
			}
			st, err := a.Status()
			if err != nil {
				t.Fatal(err)
			}
			s := st.Images["web"]
			if s.Current.ConfigDigest != p.oldID || s.Install != nil || s.Failed == nil || !s.Failed.Unhealthy {
				t.Fatalf("state after the restart: %+v, failed %+v", s, s.Failed)
			}
			runs := hookRuns(t, runsFile)
			if len(runs) == 0 || runs[len(runs)-1] != p.newID+" "+p.oldID+" 1" {
				t.Errorf("the last hook run should be the rollback's: %q", runs)
			}
			if _, err := a.Update(context.Background(), "web"); !errors.Is(err, ErrHeldBack) || d.running(t).ID != p.oldID {
				t.Errorf("a further run: %v, running %s", err, d.running(t).ID)
			}
		})
	}
}

func TestHealthConfig(t *testing.T) {
	d := &device{dir: t.TempDir(), stateDir: "/tmp/s", images: "/tmp/i", trusted: "/tmp/k.pub"}
	for _, tc := range []struct{ health, msg string }{
		{"timeout: -1s", "images[0] (web).health.timeout: negative duration"},
		{"interval: 2m\ntimeout: 1m", "images[0] (web).health.interval: 2m0s is longer than the timeout 1m0s"},
		{"comand: true", "health.comand"},
	} {
		y := d.yaml("true", serverSource("http://127.0.0.1:1"), "    health:\n"+indent(tc.health, "      "))
		if _, err := ParseConfig([]byte(y)); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: %v, want it to say %q", tc.health, err, tc.msg)
		}
	}
	y := d.yaml("true", serverSource("http://127.0.0.1:1"), "    health:\n      command: true\n")
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if h := c.Images[0].Health; h.Timeout.D() != DefaultHealthTimeout || h.Interval.D() != DefaultHealthInterval || h.Settle != 0 {
		t.Errorf("defaults: %+v", h)
	}
}
