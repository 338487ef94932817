//go:build integration

package agent

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/layerfs"
)

// Issue 12 on the real engines: whichever DOCKER_HOST and CONTAINERD_ADDRESS
// name (make integration runs these against Docker 20.10 and containerd 1.6,
// then Docker 28 with the containerd image store and containerd 2.4.2).

// lyingAfterLoad is a real engine whose Inspect of ref reports another
// image ID after a load, until Restore: the post-load check fails though
// the load worked.
type lyingAfterLoad struct {
	Engine
	ref   string
	lying bool
	// afterLoad, if set, is called after the real load.
	afterLoad func(ctx context.Context)
}

func (l *lyingAfterLoad) Load(ctx context.Context, img v1.Image, ref string) error {
	if err := l.Engine.Load(ctx, img, ref); err != nil {
		return err
	}
	if l.afterLoad != nil {
		l.afterLoad(ctx)
	}
	l.lying = true
	return nil
}

func (l *lyingAfterLoad) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	info, err := l.Engine.Inspect(ctx, ref)
	if err == nil && l.lying && ref == l.ref {
		info.ID = "sha256:" + strings.Repeat("e", 64)
	}
	return info, err
}

func (l *lyingAfterLoad) Restore(ctx context.Context, ref, previous string) error {
	l.lying = false
	return l.Engine.(restorer).Restore(ctx, ref, previous)
}

// rollbackOnEngine applies the forward delta through an engine whose
// post-load check fails, and checks that the old image is back under ref,
// the retained name is gone, the hook did not run and one failure is
// recorded. gone reports whether the failed image left the engine.
func rollbackOnEngine(t *testing.T, e Engine, c *Config, ref string, afterLoad func(context.Context), gone func() bool) {
	t.Helper()
	p := testPair(t)
	ctx := context.Background()
	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatal(err)
	}
	l := &lyingAfterLoad{Engine: e, ref: ref, afterLoad: afterLoad}
	a := newAgent(t, c, WithEngine("web", l))
	_, err := a.ApplyFile(ctx, "web", writeFile(t, t.TempDir(), "fw.skiff", p.forward))
	if !errors.Is(err, ErrVerify) {
		t.Fatalf("apply = %v, want ErrVerify", err)
	}
	if info, err := e.Inspect(ctx, ref); err != nil || info.ID != p.oldID {
		t.Errorf("%s after the rollback: %+v, %v; want the old image %s", ref, info, err, p.oldID)
	}
	if _, err := e.Inspect(ctx, retainedName(ref, p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("retained name after the rollback: %v, want ErrNoImage", err)
	}
	if !gone() {
		t.Errorf("the failed image %s is still in the engine", p.newID)
	}
	if _, err := os.Stat(c.Images[0].Hook); err == nil {
		t.Error("hook ran")
	}
	st, _ := a.Status()
	s := st.Images["web"]
	if s.Failed == nil || s.Failed.Count != 1 || s.Failed.Target != p.newID || s.Install != nil {
		t.Errorf("state %+v (failed %+v), want one failure of %s and no pending install", s, s.Failed, p.newID)
	}
}

func dockerClient(t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestIntegrationDockerRollback(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	d := newDevice(t, p)
	ref := "skiff-agent-test/rollback:stable"
	untag := func() {
		dockerUntag(t, ref, retainedName(ref, p.oldID), retainedName(ref, p.newID))
		dockerUntag(t, p.newID)
	}
	untag()
	t.Cleanup(untag)
	cli := dockerClient(t)
	// The failed image, by the engine's own ID (the containerd store's is
	// its manifest digest), is gone, or (the classic store, whose ID is the
	// config digest) kept only under names others gave it.
	var loaded string
	rollbackOnEngine(t, &DockerEngine{TempDir: t.TempDir()}, engineConfig(t, d, "docker", ref, ""), ref, func(ctx context.Context) {
		di, err := layerfs.InspectDaemon(ctx, cli, ref)
		if err != nil {
			t.Fatal(err)
		}
		loaded = di.EngineID
	}, func() bool {
		di, err := layerfs.InspectDaemon(context.Background(), cli, loaded)
		if errors.Is(err, layerfs.ErrImageNotFound) {
			return true
		}
		for _, tag := range di.RepoTags {
			if strings.HasPrefix(tag, "skiff-agent-test/rollback") {
				return false
			}
		}
		t.Logf("the failed image %s stays under others' names %v", loaded, di.RepoTags)
		return err == nil && len(di.RepoTags) > 0
	})
}

// TestIntegrationDockerInUse: a container of the image makes it in use, by
// config digest, on either image store.
func TestIntegrationDockerInUse(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ctx := context.Background()
	ref := "skiff-agent-test/inuse:stable"
	cli := dockerClient(t)
	const name = "skiff-agent-test-inuse"
	cleanup := func() {
		cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
		dockerUntag(t, ref)
	}
	cleanup()
	t.Cleanup(cleanup)
	e := &DockerEngine{TempDir: t.TempDir()}
	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
		Config: &container.Config{Image: ref, Cmd: []string{"/nothing"}}}); err != nil {
		t.Fatal(err)
	}
	used, err := e.InUse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !used[p.oldID] {
		t.Errorf("in use %v, want %s", used, p.oldID)
	}
	// health.containers: the created (not started) container is the
	// image's, and not healthy.
	cs, err := e.Containers(ctx, p.oldID)
	if err != nil || len(cs) != 1 || cs[0].Name != name || cs[0].State != "created" {
		t.Fatalf("containers of %s: %+v, %v; want %s created", p.oldID, cs, err, name)
	}
	if err := containersHealthy(p.oldID, cs); err == nil || !strings.Contains(err.Error(), name+" is created") {
		t.Errorf("health of a created container: %v", err)
	}
	if cs, err := e.Containers(ctx, p.newID); err != nil || len(cs) != 0 {
		t.Errorf("containers of an image none uses: %+v, %v", cs, err)
	}
}

