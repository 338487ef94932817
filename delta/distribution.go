package delta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/gzrecipe"
)

// distribution finds, for every target layer, how to reproduce its
// compressed blob, so apply can give the target's manifest digest. It
// returns nil and the reason when some layer cannot be reproduced.
func distribution(ctx context.Context, target v1.Image) (*Distribution, string, error) {
	raw, err := target.RawManifest()
	if err != nil {
		return nil, "", fmt.Errorf("target manifest: %w", err)
	}
	mt, err := target.MediaType()
	if err != nil {
		return nil, "", fmt.Errorf("target manifest: %w", err)
	}
	layers, err := target.Layers()
	if err != nil {
		return nil, "", err
	}
	d := &Distribution{Manifest: raw, MediaType: string(mt)}
	for i, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return nil, "", err
		}
		size, err := l.Size()
		if err != nil {
			return nil, "", err
		}
		lmt, err := l.MediaType()
		if err != nil {
			return nil, "", err
		}
		bl := BlobLayer{Digest: digest.Digest(h.String()), Size: size, MediaType: string(lmt)}
		switch lmt {
		case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
			// The blob is the tar.
		case types.OCILayer, types.DockerLayer:
			r, err := gzrecipe.Find(ctx, l.Uncompressed, l.Compressed)
			if errors.Is(err, gzrecipe.ErrNoRecipe) {
				return nil, fmt.Sprintf("layer %d (%s): no known compressor reproduces its gzip blob", i+1, h), nil
			}
			if err != nil {
				return nil, "", fmt.Errorf("layer %d: gzip recipe: %w", i+1, err)
			}
			if bl.Recipe, err = r.MarshalBinary(); err != nil {
				return nil, "", err
			}
		default:
			return nil, fmt.Sprintf("layer %d: media type %s is not reproduced", i+1, lmt), nil
		}
		d.Layers = append(d.Layers, bl)
	}
	return d, "", nil
}

// compressLayers re-creates the target's compressed blobs from the rebuilt
// tars and checks each against its digest.
func (a *applier) compressLayers(ctx context.Context) ([]string, error) {
	d := a.m.Target.Distribution
	out := make([]string, len(d.Layers))
	for i, bl := range d.Layers {
		if len(bl.Recipe) == 0 {
			continue // uncompressed: the blob is the tar
		}
		var r gzrecipe.Recipe
		if err := r.UnmarshalBinary(bl.Recipe); err != nil {
			return nil, fmt.Errorf("%w: layer %d recipe: %v", ErrBadDelta, i, err)
		}
		tar, err := a.openTar(i)
		if err != nil {
			return nil, err
		}
		p := filepath.Join(a.work, fmt.Sprintf("blob-%d", i))
		f, err := os.Create(p)
		if err != nil {
			tar.Close()
			return nil, err
		}
		v := digest.SHA256.Digester()
		cw := &countingWriter{w: io.MultiWriter(f, v.Hash())}
		err = r.Compress(ctx, tar, cw)
		tar.Close()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("layer %d: compressing: %w", i, err)
		}
		if v.Digest() != bl.Digest || cw.n != bl.Size {
			return nil, fmt.Errorf("layer %d: re-compressed blob is %s (%d bytes), the target's is %s (%d bytes): %w",
				i, v.Digest(), cw.n, bl.Digest, bl.Size, ErrCorrupt)
		}
		out[i] = p
	}
	return out, nil
}

// openTar opens target layer i's tar: rebuilt, or the base layer reused.
func (a *applier) openTar(i int) (io.ReadCloser, error) {
	l := a.m.Layers[i]
	if l.BaseLayer != nil {
		return a.baseL[*l.BaseLayer].Uncompressed()
	}
	return os.Open(a.tarOf[i])
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// distImage is the target as its registry had it: the exact manifest and
// the re-created compressed blobs.
type distImage struct {
	a     *applier
	blobs []string
}

var _ partial.CompressedImageCore = (*distImage)(nil)

func (d *distImage) RawConfigFile() ([]byte, error) { return d.a.m.Target.Config, nil }
func (d *distImage) MediaType() (types.MediaType, error) {
	return types.MediaType(d.a.m.Target.Distribution.MediaType), nil
}
func (d *distImage) RawManifest() ([]byte, error) { return d.a.m.Target.Distribution.Manifest, nil }
func (d *distImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for i, bl := range d.a.m.Target.Distribution.Layers {
		if bl.Digest.String() == h.String() {
			return &distLayer{d: d, i: i}, nil
		}
	}
	return nil, fmt.Errorf("no layer %s in the rebuilt image", h)
}

type distLayer struct {
	d *distImage
	i int
}

func (l *distLayer) bl() BlobLayer            { return l.d.a.m.Target.Distribution.Layers[l.i] }
func (l *distLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.bl().Digest.String()) }
func (l *distLayer) Size() (int64, error)     { return l.bl().Size, nil }
func (l *distLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.bl().MediaType), nil
}
func (l *distLayer) Compressed() (io.ReadCloser, error) {
	if p := l.d.blobs[l.i]; p != "" {
		return os.Open(p)
	}
	return l.d.a.openTar(l.i)
}
