package agent

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestFleetRolloutAbort: an agent labelled group=canary gets the target
// of a staged rollout from the real server (the canary wave); after the
// admin aborts, the server offers the previous image again as a newer
// publish, and the agent's anti-rollback accepts it: the device runs the
// previous image.
func TestFleetRolloutAbort(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	fs := newFleetServer(t, p, map[string]v1.Image{"v1": p.old, "v2": p.new})
	do := fs.admin
	do("PUT", api.PathTargets+"stable/web", api.PublishRequest{Ref: fs.ref("v1")}, 200, nil)
	var ro api.Rollout
	do("POST", api.PathRollouts, api.RolloutRequest{Channel: "stable", Image: "web", Ref: fs.ref("v2"),
		Waves: "group=canary,100%"}, 201, &ro)

	cfg := d.config(t, serverSource(fs.URL()), "")
	cfg.Labels = map[string]string{"group": "canary"}
	a := newAgent(t, cfg)
	update := func(want string) {
		t.Helper()
		updateTo(t, a, "web")
		if got := d.running(t).ID; got != want {
			t.Fatalf("the device runs %s, want %s", got, want)
		}
	}
	update(p.newID)
	st, _ := a.Status()
	installed := st.Images["web"].Current.Serial
	do("GET", api.PathRollouts+ro.ID, nil, 200, &ro)
	if ro.Wave != 1 || ro.Status != "running" {
		t.Fatalf("after the canary's install: wave %d, %s; want wave 2 running", ro.Wave+1, ro.Status)
	}

	do("POST", api.PathRollouts+ro.ID+"/abort", nil, 200, &ro)
	update(p.oldID)
	st, _ = a.Status()
	if c := st.Images["web"].Current; c.Serial <= installed {
		t.Errorf("the previous image installed as publish #%d, not above the target's #%d", c.Serial, installed)
	}
}
