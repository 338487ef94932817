//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-dev/skiff/agent"
	"github.com/skiff-dev/skiff/internal/example"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

// TestIntegrationEndToEnd is the fleet path of issue 5 on real components:
// the distribution registry holds two releases; `skiff serve` has the new
// one published; a device runs the old one in Docker Engine and in
// containerd; `skiff agent run` detects the update, fetches the delta
// through a link cut every 64 KB, applies and verifies it, and loads it
// into both engines with the target's image ID (and, in containerd, its
// manifest digest); `skiff agent status` shows the new last-update time.
func TestIntegrationEndToEnd(t *testing.T) {
	for _, v := range []string{"DOCKER_HOST", "CONTAINERD_ADDRESS", "REGISTRY"} {
		if os.Getenv(v) == "" {
			t.Skipf("%s is not set: start the daemons with `make infra-up` and source $INFRA/env.sh", v)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "skiff")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	// Two releases in the registry.
	oldImg, newImg, err := example.Images()
	if err != nil {
		t.Fatal(err)
	}
	repo := os.Getenv("REGISTRY") + "/skiff-e2e/app"
	stamp := fmt.Sprint(time.Now().UnixNano()) // fresh names: the daemons outlive test runs
	// Images of their own (a label in the config): other packages' tests
	// load and remove the example images in the same engines at the same
	// time, and removing an image ID removes every tag of it.
	oldImg, newImg = labelled(t, oldImg, stamp), labelled(t, newImg, stamp)
	for tag, img := range map[string]v1.Image{"1": oldImg, "2": newImg} {
		if err := layerfs.Write(ctx, "docker://"+repo+":"+tag, img, layerfs.WithInsecure(true)); err != nil {
			t.Fatal(err)
		}
	}
	targetID, _ := newImg.ConfigName()
	ref2, _ := name.ParseReference(repo+":2", name.Insecure)
	targetDesc, err := remote.Head(ref2)
	if err != nil {
		t.Fatal(err)
	}

	// The device runs release 1 in both engines.
	dockerRef := "localhost/skiff-e2e/app:" + stamp
	ctrRef := "localhost/skiff-e2e/app:" + stamp
	ctrCfg := agent.ContainerdConfig{Address: os.Getenv("CONTAINERD_ADDRESS"), Namespace: "skiff-e2e"}
	engines := map[string]agent.Engine{
		"docker":     &agent.DockerEngine{TempDir: dir},
		"containerd": agent.NewContainerdEngine(ctrCfg, ""),
	}
	for kind, e := range engines {
		if err := e.Load(ctx, oldImg, map[string]string{"docker": dockerRef, "containerd": ctrRef}[kind]); err != nil {
			t.Fatalf("loading release 1 into %s: %v", kind, err)
		}
	}

	// The rollout server signs its deltas; the device trusts its key.
	key := filepath.Join(dir, "release")
	if out, err := exec.CommandContext(ctx, bin, "key", "generate", "-o", key).CombinedOutput(); err != nil {
		t.Fatalf("skiff key generate: %v\n%s", err, out)
	}

	// The rollout server, with release 1 then 2 published.
	addr := freeAddr(t)
	srv := exec.CommandContext(ctx, bin, "serve", "--insecure", "--addr", addr, "--sign", key+".key",
		"--state", filepath.Join(dir, "server-state"), "--cache", filepath.Join(dir, "server-cache"), "--log-format", "text")
	srv.Env = append(os.Environ(), "SKIFF_ADMIN_TOKEN=admin-secret", "SKIFF_DEVICE_TOKENS=device-secret")
	var srvLog bytes.Buffer
	srv.Stdout, srv.Stderr = &srvLog, &srvLog
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", srvLog.String())
		}
	}()
	base := "http://" + addr
	waitHealthy(t, base+api.PathHealthz)
	for _, image := range []string{"app-docker", "app-containerd"} {
		for _, tag := range []string{"1", "2"} {
			publish(t, base, image, "docker://"+repo+":"+tag)
		}
	}

	// The device reaches the server through a link cut every 64 KB.
	proxy := newCutProxy(t, addr, 64<<10)
	cfg := fmt.Sprintf(`state_dir: %[1]s/agent-state
work_dir: %[1]s/agent-work
device: e2e-device
trusted_keys: ["%[6]s.pub"]
containerd:
  address: %[2]s
  namespace: skiff-e2e
  unpack: false
images:
  - name: app-docker
    engine: docker
    ref: %[3]s
    source: {server: "http://%[4]s", token: device-secret, channel: stable}
    policy: {interval: 2s, jitter: 0s, backoff_min: 1s, backoff_max: 2s}
  - name: app-containerd
    engine: containerd
    ref: %[5]s
    source: {server: "http://%[4]s", token: device-secret, channel: stable}
    policy: {interval: 2s, jitter: 0s, backoff_min: 1s, backoff_max: 2s}
`, dir, ctrCfg.Address, dockerRef, proxy.Addr(), ctrRef, key)
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run := exec.CommandContext(ctx, bin, "agent", "run", "--config", cfgPath)
	var runLog bytes.Buffer
	run.Stdout, run.Stderr = &runLog, &runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		run.Process.Signal(os.Interrupt)
		run.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", runLog.String())
		}
	}()

	// Wait until both images report an update.
	var st agent.State
	deadline := time.Now().Add(6 * time.Minute)
	for {
		out, err := exec.CommandContext(ctx, bin, "agent", "status", "--config", cfgPath, "-o", "json").Output()
		if err == nil && json.Unmarshal(out, &st) == nil && updated(st, start, "app-docker", "app-containerd") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no update after 6 minutes; status: %s", out)
		}
		time.Sleep(2 * time.Second)
	}
	run.Process.Signal(os.Interrupt)
	if err := run.Wait(); err != nil {
		t.Errorf("agent run did not stop cleanly on SIGINT: %v", err)
	}

	// Docker Engine runs the target: its config digest is the target's
	// (the image ID on the classic store; the containerd image store's
	// ID is the manifest digest, so ask through the engine).
	dinfo, err := engines["docker"].Inspect(ctx, dockerRef)
	if err != nil {
		t.Fatalf("docker image %s: %v", dockerRef, err)
	}
	if dinfo.ID != targetID.String() {
		t.Errorf("docker image %s: config digest %s, want the target's %s", dockerRef, dinfo.ID, targetID)
	}
	// containerd has it under the ref, with the target's manifest digest.
	info, err := engines["containerd"].Inspect(ctx, ctrRef)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != targetID.String() || info.ManifestDigest != targetDesc.Digest.String() {
		t.Errorf("containerd %s: config %s manifest %s, want %s and %s", ctrRef, info.ID, info.ManifestDigest, targetID, targetDesc.Digest)
	}
	for _, image := range []string{"app-docker", "app-containerd"} {
		s := st.Images[image]
		if s.Current.ConfigDigest != targetID.String() || !s.LastUpdate.After(start) {
			t.Errorf("%s: status %+v, want current %s and a last update after %s", image, s, targetID, start.Format(time.RFC3339))
		}
	}
	// The link was cut repeatedly, and resuming cost little.
	var deltaSize int64
	for _, image := range []string{"app-docker", "app-containerd"} {
		deltaSize += deltaSizeFor(t, base, image, oldImg)
	}
	t.Logf("delta %d bytes per device; the proxy delivered %d bytes (all HTTP traffic) in %d cut connections",
		deltaSize/2, proxy.delivered.Load(), proxy.cuts.Load())
	if proxy.cuts.Load() < 4 {
		t.Errorf("only %d cuts: the test does not exercise resuming", proxy.cuts.Load())
	}
	if limit := deltaSize + deltaSize/20 + 64<<10; proxy.delivered.Load() > limit {
		t.Errorf("the devices received %d bytes for %d bytes of deltas: more than 5%% (plus check-ins) re-downloaded", proxy.delivered.Load(), deltaSize)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if r, err := http.Get(url); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never became healthy", url)
}

