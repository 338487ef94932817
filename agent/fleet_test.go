package agent

import (
	"context"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestFleetEndToEnd: an agent updates from the real rollout server
// (in-process) and its check-ins and install report show up in GET
// /v1/devices.
func TestFleetEndToEnd(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	ctx := context.Background()
	fs := newFleetServer(t, p, map[string]v1.Image{"v1": p.old, "v2": p.new})
	do := func(method, path string, body any, out any) { t.Helper(); fs.admin(method, path, body, 200, out) }
	do("PUT", api.PathTargets+"stable/web", api.PublishRequest{Ref: fs.ref("v1")}, nil)
	do("PUT", api.PathTargets+"stable/web", api.PublishRequest{Ref: fs.ref("v2")}, nil)

	a := newAgent(t, d.config(t, serverSource(fs.URL()), ""))
	updateTo(t, a, "web")
	deadline := time.Now().Add(60 * time.Second)
	// The next check-in names the new image (and sends nothing queued).
	if _, err := a.Update(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	var inv api.DevicesResponse
	for {
		do("GET", api.PathDevices+"?channel=stable&image=web", nil, &inv)
		if len(inv.Devices) == 1 && inv.Devices[0].Images[0].ConfigDigest == p.newID || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // check-ins are written after their answer
	}
	if len(inv.Devices) != 1 || inv.Devices[0].ID != "test-device" || len(inv.Devices[0].Images) != 1 {
		t.Fatalf("inventory %+v", inv)
	}
	im := inv.Devices[0].Images[0]
	if im.ConfigDigest != p.newID || im.AgentVersion == "" || im.Platform == "" || im.LastSeen.IsZero() ||
		im.LastReport == nil || im.LastReport.Result != api.ResultInstalled || im.LastReport.ToDigest != p.newID {
		t.Errorf("inventory row %+v, report %+v", im, im.LastReport)
	}
	if len(queued(t, a)) != 0 {
		t.Error("the report is still queued")
	}
	do("GET", api.PathDevices+"?result=failed", nil, &inv)
	if len(inv.Devices) != 0 {
		t.Errorf("?result=failed: %+v", inv.Devices)
	}
}
