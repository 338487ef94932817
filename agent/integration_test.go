//go:build integration

package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// The engines against the real daemons of testdata/infra/start-infra.sh:
//
//	testdata/infra/start-infra.sh && . /tmp/skiff-infra/env.sh
//	go test -tags integration -run Integration ./agent/

// engineConfig is a device config using engine spec for web:stable.
func engineConfig(t *testing.T, d *device, engine, ref, extra string) *Config {
	t.Helper()
	y := "state_dir: " + d.stateDir + "\n" + "trusted_keys: ['" + d.trusted + "']\n" + extra +
		"images:\n  - name: web\n    engine: " + engine + "\n    ref: " + ref + "\n" +
		"    keep: 0\n" +
		"    hook: 'env | grep -E \"^SKIFF_(IMAGE|REF|CONFIG_DIGEST|MANIFEST_DIGEST|PREVIOUS_DIGEST)=\" | sort > " + d.hookOut + "'\n" +
		"    source: {server: http://127.0.0.1:9, token: t, channel: stable}\n"
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// engineUpdate loads the old image into e, applies the forward delta
// through the agent and checks the result.
func engineUpdate(t *testing.T, e Engine, c *Config, ref string, wantManifest bool) {
	p := testPair(t)
	ctx := context.Background()
	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatal(err)
	}
	info, err := e.Inspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	oldManifest, _ := p.old.Digest()
	if info.ID != p.oldID || len(info.DiffIDs) != 3 {
		t.Fatalf("loaded old image: %+v, want ID %s", info, p.oldID)
	}
	if wantManifest && info.ManifestDigest != oldManifest.String() {
		t.Errorf("old image manifest %s, want %s (kept by the import)", info.ManifestDigest, oldManifest)
	}
	a := newAgent(t, c, WithEngine("web", e))
	dir := t.TempDir()
	res, err := a.ApplyFile(ctx, "web", writeFile(t, dir, "fw.skiff", p.forward))
	if err != nil {
		t.Fatal(err)
	}
	info, err = e.Inspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != p.newID {
		t.Errorf("image ID %s after the update, want the target config digest %s", info.ID, p.newID)
	}
	if wantManifest && (info.ManifestDigest != p.newManifest || res.To.ManifestDigest != p.newManifest) {
		t.Errorf("manifest %s (result %s), want %s", info.ManifestDigest, res.To.ManifestDigest, p.newManifest)
	}
	// keep: 0 and no container uses the old image: it was pruned.
	if len(res.Pruned) != 1 || res.Pruned[0] != p.oldID {
		t.Errorf("pruned %v, want [%s]", res.Pruned, p.oldID)
	}
	// Gone, or (Docker) only kept under names others gave it.
	if err := e.Remove(ctx, p.oldID); !errors.Is(err, ErrNoImage) && !errors.Is(err, ErrNotOurs) {
		t.Errorf("old image still there: %v", err)
	}
	if _, err := e.Inspect(ctx, retainedName(ref, p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("the retained name of the old image is still there: %v", err)
	}
	used, err := e.InUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if used[p.newID] {
		t.Errorf("no container should use the test image: %v", used)
	}
	// The same delta again: the engine already holds its target, so
	// nothing changes and nothing fails.
	if res, err := a.ApplyFile(ctx, "web", filepath.Join(dir, "fw.skiff")); err != nil || res.Updated {
		t.Errorf("re-applying the delta: %+v, %v; want nothing done, no error", res, err)
	}
	if info, _ := e.Inspect(ctx, ref); info.ID != p.newID {
		t.Errorf("image changed by re-applying the delta: %s", info.ID)
	}
}

func TestIntegrationDocker(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	d := newDevice(t, p)
	ref := "skiff-agent-test/web:stable"
	e := &DockerEngine{TempDir: t.TempDir()}
	untag := func() { dockerUntag(t, ref, retainedName(ref, p.oldID), retainedName(ref, p.newID)) }
	untag()
	t.Cleanup(untag)
	engineUpdate(t, e, engineConfig(t, d, "docker", ref, ""), ref, false)
	if env := d.hookEnv(t); env["SKIFF_CONFIG_DIGEST"] != p.newID {
		t.Errorf("hook env %v", env)
	}
}

// dockerUntag removes names from the engine, never forced: an image other
// names (or containers) use stays.
func dockerUntag(t *testing.T, names ...string) {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, n := range names {
		if _, err := cli.ImageRemove(context.Background(), n, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Logf("untag %s: %v", n, err)
		}
	}
}

// TestIntegrationDockerSharedImage: the image an update replaces also has
// a name the agent did not give it; pruning removes only the agent's
// retained name and the image stays under the other name.
func TestIntegrationDockerSharedImage(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	d := newDevice(t, p)
	ctx := context.Background()
	ref := "skiff-agent-test/shared:stable"
	other := "skiff-agent-test/other:keep"
	e := &DockerEngine{TempDir: t.TempDir()}
	untag := func() { dockerUntag(t, ref, other, retainedName(ref, p.oldID), retainedName(ref, p.newID)) }
	untag()
	t.Cleanup(untag)
	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: ref, Target: other}); err != nil {
		t.Fatal(err)
	}
	a := newAgent(t, engineConfig(t, d, "docker", ref, ""), WithEngine("web", e))
	res, err := a.ApplyFile(ctx, "web", writeFile(t, t.TempDir(), "fw.skiff", p.forward))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := e.Inspect(ctx, ref); err != nil || info.ID != p.newID {
		t.Fatalf("%s after the update: %+v, %v", ref, info, err)
	}
	// keep: 0: the agent's name of the old image is gone...
	if len(res.Pruned) != 1 || res.Pruned[0] != p.oldID {
		t.Errorf("pruned %v, want [%s]", res.Pruned, p.oldID)
	}
	if _, err := e.Inspect(ctx, retainedName(ref, p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("retained name after the prune: %v, want ErrNoImage", err)
	}
	// ... the image itself, which another name refers to, is not.
	if info, err := e.Inspect(ctx, other); err != nil || info.ID != p.oldID {
		t.Errorf("%s after the prune: %+v, %v; want %s", other, info, err, p.oldID)
	}
	if err := e.Remove(ctx, p.oldID); !errors.Is(err, ErrNotOurs) {
		t.Errorf("remove of an image only others name: %v, want ErrNotOurs", err)
	}
	if info, err := e.Inspect(ctx, other); err != nil || info.ID != p.oldID {
		t.Errorf("%s after a second remove: %+v, %v", other, info, err)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Images["web"]; len(s.Previous) != 0 || s.Install != nil {
		t.Errorf("state: %+v", s)
	}
}

func TestIntegrationContainerd(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	d := newDevice(t, p)
	ref := "docker.io/skiff-agent-test/web:stable"
	no := false
	e := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: "skiff-agent-test", Unpack: &no}, "linux/amd64")
	t.Cleanup(func() {
		e.ctr(context.Background(), nil, 1<<20, "images", "rm", "--sync", ref)
	})
	engineUpdate(t, e, engineConfig(t, d, "containerd", ref, "containerd: {namespace: skiff-agent-test, unpack: false}\n"), ref, true)
}

