package agent

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestContainersHealthy(t *testing.T) {
	const id = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		cs   []ContainerStatus
		want string // "" = healthy
	}{
		{"none", nil, "no container uses the image 0123456789ab"},
		{"running, no check", []ContainerStatus{{Name: "web", State: "running"}}, ""},
		{"running, healthy", []ContainerStatus{{Name: "web", State: "running", Health: "healthy"}}, ""},
		{"containerd task running", []ContainerStatus{{Name: "web", State: "running"}, {Name: "web2", State: "RUNNING"}}, ""},
		{"starting", []ContainerStatus{{Name: "web", State: "running", Health: "starting"}}, "web: health check starting"},
		{"unhealthy", []ContainerStatus{{Name: "web", State: "running", Health: "unhealthy"}}, "web is unhealthy"},
		{"exited", []ContainerStatus{{Name: "web", State: "running"}, {Name: "worker", State: "exited"}}, "containers of 0123456789ab: worker is exited"},
		{"restarting", []ContainerStatus{{Name: "web", State: "restarting"}}, "web is restarting"},
		{"no task", []ContainerStatus{{Name: "web"}}, "web is not started"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := containersHealthy(id, tc.cs)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unhealthy: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestParseTaskList(t *testing.T) {
	got, err := parseTaskList([]byte("TASK    PID     STATUS    \nweb     4242    RUNNING   \ndb      0       STOPPED   \n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["web"] != "RUNNING" || got["db"] != "STOPPED" {
		t.Errorf("got %v", got)
	}
	if _, err := parseTaskList([]byte("ID STATUS\n")); !errors.Is(err, ErrContainerd) || !strings.Contains(err.Error(), "unexpected header") {
		t.Errorf("bad header: %v", err)
	}
}

// listingEngine is an engine whose containers of the target are what
// states says, one entry a try (the last one repeats).
type listingEngine struct {
	Engine
	mu     sync.Mutex
	states [][]ContainerStatus
	asked  []string
}

// Restore is the wrapped engine's (the rollback needs it).
func (e *listingEngine) Restore(ctx context.Context, ref, previous string) error {
	return e.Engine.(restorer).Restore(ctx, ref, previous)
}

func (e *listingEngine) Containers(_ context.Context, id string) ([]ContainerStatus, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.asked = append(e.asked, id)
	s := e.states[0]
	if len(e.states) > 1 {
		e.states = e.states[1:]
	}
	return s, nil
}

// TestHealthContainers: with health.containers an update stands once the
// target's containers run and are healthy (a check still starting is
// waited for), and is rolled back when one is unhealthy or none runs.
func TestHealthContainers(t *testing.T) {
	p := testPair(t)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	running := ContainerStatus{Name: "web", State: "running", Health: "healthy"}
	for _, tc := range []struct {
		name   string
		states [][]ContainerStatus
		msg    string // "" = healthy
	}{
		{"healthy after starting", [][]ContainerStatus{{{Name: "web", State: "running", Health: "starting"}}, {running}}, ""},
		{"unhealthy", [][]ContainerStatus{{running, {Name: "worker", State: "running", Health: "unhealthy"}}}, "worker is unhealthy"},
		{"none", [][]ContainerStatus{nil}, "no container uses the image"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, p)
			cfg, _, _ := healthConfig(t, d, srv.URL, "interval: 10ms\ntimeout: 300ms")
			cfg.Images[0].Health.Containers = true // the device's oci engine runs none: the test's engine says what runs
			a := newAgent(t, cfg)
			le := &listingEngine{Engine: a.engines["web"], states: tc.states}
			a.engines["web"] = le
			res, err := a.Update(context.Background(), "web")
			if tc.msg == "" {
				if err != nil || !res.Updated || res.RolledBack || d.running(t).ID != p.newID {
					t.Fatalf("healthy update: %+v, %v", res, err)
				}
			} else {
				if !errors.Is(err, ErrUnhealthy) || !strings.Contains(err.Error(), tc.msg) || !res.RolledBack || d.running(t).ID != p.oldID {
					t.Fatalf("unhealthy update: %+v, %v; want a rollback saying %q", res, err, tc.msg)
				}
			}
			for _, id := range le.asked {
				if id != p.newID {
					t.Fatalf("asked for the containers of %s, want the target %s", id, p.newID)
				}
			}
		})
	}
}
