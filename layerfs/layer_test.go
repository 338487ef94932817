package layerfs

import (
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
)

// TestConfigLayers: diff_ids come from the config, and a config that
// names other content than the layer holds is caught when disassembling.
func TestConfigLayers(t *testing.T) {
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := ConfigLayers(img)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		h, _ := l.DiffID()
		if h != cf.RootFS.DiffIDs[i] {
			t.Fatalf("layer %d: diff_id %s, config %s", i, h, cf.RootFS.DiffIDs[i])
		}
		if _, err := DisassembleLayer(context.Background(), l, Discard{}, io.Discard); err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
	}

	tests := []struct {
		name   string
		mutate func(*v1.ConfigFile)
		check  func(t *testing.T, img v1.Image)
	}{
		{"wrong diff_id", func(c *v1.ConfigFile) { c.RootFS.DiffIDs[1] = c.RootFS.DiffIDs[0] }, func(t *testing.T, img v1.Image) {
			ls, err := ConfigLayers(img)
			if err != nil {
				t.Fatal(err)
			}
			_, err = DisassembleLayer(context.Background(), ls[1], Discard{}, io.Discard)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
		}},
		{"count mismatch", func(c *v1.ConfigFile) { c.RootFS.DiffIDs = c.RootFS.DiffIDs[:2] }, func(t *testing.T, img v1.Image) {
			if _, err := ConfigLayers(img); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cf.DeepCopy()
			tt.mutate(c)
			bad, err := mutate.ConfigFile(img, c)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, bad)
		})
	}
}