// InUse reads the image of a container from `ctr containers ls`, and Load
// keeps the image a container uses reachable under its retained name.
func TestIntegrationContainerdInUse(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ctx := context.Background()
	ref := "docker.io/skiff-agent-test/inuse:stable"
	e := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: "skiff-agent-test"}, "linux/amd64")
	const container = "skiff-agent-test-inuse"
	cleanup := func() {
		e.ctr(ctx, nil, 1<<20, "containers", "rm", container)
		e.ctr(ctx, nil, 1<<20, "images", "rm", "--sync", ref, retainedName(ref, p.oldID))
	}
	cleanup()
	t.Cleanup(cleanup)
	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctr(ctx, nil, 1<<20, "containers", "create", ref, container); err != nil {
		t.Fatal(err)
	}
	used, err := e.InUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !used[p.oldID] || len(used) != 1 {
		t.Fatalf("in use %v, want only %s", used, p.oldID)
	}
	// health.containers: the container has no task, so it is not healthy.
	cs, err := e.Containers(ctx, p.oldID)
	if err != nil || len(cs) != 1 || cs[0].Name != container || cs[0].State != "" {
		t.Fatalf("containers of %s: %+v, %v; want %s with no task", p.oldID, cs, err, container)
	}
	if err := containersHealthy(p.oldID, cs); err == nil || !strings.Contains(err.Error(), container+" is not started") {
		t.Errorf("health of a container with no task: %v", err)
	}
	// Replacing ref keeps the old image under its retained name: the
	// container's image is still resolved through ref, now the new one.
	if err := e.Load(ctx, p.new, ref); err != nil {
		t.Fatal(err)
	}
	if info, err := e.Inspect(ctx, retainedName(ref, p.oldID)); err != nil || info.ID != p.oldID {
		t.Fatalf("retained image: %+v, %v", info, err)
	}
	used, err = e.InUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !used[p.newID] {
		t.Errorf("in use %v, want %s (the image the container's ref names now)", used, p.newID)
	}
	img, done, err := e.Base(ctx, retainedName(ref, p.oldID))
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if id, _ := img.ConfigName(); id.String() != p.oldID {
		t.Errorf("base has config %s, want %s", id, p.oldID)
	}
	if err := e.Remove(ctx, p.oldID); err != nil {
		t.Fatal(err)
	}
	if err := e.Remove(ctx, p.oldID); !errors.Is(err, ErrNoImage) {
		t.Errorf("second remove: %v, want ErrNoImage", err)
	}
}
