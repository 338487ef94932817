//go:build integration

package layerfs

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// corpusRoot is where `make corpus` puts the realistic image pairs.
func corpusRoot(t testing.TB) string {
	root := os.Getenv("SKIFF_CORPUS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "skiff", "corpus")
	}
	if _, err := os.Stat(filepath.Join(root, "images")); err != nil {
		t.Skipf("no corpus images under %s: run `make corpus`", root)
	}
	return root
}

// TestIntegrationCorpusRoundTrip takes every layer of every corpus image
// apart into an on-disk store and rebuilds it byte for byte, and checks
// that no real layer trips the path checker (real images have absolute
// symlink targets, merged-/usr links, whiteouts, hard links).
func TestIntegrationCorpusRoundTrip(t *testing.T) {
	root := corpusRoot(t)
	refs, _ := filepath.Glob(filepath.Join(root, "images", "*", "*.tar"))
	layouts, _ := filepath.Glob(filepath.Join(root, "images", "*", "*.oci"))
	var all []string
	for _, r := range refs {
		all = append(all, "docker-archive:"+r)
	}
	for _, l := range layouts {
		all = append(all, "oci:"+l)
	}
	if len(all) < 6 {
		t.Fatalf("only %d corpus images under %s", len(all), root)
	}
	ctx := context.Background()
	store, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range all {
		t.Run(filepath.Base(filepath.Dir(ref))+"/"+filepath.Base(ref), func(t *testing.T) {
			img, err := Open(ctx, ref)
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
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				if _, err := skel.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				got, err := Assemble(ctx, skel, store, io.Discard)
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				if got != st.DiffID {
					t.Fatalf("layer %d: rebuilt %s, want %s", i, got, st.DiffID)
				}
				if _, err := skel.Seek(0, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				err = CheckPaths(skel, i)
				skel.Close()
				if err != nil {
					t.Fatalf("layer %d: %v", i, err)
				}
				t.Logf("layer %d: %s %d bytes, %d entries, %d files, skeleton %d bytes: exact, paths safe", i, got, st.TarSize, st.Entries, st.Files, st.SkeletonBytes)
			}
		})
	}
}