func publish(t *testing.T, base, image, ref string) {
	t.Helper()
	body, _ := json.Marshal(api.PublishRequest{Ref: ref})
	req, _ := http.NewRequest(http.MethodPut, base+api.PathTargets+"stable/"+image, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer admin-secret")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		var e api.Error
		json.NewDecoder(r.Body).Decode(&e)
		t.Fatalf("publish %s as %s: %s %s", ref, image, r.Status, e.Error)
	}
}

// deltaSizeFor asks the server (directly) for the delta a device running
// base gets.
func deltaSizeFor(t *testing.T, base, image string, img v1.Image) int64 {
	t.Helper()
	id, _ := img.ConfigName()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var diffIDs []string
	for _, d := range cf.RootFS.DiffIDs {
		diffIDs = append(diffIDs, d.String())
	}
	body, _ := json.Marshal(api.CheckRequest{Device: "e2e-probe", Channel: "stable", Image: image, ConfigDigest: id.String(), DiffIDs: diffIDs})
	req, _ := http.NewRequest(http.MethodPost, base+api.PathCheck, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer device-secret")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var res api.CheckResponse
	if err := json.NewDecoder(r.Body).Decode(&res); err != nil || res.Delta == nil {
		t.Fatalf("check for %s: %v %+v", image, err, res)
	}
	return res.Delta.Size
}

// updated reports whether every image was updated after start.
func updated(st agent.State, start time.Time, images ...string) bool {
	for _, im := range images {
		s := st.Images[im]
		if s == nil || !s.LastUpdate.After(start) {
			return false
		}
	}
	return true
}

// labelled returns img with a config label that makes its ID unique.
func labelled(t *testing.T, img v1.Image, stamp string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	if cf.Config.Labels == nil {
		cf.Config.Labels = map[string]string{}
	}
	cf.Config.Labels["dev.skiff.e2e"] = stamp
	out, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
