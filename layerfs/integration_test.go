//go:build integration

package layerfs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/moby/client"
)

// These tests need a Docker Engine: run the project's infra script, source
// its env.sh (which sets DOCKER_HOST), then
//
//	go test -tags integration ./layerfs/ -run Integration
//
// SKIFF_CORPUS_IMAGES may list docker-archives (separated by the OS path
// list separator) to load through the engine as well.

func requireEngine(t *testing.T) {
	t.Helper()
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST is unset: start the Docker Engine with the infra script and source its env.sh to run the engine integration tests")
	}
}

func engineImageID(t *testing.T, ctx context.Context, ref string) string {
	t.Helper()
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	// The config digest, whichever image store the engine uses (the
	// containerd store's image ID is the manifest digest).
	di, err := InspectDaemon(ctx, cli, ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	return di.ConfigDigest
}

func TestIntegrationDaemonRoundTrip(t *testing.T) {
	requireEngine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	src := seededImage(t, 20261123, 3) // 3 gzip layers
	want := summarize(t, src)
	const ref = "docker-daemon:skiff-it/roundtrip:1"
	if err := Write(ctx, ref, src); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if id := engineImageID(t, ctx, "skiff-it/roundtrip:1"); id != want.ConfigDigest.String() {
		t.Errorf("engine image ID %s, want config digest %s", id, want.ConfigDigest)
	}

	tmp := t.TempDir()
	img, err := Open(ctx, ref, WithTempDir(tmp))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	got := summarize(t, img)
	// The engine stores layers uncompressed; blob digests of the saved
	// archive are not the source's. diff_ids and config must be.
	want.LayerDigests, got.LayerDigests = nil, nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("image changed through the engine (-want +got):\n%s", diff)
	}
	checkContent(t, img)
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("Close left %v in the temp dir", ents)
	}

	// By image ID too.
	byID, err := Open(ctx, "docker-daemon:"+want.ConfigDigest.String())
	if err != nil {
		t.Fatalf("Open by ID: %v", err)
	}
	if c, _ := byID.ConfigName(); c != want.ConfigDigest {
		t.Errorf("by ID: config %s, want %s", c, want.ConfigDigest)
	}
	byID.Close()

	_, err = Open(ctx, "docker-daemon:skiff-it/absent:1")
	if err == nil || !strings.Contains(err.Error(), "not in the engine") {
		t.Errorf("Open of an absent image = %v, want image-not-in-engine error", err)
	}
}

func TestIntegrationDaemonCorpus(t *testing.T) {
	requireEngine(t)
	paths := filepath.SplitList(os.Getenv("SKIFF_CORPUS_IMAGES"))
	if len(paths) == 0 {
		t.Skip("SKIFF_CORPUS_IMAGES is unset: no corpus docker-archive to load")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			src, err := Open(ctx, "docker-archive:"+p)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			want := summarize(t, src)
			ref := "docker-daemon:skiff-it/corpus:" + string(rune('a'+i%26))
			if err := Write(ctx, ref, src); err != nil {
				t.Fatalf("Write: %v", err)
			}
			back, err := Open(ctx, ref)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer back.Close()
			got := summarize(t, back)
			want.LayerDigests, got.LayerDigests = nil, nil
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
