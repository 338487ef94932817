//go:build integration

package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/skiff-dev/skiff/transport/api"
)

// rolloutDevice is one device of the rollout test: its agent and engine.
type rolloutDevice struct {
	name, ref string
	engine    Engine
	agent     *Agent
}

// TestIntegrationRolloutEngines is issue 13's end-to-end rollout on real
// engines: four devices (two canaries, on Docker Engine and containerd;
// two others, on Docker Engine and an OCI layout) and the real server.
// A staged rollout (group=canary, then 100%; it pauses above 60% of a
// wave rolled back or failed) of a target whose health check fails: both
// canaries install it, fail the check and roll back
// (the engines' image IDs and containerd's config digest checked), their
// reports pause the rollout by themselves, and the other devices are
// offered nothing and download nothing. After an abort, a rollout of a
// fixed target completes both waves on every device.
func TestIntegrationRolloutEngines(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if os.Getenv("DOCKER_HOST") == "" || addr == "" {
		t.Skip("DOCKER_HOST or CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ctx := context.Background()
	old, sick := p.old, p.new
	fixed, err := mutate.AppendLayers(p.new, tarLayer(t, map[string][]byte{"version": []byte("fixed\n")}))
	if err != nil {
		t.Fatal(err)
	}
	idOf := func(img v1.Image) string {
		h, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	oldID, sickID, fixedID := idOf(old), idOf(sick), idOf(fixed)
	fs := newFleetServer(t, p, map[string]v1.Image{"v1": old, "v2": sick, "v3": fixed})
	admin := fs.admin
	admin("PUT", api.PathTargets+"stable/web", api.PublishRequest{Ref: fs.ref("v1")}, 200, nil)

	// The devices, each running the old image.
	const ns = "skiff-rollout-test"
	trusted := newDevice(t, p).trusted
	docker := &DockerEngine{TempDir: t.TempDir()}
	ctrd := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: ns}, "linux/amd64")
	ociDir := filepath.Join(t.TempDir(), "images")
	devs := []*rolloutDevice{
		{name: "canary-docker", ref: "skiff-rollout-test/web:canary", engine: docker},
		{name: "canary-containerd", ref: "docker.io/skiff-rollout-test/web:canary", engine: ctrd},
		{name: "other-docker", ref: "skiff-rollout-test/web:other", engine: docker},
		{name: "other-oci", ref: "web:stable", engine: &OCIEngine{Dir: ociDir}},
	}
	cleanup := func() {
		for _, ref := range []string{devs[0].ref, devs[2].ref} {
			dockerUntag(t, ref, retainedName(ref, oldID), retainedName(ref, sickID), retainedName(ref, fixedID))
		}
		dockerUntag(t, sickID, fixedID)
		r := devs[1].ref
		ctrd.ctr(ctx, nil, 1<<20, "images", "rm", "--sync", r, retainedName(r, oldID), retainedName(r, sickID), retainedName(r, fixedID))
	}
	cleanup()
	t.Cleanup(cleanup)
	health := fmt.Sprintf(`{command: 'test "$SKIFF_CONFIG_DIGEST" != %s', interval: 10ms, timeout: 300ms}`, sickID)
	for _, d := range devs {
		if err := d.engine.Load(ctx, old, d.ref); err != nil {
			t.Fatalf("%s: load the old image: %v", d.name, err)
		}
		engine := "docker"
		switch d.engine.(type) {
		case *ContainerdEngine:
			engine = "containerd"
		case *OCIEngine:
			engine = "oci:" + ociDir
		}
		labels := "{}"
		if d.name[:6] == "canary" {
			labels = "{group: canary}"
		}
		y := "state_dir: " + filepath.Join(t.TempDir(), "state") + "\n" +
			"device: " + d.name + "\n" +
			"labels: " + labels + "\n" +
			"trusted_keys: ['" + trusted + "']\n" +
			"containerd: {namespace: " + ns + "}\n" +
			"images:\n  - name: web\n    engine: " + engine + "\n    ref: " + d.ref + "\n    keep: 1\n" +
			"    hook: 'true'\n" +
			"    source: {server: " + fs.URL() + ", token: dev-token, channel: stable}\n" +
			"    health: " + health + "\n"
		c, err := ParseConfig([]byte(y))
		if err != nil {
			t.Fatalf("%v\n%s", err, y)
		}
		d.agent = newAgent(t, c, WithEngine("web", d.engine))
	}
	update := func(d *rolloutDevice) (*UpdateResult, error) { t.Helper(); return updateAnswered(t, d.agent, "web") }
	runs := func(d *rolloutDevice, want string) {
		t.Helper()
		info, err := d.engine.Inspect(ctx, d.ref)
		if err != nil || info.ID != want {
			t.Fatalf("%s: %s is %+v, %v; want %s", d.name, d.ref, info, err, want)
		}
	}
	waitStatus := func(id, want string) api.Rollout {
		t.Helper()
		var ro api.Rollout
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			admin("GET", api.PathRollouts+id, nil, 200, &ro)
			if ro.Status == want || time.Now().After(deadline) {
				break
			}
		}
		if ro.Status != want {
			t.Fatalf("rollout %s is %s (wave %d, %q), want %s", id, ro.Status, ro.Wave+1, ro.PauseReason, want)
		}
		return ro
	}
	// Every device checks in once: the server knows the fleet.
	for _, d := range devs {
		if res, err := update(d); err != nil || res.Updated {
			t.Fatalf("%s: first check: %+v, %v", d.name, res, err)
		}
	}

	var ro api.Rollout
	admin("POST", api.PathRollouts, api.RolloutRequest{Channel: "stable", Image: "web", Ref: fs.ref("v2"), Waves: "group=canary,100%",
		ErrorThreshold: 0.6}, 201, &ro) // one of the two canaries' rollback alone does not pause it: both try
	for _, d := range devs[:2] {
		res, err := update(d)
		if !errors.Is(err, ErrUnhealthy) || !res.RolledBack {
			t.Fatalf("%s: the sick target: %+v, %v; want a rollback", d.name, res, err)
		}
		runs(d, oldID)
	}
	// containerd keeps the manifest too: the ref's record names the old
	// image's config again.
	if info, err := ctrd.Inspect(ctx, devs[1].ref); err != nil || info.ID != oldID {
		t.Fatalf("containerd after the rollback: %+v, %v", info, err)
	}
	paused := waitStatus(ro.ID, "paused")
	t.Logf("paused by itself: %s", paused.PauseReason)
	for _, d := range devs[2:] {
		res, err := update(d)
		if err != nil || res.Updated || res.DeltaBytes != 0 || (res.Check != nil && res.Check.Update) {
			t.Fatalf("%s, outside the canary wave: %+v, %v; want nothing offered", d.name, res, err)
		}
		runs(d, oldID)
	}

	admin("POST", api.PathRollouts+ro.ID+"/abort", nil, 200, &ro)
	admin("POST", api.PathRollouts, api.RolloutRequest{Channel: "stable", Image: "web", Ref: fs.ref("v3"), Waves: "group=canary,100%"}, 201, &ro)
	for _, d := range devs[:2] {
		if res, err := update(d); err != nil || !res.Updated {
			t.Fatalf("%s: the fixed target: %+v, %v", d.name, res, err)
		}
		runs(d, fixedID)
	}
	for deadline := time.Now().Add(30 * time.Second); ro.Wave < 1 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		admin("GET", api.PathRollouts+ro.ID, nil, 200, &ro)
	}
	if ro.Wave != 1 {
		t.Fatalf("the canaries installed, the rollout is still in wave %d (%s)", ro.Wave+1, ro.Status)
	}
	for _, d := range devs[2:] {
		if res, err := update(d); err != nil || !res.Updated {
			t.Fatalf("%s: the fixed target in wave 2: %+v, %v", d.name, res, err)
		}
		runs(d, fixedID)
	}
	done := waitStatus(ro.ID, "completed")
	t.Logf("completed: %+v", done.Waves)
}
