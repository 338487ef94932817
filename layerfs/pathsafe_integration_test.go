//go:build integration

package layerfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestIntegrationCorpusPathsSafe: no layer of a real corpus image trips the
// path checker (real images have absolute symlink targets, merged-/usr
// links, whiteouts, hard links).
func TestIntegrationCorpusPathsSafe(t *testing.T) {
	root := corpusRoot(t)
	refs, _ := filepath.Glob(filepath.Join(root, "images", "*", "*.tar"))
	if len(refs) < 3 {
		t.Fatalf("only %d corpus images under %s", len(refs), root)
	}
	ctx := context.Background()
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		t.Run(filepath.Base(filepath.Dir(ref))+"/"+filepath.Base(ref), func(t *testing.T) {
			img, err := Open(ctx, "docker-archive:"+ref)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			for i, l := range layers {
				skel, err := os.CreateTemp(t.TempDir(), "skel-")
				if err != nil {
					t.Fatal(err)
				}
				st, err := DisassembleLayer(ctx, l, store, skel)
				if err == nil {
					_, err = skel.Seek(0, io.SeekStart)
				}
				if err == nil {
					err = CheckPaths(skel, i)
				}
				skel.Close()
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				t.Logf("layer %d: %d entries: paths safe", i, st.Entries)
			}
		})
	}
}
