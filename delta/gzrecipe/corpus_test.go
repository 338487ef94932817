package gzrecipe

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestCorpus runs Find on every layer blob of the corpus images
// (~/.cache/skiff/corpus/images/<pair>/{*.tar,*.oci}, made by `skiff bench`
// corpus generation) and replays each recipe. It reads hundreds of
// megabytes, so it runs only with GZRECIPE_CORPUS=1 (or =DIR for another
// corpus root); every blob there was made by Go's compress/gzip and must be
// reproduced.
func TestCorpus(t *testing.T) {
	root := os.Getenv("GZRECIPE_CORPUS")
	if root == "" {
		t.Skip("set GZRECIPE_CORPUS=1 (or a corpus images dir) to run")
	}
	if root == "1" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		root = filepath.Join(home, ".cache/skiff/corpus/images")
	}
	paths, err := filepath.Glob(filepath.Join(root, "*", "*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no corpus images under %s (%v)", root, err)
	}
	for _, p := range paths {
		var img v1.Image
		switch {
		case strings.HasSuffix(p, ".tar"):
			img, err = tarball.ImageFromPath(p, nil)
		case strings.HasSuffix(p, ".oci"):
			img, err = ociImage(p)
		default:
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		name, _ := filepath.Rel(root, p)
		for i, l := range layers {
			t.Run(filepath.ToSlash(name)+"/"+string(rune('0'+i)), func(t *testing.T) {
				corpusLayer(t, l)
			})
		}
	}
}

func corpusLayer(t *testing.T, l v1.Layer) {
	size, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	want, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tried := 0
	start := time.Now()
	r, err := Find(context.Background(), l.Uncompressed, l.Compressed, WithAttempts(func(Attempt) { tried++ }))
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("Find on %s (%d bytes): %v after %v", want, size, err, elapsed)
	}
	// Replay it as a device would and check the blob digest.
	tr, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	h := v1.Hash{Algorithm: "sha256"}
	hw := newHashWriter()
	start = time.Now()
	if err := r.Compress(context.Background(), tr, hw); err != nil {
		t.Fatal(err)
	}
	replayTime := time.Since(start)
	h.Hex = hw.hex()
	if h != want || hw.n != size {
		t.Fatalf("replay gives %s (%d bytes), want %s (%d bytes)", h, hw.n, want, size)
	}
	t.Logf("%s %8.1f MB  %-45s  tried %d  find %v  replay %v", want.Hex[:12], float64(size)/1e6, r, tried, elapsed.Round(time.Millisecond), replayTime.Round(time.Millisecond))
}

// ociImage opens the only image of an OCI layout.
func ociImage(dir string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, io.ErrUnexpectedEOF
	}
	return idx.Image(m.Manifests[0].Digest)
}
