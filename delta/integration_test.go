//go:build integration

package delta

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/layerfs"
)

func corpusImages(t *testing.T) string {
	root := os.Getenv("SKIFF_CORPUS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "skiff", "corpus")
	}
	dir := filepath.Join(root, "images")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("no corpus images under %s: run `make corpus`", root)
	}
	return dir
}

func openRef(t *testing.T, ref string) *layerfs.Image {
	t.Helper()
	img, err := layerfs.Open(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

// TestIntegrationCorpusDeltas diffs and applies every corpus pair and checks
// the rebuilt image is the target (config digest = image ID, diff_ids).
func TestIntegrationCorpusDeltas(t *testing.T) {
	dir := corpusImages(t)
	ctx := context.Background()
	for _, pair := range []string{"app", "os", "toolchain"} {
		t.Run(pair, func(t *testing.T) {
			oldImg := openRef(t, "docker-archive:"+filepath.Join(dir, pair, "old.tar"))
			newImg := openRef(t, "docker-archive:"+filepath.Join(dir, pair, "new.tar"))
			var buf bytes.Buffer
			start := time.Now()
			rep, err := Diff(ctx, oldImg, newImg, &buf, DefaultOptions())
			if err != nil {
				t.Fatal(err)
			}
			diffTime := time.Since(start)
			start = time.Now()
			res, err := Apply(ctx, oldImg, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			applyTime := time.Since(start)
			want, _ := newImg.ConfigName()
			got, _ := res.Image.ConfigName()
			if got != want {
				t.Fatalf("image ID %s, want %s", got, want)
			}
			if diff := cmp.Diff(diffIDs(t, newImg), diffIDs(t, res.Image)); diff != "" {
				t.Fatalf("diff_ids (-want +got):\n%s", diff)
			}
			t.Logf("%s: delta %d bytes (changed layers %d), diff %v, apply %v: exact", pair, rep.DeltaBytes, rep.ChangedBlobs, diffTime.Round(time.Millisecond), applyTime.Round(time.Millisecond))
		})
	}
}

// TestIntegrationCorpusStable: the os pair given as docker-archive, OCI
// layout, and with a re-saved target (shuffled members, new mtimes,
// uncompressed layers) gives byte-identical deltas.
func TestIntegrationCorpusStable(t *testing.T) {
	dir := filepath.Join(corpusImages(t), "os")
	ctx := context.Background()
	pairs := [][2]string{
		{"docker-archive:" + dir + "/old.tar", "docker-archive:" + dir + "/new.tar"},
		{"oci:" + dir + "/old.oci", "oci:" + dir + "/new.oci"},
		{"docker-archive:" + dir + "/old.tar", "docker-archive:" + dir + "/new-resaved.tar"},
	}
	var want []byte
	for _, p := range pairs {
		var buf bytes.Buffer
		if _, err := Diff(ctx, openRef(t, p[0]), openRef(t, p[1]), &buf, DefaultOptions()); err != nil {
			t.Fatalf("%v: %v", p, err)
		}
		if want == nil {
			want = buf.Bytes()
			continue
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%v: delta differs (%d vs %d bytes)", p, buf.Len(), len(want))
		}
	}
	t.Logf("os pair: %d-byte delta identical across docker-archive, OCI layout and a re-saved archive: exact", len(want))
}

// TestIntegrationManifestToEngine: from OCI layouts the manifest digest is
// reproduced, and the rebuilt image loads into Docker Engine with the
// target's image ID.
func TestIntegrationManifestToEngine(t *testing.T) {
	dir := filepath.Join(corpusImages(t), "app")
	ctx := context.Background()
	oldImg := openRef(t, "oci:"+dir+"/old.oci")
	newImg := openRef(t, "oci:"+dir+"/new.oci")
	res := applyWithManifest(t, oldImg, newImg)
	want, _ := newImg.Digest()
	t.Logf("app pair: manifest %s reproduced: exact", want)
	if os.Getenv("DOCKER_HOST") == "" {
		t.Skip("DOCKER_HOST unset: start the engine with `make infra-up` and source its env.sh")
	}
	// layerfs.Write checks the engine's image ID against the config digest.
	if err := layerfs.Write(ctx, "docker-daemon:skiff-it/app:delta", res.Image); err != nil {
		t.Fatal(err)
	}
	id, _ := newImg.ConfigName()
	t.Logf("loaded into Docker Engine as skiff-it/app:delta with image ID %s: exact", id)
}
