//go:build integration

package layerfs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"
)

// TestIntegrationDaemonPulledIndex: an image pulled from a registry as a
// multi-platform index. The containerd image store's ID is then the index
// digest; InspectDaemon finds the engine's platform's manifest and config
// digest, and Open saves that platform only. The classic store keeps the
// amd64 image by its config digest.
func TestIntegrationDaemonPulledIndex(t *testing.T) {
	requireEngine(t)
	reg := os.Getenv("REGISTRY")
	if reg == "" {
		t.Skip("REGISTRY unset (source the infra env.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plat := func(img v1.Image, arch string) v1.Image {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		out, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	amd := plat(seededImage(t, 20261203, 2), "amd64")
	arm := plat(seededImage(t, 20261204, 2), "arm64")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	refStr := reg + "/skiff-it/index:1"
	ref, err := name.ParseReference(refStr, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	t.Cleanup(func() { cli.ImageRemove(context.Background(), refStr, client.ImageRemoveOptions{Force: true}) })
	pull, err := cli.ImagePull(ctx, refStr, client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pull.Wait(ctx); err != nil {
		t.Fatalf("pull %s: %v", refStr, err)
	}
	wantCfg, _ := amd.ConfigName()
	wantMan, _ := amd.Digest()
	idxDigest, _ := idx.Digest()
	di, err := InspectDaemon(ctx, cli, refStr)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pulled index: %+v", di)
	if di.ConfigDigest != wantCfg.String() {
		t.Errorf("config digest %s, want the amd64 image's %s", di.ConfigDigest, wantCfg)
	}
	if di.ContainerdStore && (di.EngineID != idxDigest.String() || di.ManifestDigest != wantMan.String()) {
		t.Errorf("containerd store: engine ID %s, manifest %s; want the index %s and the amd64 manifest %s", di.EngineID, di.ManifestDigest, idxDigest, wantMan)
	}
	img, err := Open(ctx, "docker-daemon:"+refStr, WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if c, _ := img.ConfigName(); c != wantCfg {
		t.Errorf("opened config %s, want %s", c, wantCfg)
	}
	if byCfg, err := InspectDaemon(ctx, cli, wantCfg.String()); err != nil || byCfg.EngineID != di.EngineID {
		t.Errorf("by config digest: %+v, %v; want engine ID %s", byCfg, err, di.EngineID)
	}
}
