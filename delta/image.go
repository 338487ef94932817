package delta

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// image builds the rebuilt target as an image whose layers are the exact
// uncompressed tars (blob digest = diff_id) and whose config is the
// target's bytes, so its image ID is the target's.
func (a *applier) image(base v1.Image) (v1.Image, error) {
	m := a.m
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config: v1.Descriptor{
			MediaType: types.OCIConfigJSON,
			Size:      int64(len(m.Target.Config)),
			Digest:    mustHash(m.Target.ConfigDigest.String()),
		},
	}
	core := &builtImage{config: m.Target.Config, layers: map[v1.Hash]*builtLayer{}}
	for i, l := range m.Layers {
		h := mustHash(l.DiffID.String())
		bl := &builtLayer{digest: h, size: l.Size, path: a.tarOf[i]}
		if l.BaseLayer != nil {
			bl.base = a.baseL[*l.BaseLayer]
		}
		core.layers[h] = bl
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: l.Size, Digest: h})
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	core.manifest = raw
	return partial.CompressedToImage(core)
}

func mustHash(s string) v1.Hash {
	h, err := v1.NewHash(s)
	if err != nil {
		panic(fmt.Sprintf("delta: validated digest %q does not parse: %v", s, err))
	}
	return h
}

type builtImage struct {
	config, manifest []byte
	layers           map[v1.Hash]*builtLayer
}

var _ partial.CompressedImageCore = (*builtImage)(nil)

func (b *builtImage) RawConfigFile() ([]byte, error)      { return b.config, nil }
func (b *builtImage) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (b *builtImage) RawManifest() ([]byte, error)        { return b.manifest, nil }
func (b *builtImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := b.layers[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("no layer %s in the rebuilt image", h)
}

// builtLayer is an uncompressed layer: a rebuilt tar file, or a base layer
// reused as it is.
type builtLayer struct {
	digest v1.Hash
	size   int64
	path   string
	base   v1.Layer
}

var _ partial.CompressedLayer = (*builtLayer)(nil)

func (l *builtLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *builtLayer) Size() (int64, error)                { return l.size, nil }
func (l *builtLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }
func (l *builtLayer) Compressed() (io.ReadCloser, error) {
	if l.base != nil {
		return l.base.Uncompressed()
	}
	return os.Open(l.path)
}
