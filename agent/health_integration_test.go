//go:build integration

package agent

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/delta"
)

// healthApp is the program of the health test's images: it sleeps, and
// "app health" fails while /tmp/sick exists (the image's HEALTHCHECK).
const healthApp = `package main

import (
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "health" {
		if _, err := os.Stat("/tmp/sick"); err == nil {
			os.Exit(1)
		}
		return
	}
	time.Sleep(time.Hour)
}
`

// tarLayer is a layer of the named files (name -> content, mode 0755).
func tarLayer(t *testing.T, files map[string][]byte) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range []string{"app", "tmp/sick", "version"} {
		b, ok := files[n]
		if !ok {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: time.Unix(1, 0)}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// healthImages builds the app and three images of it, each with a
// HEALTHCHECK: old (healthy), sick (its check fails) and fixed (healthy
// again).
func healthImages(t *testing.T) (old, sick, fixed v1.Image) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(healthApp), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module healthapp\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", "app", ".")
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test app: %v\n%s", err, out)
	}
	app, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		t.Fatal(err)
	}
	image := func(extra map[string][]byte) v1.Image {
		files := map[string][]byte{"app": app}
		for k, v := range extra {
			files[k] = v
		}
		img, err := mutate.AppendLayers(empty.Image, tarLayer(t, files))
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", "amd64"
		cf.Config.Cmd = []string{"/app"}
		cf.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "/app", "health"}, Interval: time.Second, Retries: 1}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		return img
	}
	return image(map[string][]byte{"version": []byte("1\n")}),
		image(map[string][]byte{"version": []byte("2\n"), "tmp/sick": []byte("x\n")}),
		image(map[string][]byte{"version": []byte("3\n")})
}

func signedDelta(t *testing.T, from, to v1.Image) string {
	t.Helper()
	opts := delta.DefaultOptions()
	opts.Bsdiff, opts.BsdiffX86, opts.BrotliQuality, opts.Level = false, false, 0, 1
	opts.Signers = []crypto.Signer{testKey(1)}
	var buf bytes.Buffer
	if _, err := delta.Diff(context.Background(), from, to, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "d.skiff", buf.Bytes())
}

// TestIntegrationDockerHealthContainers: a real container with a Docker
// HEALTHCHECK, recreated by the hook. An update whose container turns
// unhealthy is rolled back (the previous image under the ref, its
// container running and healthy again); a fixed target then stays.
func TestIntegrationDockerHealthContainers(t *testing.T) {
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset (source /tmp/skiff-infra/env.sh)")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI for the hook")
	}
	old, sick, fixed := healthImages(t)
	id := func(img v1.Image) string {
		h, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		return h.String()
	}
	ctx := context.Background()
	const ref, name = "skiff-agent-test/health:stable", "skiff-agent-test-health"
	cli := dockerClient(t)
	cleanup := func() {
		cli.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
		dockerUntag(t, ref, retainedName(ref, id(old)), retainedName(ref, id(sick)))
		dockerUntag(t, id(sick), id(fixed), id(old))
	}
	cleanup()
	t.Cleanup(cleanup)
	e := &DockerEngine{TempDir: t.TempDir()}
	if err := e.Load(ctx, old, ref); err != nil {
		t.Fatal(err)
	}
	d := newDevice(t, testPair(t)) // for its state dir and trusted key
	hook := "docker rm -f " + name + " >/dev/null 2>&1; docker run -d --network none --name " + name + " $SKIFF_REF"
	y := "state_dir: " + d.stateDir + "\ntrusted_keys: ['" + d.trusted + "']\n" +
		"images:\n  - name: web\n    engine: docker\n    ref: " + ref + "\n    keep: 1\n" +
		"    hook: '" + hook + "'\n" +
		"    source: {server: http://127.0.0.1:9, token: t, channel: stable}\n" +
		"    health: {containers: true, interval: 500ms, timeout: 30s}\n"
	c, err := ParseConfig([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/bin/sh", "-c", strings.ReplaceAll(hook, "$SKIFF_REF", ref)).CombinedOutput(); err != nil {
		t.Skipf("this machine cannot run a container (%v): %s", err, out)
	}
	a := newAgent(t, c, WithEngine("web", e))
	runsOn := func(want string) {
		t.Helper()
		if info, err := e.Inspect(ctx, ref); err != nil || info.ID != want {
			t.Fatalf("%s is %+v, %v; want %s", ref, info, err, want)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			cs, err := e.Containers(ctx, want)
			if err == nil && containersHealthy(want, cs) == nil && len(cs) == 1 && cs[0].Name == name {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the container of %s: %+v, %v", want, cs, err)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	runsOn(id(old))

	res, err := a.ApplyFile(ctx, "web", signedDelta(t, old, sick))
	if !errors.Is(err, ErrUnhealthy) || !res.RolledBack || !strings.Contains(err.Error(), name+" is unhealthy") {
		t.Fatalf("the sick update: %+v, %v; want a rollback naming the unhealthy container", res, err)
	}
	runsOn(id(old))
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Images["web"]; s.Current.ConfigDigest != id(old) || s.Failed == nil || !s.Failed.Unhealthy || s.Failed.Target != id(sick) {
		t.Fatalf("state after the rollback: %+v, failed %+v", s, s.Failed)
	}

	// The sick image left with its container (RemoveLeftover).
	list, err := cli.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range list.Items {
		if di, err := inspectDocker(ctx, cli, im.ID); err == nil && di.ConfigDigest == id(sick) {
			t.Errorf("the sick image is still in the engine: %+v", di)
		}
	}

	res, err = a.ApplyFile(ctx, "web", signedDelta(t, old, fixed))
	if err != nil || !res.Updated || res.RolledBack {
		t.Fatalf("the fixed update: %+v, %v", res, err)
	}
	runsOn(id(fixed))
}