func TestIntegrationContainerdRollback(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	d := newDevice(t, p)
	ref := "docker.io/skiff-agent-test/rollback:stable"
	e := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: "skiff-agent-test"}, "linux/amd64")
	cleanup := func() {
		e.ctr(context.Background(), nil, 1<<20, "images", "rm", "--sync", ref, retainedName(ref, p.oldID))
	}
	cleanup()
	t.Cleanup(cleanup)
	rollbackOnEngine(t, e, engineConfig(t, d, "containerd", ref, "containerd: {namespace: skiff-agent-test}\n"), ref, nil, func() bool {
		recs, err := e.images(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if strings.HasPrefix(r.Name, ref) && r.Name != ref {
				t.Logf("record %s left", r.Name)
				return false
			}
		}
		return true
	})
}

// TestIntegrationContainerdSnapshotter: a configured snapshotter is used
// (containerd 2.x's transfer service refused it: "no unpack platforms
// defined"), and an import that fails leaves the old image under ref and
// no retained record.
func TestIntegrationContainerdSnapshotter(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ctx := context.Background()
	ref := "docker.io/skiff-agent-test/snap:stable"
	ns := "skiff-agent-test"
	e := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: ns, Snapshotter: "native"}, "linux/amd64")
	cleanup := func() {
		e.ctr(ctx, nil, 1<<20, "images", "rm", "--sync", ref, retainedName(ref, p.oldID), retainedName(ref, p.newID))
	}
	cleanup()
	t.Cleanup(cleanup)
	d := newDevice(t, p)
	engineUpdate(t, e, engineConfig(t, d, "containerd", ref, "containerd: {namespace: "+ns+", snapshotter: native}\n"), ref, true)
	out, err := e.ctr(ctx, nil, 1<<20, "snapshots", "--snapshotter", "native", "ls")
	if err != nil || len(strings.Split(strings.TrimSpace(string(out)), "\n")) < 2 {
		t.Errorf("native snapshots after the update: %q, %v; want the image unpacked there", out, err)
	}

	// A snapshotter containerd does not have: the import fails.
	bad := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: ns, Snapshotter: "skiff-no-such-snapshotter"}, "linux/amd64")
	err = bad.Load(ctx, p.old, ref)
	if err == nil {
		t.Fatal("import with a missing snapshotter succeeded")
	}
	if strings.Contains(err.Error(), "DEPRECATION") {
		t.Errorf("the error carries ctr's deprecation warnings: %v", err)
	}
	if info, ierr := e.Inspect(ctx, ref); ierr != nil || info.ID != p.newID {
		t.Errorf("%s after the failed import: %+v, %v; want %s", ref, info, ierr, p.newID)
	}
	if _, ierr := e.Inspect(ctx, retainedName(ref, p.newID)); !errors.Is(ierr, ErrNoImage) {
		t.Errorf("retained record after the failed import: %v, want none", ierr)
	}
	t.Logf("failed import: %v", err)
}

// TestIntegrationDockerConformance: the engine contract on the Docker
// Engine DOCKER_HOST names (classic or containerd image store).
func TestIntegrationDockerConformance(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ref := "skiff-agent-test/conformance:stable"
	untag := func() {
		dockerUntag(t, ref, retainedName(ref, p.oldID), retainedName(ref, p.newID))
	}
	untag()
	t.Cleanup(untag)
	engineConformance(t, &DockerEngine{TempDir: t.TempDir()}, ref)
}

// TestIntegrationContainerdConformance: the engine contract on the
// containerd CONTAINERD_ADDRESS names.
func TestIntegrationContainerdConformance(t *testing.T) {
	addr := os.Getenv("CONTAINERD_ADDRESS")
	if addr == "" {
		t.Skip("CONTAINERD_ADDRESS unset (source /tmp/skiff-infra/env.sh)")
	}
	p := testPair(t)
	ref := "docker.io/skiff-agent-test/conformance:stable"
	e := NewContainerdEngine(ContainerdConfig{Address: addr, Namespace: "skiff-agent-test"}, "linux/amd64")
	cleanup := func() {
		e.ctr(context.Background(), nil, 1<<20, "images", "rm", "--sync", ref, retainedName(ref, p.oldID), retainedName(ref, p.newID))
	}
	cleanup()
	t.Cleanup(cleanup)
	engineConformance(t, e, ref)
}
