package delta

import (
	"bytes"
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// TestResultImagesValidate: the images Apply returns pass
// go-containerregistry's own checks: the target's registry form (gzip
// blobs, when the delta carries its manifest) all of validate.Image —
// every digest, size and diff_id against the bytes served, checked in
// TestManifestReproduced —, the rebuilt image with uncompressed layers
// the structural part (validate's layer
// check gunzips every layer, so it cannot read an uncompressed one) and,
// layer by layer, digest = diff_id = sha256 of the bytes served.
func TestResultImagesValidate(t *testing.T) {
	ctx := context.Background()
	base, target := tinyPair(t)
	var buf bytes.Buffer
	if _, err := Diff(ctx, base, target, &buf, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(ctx, base, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	if err := validate.Image(res.Image, validate.Fast); err != nil {
		t.Errorf("rebuilt image: %v", err)
	}
	layers, err := res.Image.Layers()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := res.Image.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		d, _ := l.Digest()
		id, _ := l.DiffID()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		h, n, err := v1.SHA256(rc)
		rc.Close()
		size, _ := l.Size()
		if err != nil || h != d || d != id || id != cf.RootFS.DiffIDs[i] || n != size {
			t.Errorf("layer %d: digest %s, diff_id %s, config %s, served sha256 %s (%d bytes, size %d): %v", i, d, id, cf.RootFS.DiffIDs[i], h, n, size, err)
		}
	}

	// The registry form: TestManifestReproduced.
}
