package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// crashEnv names the config and the crash point of a crashing helper.
const crashEnv = "SKIFF_TEST_CRASH"

// TestUpdateCrashHelper is the agent TestInstallCrash kills: it updates
// "web" of the config in $SKIFF_TEST_CRASH_CONFIG and SIGKILLs itself at
// the install point $SKIFF_TEST_CRASH.
func TestUpdateCrashHelper(t *testing.T) {
	point := os.Getenv(crashEnv)
	if point == "" {
		t.Skip("helper process of TestInstallCrash")
	}
	cfg, err := LoadConfig(os.Getenv(crashEnv + "_CONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, cfg)
	ctx := context.WithValue(context.Background(), crashKey{}, func(p string) {
		if p == point {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	res, err := a.Update(ctx, "web")
	t.Fatalf("the update ended without reaching %q: %+v, %v", point, res, err)
}

// pendingConfig is the device's config with a hook that appends the new
// image ID to a file, one line per run; it returns the config, its file
// and the hook's file.
func pendingConfig(t *testing.T, d *device, server string) (*Config, string, string) {
	t.Helper()
	runs := filepath.Join(d.dir, "hook.runs")
	hook := "echo $SKIFF_PREVIOUS_DIGEST $SKIFF_CONFIG_DIGEST >> " + runs
	y := d.yaml(hook, serverSource(server), "")
	c := d.configHook(t, hook, serverSource(server), "")
	return c, writeFile(t, d.dir, "agent.yaml", []byte(y)), runs
}

func hookRuns(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestInstallCrash kills the agent (SIGKILL) after the load and before
// the state records it, after the state and before the hook, and after
// the hook before the pending install is cleared: the next run finishes
// the install — the state names the new image and the replaced one, the
// hook has run (exactly once, or twice when the kill came after it: hooks
// run at least once), no install is pending, the delta is gone.
func TestInstallCrash(t *testing.T) {
	p := testPair(t)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	for _, tc := range []struct {
		point string
		runs  int
	}{
		{"loaded", 1},
		{"recorded", 1},
		{"hooked", 2},
	} {
		t.Run(tc.point, func(t *testing.T) {
			d := newDevice(t, p)
			cfg, file, runsFile := pendingConfig(t, d, srv.URL)
			cmd := exec.Command(os.Args[0], "-test.run=^TestUpdateCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+tc.point, crashEnv+"_CONFIG="+file)
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("the helper was not killed: %v\n%s", err, out)
			}
			// The kill came after the load.
			if got := d.running(t).ID; got != p.newID {
				t.Fatalf("after the kill web:stable is %s, want %s", got, p.newID)
			}
			st, err := ReadStatus(d.stateDir)
			if err != nil {
				t.Fatal(err)
			}
			if s := st.Images["web"]; s == nil || s.Install == nil || s.Install.Target.ConfigDigest != p.newID || s.Install.Previous != p.oldID || s.Install.Via != "delta" {
				t.Fatalf("after the kill the state has no pending install of %s: %+v", p.newID, s)
			}
			ranBefore := len(hookRuns(t, runsFile))

			a := newAgent(t, cfg)
			res, err := a.Update(context.Background(), "web")
			if err != nil {
				t.Fatal(err)
			}
			if !res.Updated || res.From != p.oldID || res.To == nil || res.To.ConfigDigest != p.newID || res.Via != "delta" {
				t.Errorf("the run after the kill: %+v", res)
			}
			runs := hookRuns(t, runsFile)
			want := []string{p.oldID + " " + p.newID}
			if tc.runs == 2 {
				want = append(want, want[0])
			}
			if diff := cmp.Diff(want, runs); diff != "" {
				t.Errorf("hook runs (%d before the restart) (-want +got):\n%s", ranBefore, diff)
			}
			st, err = a.Status()
			if err != nil {
				t.Fatal(err)
			}
			s := st.Images["web"]
			if s.Current.ConfigDigest != p.newID || s.Current.Ref != "web:stable" || s.Install != nil || s.LastError != "" ||
				!cmp.Equal(s.Previous, []string{p.oldID}) || s.LastUpdate.IsZero() {
				t.Errorf("state after the restart: %+v", s)
			}
			if left, _ := filepath.Glob(filepath.Join(cfg.WorkDir, "deltas", "*")); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
			// And nothing happens again.
			res, err = a.Update(context.Background(), "web")
			if err != nil || res.Updated {
				t.Errorf("a further run: %+v, %v", res, err)
			}
			if got := len(hookRuns(t, runsFile)); got != tc.runs {
				t.Errorf("the hook ran %d times in all, want %d", got, tc.runs)
			}
		})
	}
}

// failingLoad is an OCI engine whose Load fails while broken is set,
// after loading if loaded is set too.
type failingLoad struct {
	*OCIEngine
	broken, loaded bool
}

func (f *failingLoad) Load(ctx context.Context, img v1.Image, ref string) error {
	if !f.broken || f.loaded {
		if err := f.OCIEngine.Load(ctx, img, ref); err != nil {
			return err
		}
	}
	if f.broken {
		return errInjected
	}
	return nil
}

// TestInstallPendingSettled: a pending install the engine did not load is
// dropped (and the update then done normally); a load that fails leaves
// no pending install; one that fails after loading puts the old image
// back and backs off before the next try.
func TestInstallPendingSettled(t *testing.T) {
	p := testPair(t)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	ctx := context.Background()

	t.Run("not loaded", func(t *testing.T) {
		d := newDevice(t, p)
		cfg, _, runsFile := pendingConfig(t, d, srv.URL)
		a := newAgent(t, cfg)
		// A run killed before its load finished.
		if _, err := a.state.Update("web", func(s *ImageState) {
			s.Install = &PendingInstall{Target: Current{ConfigDigest: p.newID, Ref: "web:stable"}, Previous: p.oldID, Via: "delta"}
		}); err != nil {
			t.Fatal(err)
		}
		res, err := a.Update(ctx, "web")
		if err != nil {
			t.Fatal(err)
		}
		if !res.Updated || res.Via != "delta" || res.Check == nil || !res.Check.Update {
			t.Errorf("update: %+v", res)
		}
		if runs := hookRuns(t, runsFile); len(runs) != 1 {
			t.Errorf("hook runs: %q, want one", runs)
		}
		st, _ := a.Status()
		if s := st.Images["web"]; s.Install != nil || s.Current.ConfigDigest != p.newID {
			t.Errorf("state: %+v", s)
		}
	})

	for _, loaded := range []bool{false, true} {
		name := map[bool]string{false: "load fails", true: "load fails after loading"}[loaded]
		t.Run(name, func(t *testing.T) {
			d := newDevice(t, p)
			cfg, _, runsFile := pendingConfig(t, d, srv.URL)
			eng := &failingLoad{OCIEngine: &OCIEngine{Dir: d.images}, broken: true, loaded: loaded}
			a := newAgent(t, cfg, WithEngine("web", eng))
			if _, err := a.Update(ctx, "web"); !errors.Is(err, errInjected) {
				t.Fatalf("update = %v, want the injected failure", err)
			}
			if runs := hookRuns(t, runsFile); len(runs) != 0 {
				t.Errorf("the hook ran after a failed load: %q", runs)
			}
			st, _ := a.Status()
			s := st.Images["web"]
			if s.Install != nil || d.running(t).ID != p.oldID {
				t.Fatalf("after the failed load: pending %+v, running %s, want none and the old image", s.Install, d.running(t).ID)
			}
			if got := s.Failed != nil; got != loaded {
				t.Fatalf("failed install %+v, want recorded: %v", s.Failed, loaded)
			}
			eng.broken = false
			if loaded {
				if _, err := a.Update(ctx, "web"); !errors.Is(err, ErrBackoff) {
					t.Fatalf("an update during the backoff: %v, want ErrBackoff", err)
				}
				a.state.Update("web", func(s *ImageState) { s.Failed.Until = time.Now().Add(-time.Second) })
			}
			res, err := a.Update(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			if !res.Updated || res.To == nil || res.To.ConfigDigest != p.newID {
				t.Errorf("update after the failure: %+v", res)
			}
			if runs := hookRuns(t, runsFile); len(runs) != 1 {
				t.Errorf("hook runs: %q, want one", runs)
			}
			st, _ = a.Status()
			if s := st.Images["web"]; s.Install != nil || s.Failed != nil || s.Current.ConfigDigest != p.newID || !cmp.Equal(s.Previous, []string{p.oldID}) {
				t.Errorf("state: %+v", s)
			}
		})
	}
}
