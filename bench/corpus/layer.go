package corpus

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Gzip levels: Docker compresses at compress/gzip's default; crane (and so
// a registry push by crane) uses BestSpeed.
const (
	gzipDefault = gzip.DefaultCompression
	gzipCrane   = gzip.BestSpeed
)

type layerKey struct {
	path  string
	level int
}

// fileLayer is an uncompressed layer tar on disk plus its gzip
// compression in the work directory, with both digests computed once.
type fileLayer struct {
	tarPath, gzPath string
	tarSize, gzSize int64
	diffID, digest  v1.Hash
}

var _ v1.Layer = (*typedLayer)(nil)

// typedLayer gives a fileLayer a media type.
type typedLayer struct {
	*fileLayer
	mt types.MediaType
}

func (l *fileLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *fileLayer) Size() (int64, error)     { return l.gzSize, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	return os.Open(l.gzPath)
}
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return os.Open(l.tarPath)
}
func (l *typedLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// layer returns path compressed at level, compressing it at most once per
// BuildImages call.
func (b *builder) layer(ctx context.Context, path string, level int) (*fileLayer, error) {
	k := layerKey{path, level}
	if l, ok := b.cache[k]; ok {
		return l, nil
	}
	l, err := compressLayer(ctx, path, level, filepath.Join(b.work, fmt.Sprintf("layer-%d-level%d.tar.gz", len(b.cache), level)))
	if err != nil {
		return nil, err
	}
	b.cache[k] = l
	return l, nil
}

// checkTar rejects compressed input and anything whose first member is not
// a tar header.
func checkTar(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return fmt.Errorf("%s is gzip-compressed: %w", path, ErrBadLayer)
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return fmt.Errorf("%s is zstd-compressed: %w", path, ErrBadLayer)
	}
	if _, err := tar.NewReader(bytes.NewReader(head)).Next(); err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s has no entries: %w", path, ErrBadLayer)
		}
		return fmt.Errorf("%s: %v: %w", path, err, ErrBadLayer)
	}
	return nil
}

func compressLayer(ctx context.Context, path string, level int, out string) (*fileLayer, error) {
	if err := checkTar(path); err != nil {
		return nil, err
	}
	in, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	diffH, digH := sha256.New(), sha256.New()
	gzCount := &countWriter{w: io.MultiWriter(f, digH)}
	bw := bufio.NewWriterSize(gzCount, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, level)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(io.MultiWriter(zw, diffH), &ctxReader{ctx, in})
	if err != nil {
		return nil, fmt.Errorf("compress %s: %w", path, err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return &fileLayer{
		tarPath: path, gzPath: out,
		tarSize: n, gzSize: gzCount.n,
		diffID: hashOf(diffH), digest: hashOf(digH),
	}, nil
}

func hashOf(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
