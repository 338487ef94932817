package layerfs

import (
	"context"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
)

// DisassembleLayer disassembles an image layer (decompressing it as needed)
// and checks that the tar's sha256 is the diff_id the image declares.
func DisassembleLayer(ctx context.Context, l v1.Layer, ing Ingester, skel io.Writer) (Stats, error) {
	want, err := l.DiffID()
	if err != nil {
		return Stats{}, fmt.Errorf("layer diff_id: %w", err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return Stats{}, fmt.Errorf("layer %s: %w", want, err)
	}
	defer rc.Close()
	st, err := Disassemble(ctx, rc, ing, skel)
	if err != nil {
		return st, fmt.Errorf("layer %s: %w", want, err)
	}
	if st.DiffID.String() != want.String() {
		return st, fmt.Errorf("layer content is %s, the image says %s: %w", st.DiffID, want, ErrDigestMismatch)
	}
	return st, nil
}

// maxSkeletonWindow caps the memory a zstd-compressed skeleton may ask of
// its reader.
const maxSkeletonWindow = 8 << 20

// CompressSkeleton returns a writer that stores a skeleton as one zstd
// frame in w. Close flushes it.
func CompressSkeleton(w io.Writer) (io.WriteCloser, error) {
	return zstd.NewWriter(w,
		zstd.WithEncoderLevel(zstd.SpeedBetterCompression),
		zstd.WithWindowSize(maxSkeletonWindow),
		zstd.WithEncoderConcurrency(1))
}

// DecompressSkeleton reads a skeleton stored by CompressSkeleton, with
// bounded memory.
func DecompressSkeleton(r io.Reader) (io.ReadCloser, error) {
	d, err := zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(maxSkeletonWindow),
		zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSkeleton, err)
	}
	return d.IOReadCloser(), nil
}

// ConfigLayers returns img's layers with their diff_ids taken from the
// image config, so asking a layer for its DiffID does not read and hash the
// whole layer (go-containerregistry does that for compressed archive
// layers). The config is what names an image's content; DisassembleLayer
// still checks each layer's bytes against it.
func ConfigLayers(img v1.Image) ([]v1.Layer, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	ids := cf.RootFS.DiffIDs
	if len(ids) != len(layers) {
		return nil, fmt.Errorf("the image config lists %d diff_ids for %d layers: %w", len(ids), len(layers), ErrDigestMismatch)
	}
	out := make([]v1.Layer, len(layers))
	for i, l := range layers {
		out[i] = configLayer{Layer: l, diffID: ids[i]}
	}
	return out, nil
}

// configLayer is a layer whose diff_id comes from the image config.
type configLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l configLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
