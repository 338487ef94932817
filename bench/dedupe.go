package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/internal/ctxio"
	"github.com/skiff-dev/skiff/layerfs"
)

// runDedupe measures file-level dedupe alone, what a zstd:chunked partial
// pull fetches: the content of every file of the changed layers that is not
// anywhere in the base image (nor earlier in the target's changed layers),
// each compressed on its own. It runs in the harness process: the diff
// time is the whole computation, memory is not measured, and nothing is
// rebuilt (the tar headers and metadata a real pull also needs are not
// counted).
func runDedupe(ctx context.Context, _ *Tools, _ map[string]string, p *Prepared, dir string, r *Result) error {
	start := time.Now()
	base := map[digest.Digest]bool{}
	layers, err := p.Base.Layers()
	if err != nil {
		return err
	}
	for i, l := range layers {
		if err := payloadsOf(ctx, l, base); err != nil {
			return fmt.Errorf("base layer %d: %w", i, err)
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return err
	}
	defer enc.Close()
	ing := &dedupeIngester{base: base, seen: map[digest.Digest]bool{}, enc: enc, dir: dir}
	for _, c := range p.Changed {
		f, err := os.Open(c.New.Path)
		if err != nil {
			return err
		}
		_, err = layerfs.Disassemble(ctx, f, ing, io.Discard)
		f.Close()
		if err != nil {
			return fmt.Errorf("layer %d: %w", c.Index, err)
		}
	}
	r.WireBytes = ing.wire
	r.DiffTime = time.Since(start)
	r.Note = fmt.Sprintf("%d new file contents (%s) each zstd (klauspost best); tar not rebuilt", ing.files, HumanBytes(ing.raw))
	return nil
}

// payloadsOf adds the payload digests of a layer to set: the layer is
// disassembled into a skeleton that layerfs.Walk reads as it is written.
func payloadsOf(ctx context.Context, l v1.Layer, set map[digest.Digest]bool) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := layerfs.Disassemble(ctx, rc, layerfs.Discard{}, pw)
		pw.CloseWithError(err)
		done <- err
	}()
	werr := layerfs.Walk(pr, func(f layerfs.File) error {
		if f.Payload != "" {
			set[f.Payload] = true
		}
		return nil
	})
	pr.CloseWithError(fmt.Errorf("walk stopped: %w", werr))
	if derr := <-done; derr != nil && werr == nil {
		return derr
	}
	return werr
}

// maxInMemory is the largest payload dedupeIngester holds in memory; larger
// ones are spooled to a file.
const maxInMemory = 8 << 20

// dedupeIngester hashes every payload and compresses the ones that are
// neither in the base nor seen before, counting the compressed bytes.
type dedupeIngester struct {
	base, seen map[digest.Digest]bool
	enc        *zstd.Encoder
	dir        string
	buf, out   []byte
	wire, raw  int64
	files      int
}

var _ layerfs.Ingester = (*dedupeIngester)(nil)

func (d *dedupeIngester) Ingest(ctx context.Context, r io.Reader, size int64) (digest.Digest, error) {
	if size <= maxInMemory {
		if int64(cap(d.buf)) < size {
			d.buf = make([]byte, size)
		}
		b := d.buf[:size]
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		dg := digest.FromBytes(b)
		if d.isNew(dg, size) {
			d.out = d.enc.EncodeAll(b, d.out[:0])
			d.wire += int64(len(d.out))
		}
		return dg, nil
	}
	f, err := os.CreateTemp(d.dir, "spool-")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), ctxio.Reader(ctx, r), size); err != nil {
		return "", err
	}
	dg := digest.NewDigest(digest.SHA256, h)
	if !d.isNew(dg, size) {
		return dg, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	var cw countWriter
	d.enc.Reset(&cw)
	if _, err := io.Copy(d.enc, f); err != nil {
		return "", err
	}
	if err := d.enc.Close(); err != nil {
		return "", err
	}
	d.wire += cw.n
	return dg, nil
}

// isNew records a payload and reports whether it must be downloaded.
func (d *dedupeIngester) isNew(dg digest.Digest, size int64) bool {
	if d.base[dg] || d.seen[dg] {
		return false
	}
	d.seen[dg] = true
	d.files++
	d.raw += size
	return true
}

type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
