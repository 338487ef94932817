package delta

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/delta/gnugzip"
)

// maxGunzip bounds the gzip payloads diffed by their content: the
// compressed size, and the content held in memory while ingesting it.
const (
	maxGunzipPayload = 16 << 20
	maxGunzipContent = 64 << 20
)

// gunzipOp turns p into a gzip op where its payload is a gzip file that
// gnugzip re-creates exactly: the op then makes the decompressed content,
// encoded against the base's decompressed content (or the pack's zstd
// where the base is not gzip). Files it does not apply to are left alone.
func (d *differ) gunzipOp(ctx context.Context, p *planned) error {
	if p.size < 18 || p.size > maxGunzipPayload {
		return nil
	}
	content, n, recipe, ok, err := d.gunzip(ctx, p.content, p.size, true)
	if err != nil || !ok {
		return err
	}
	p.op.Gzip = &GzipOp{Level: recipe.Level, Header: recipe.Header, Size: n}
	p.content, p.size = content, n
	if p.base == "" {
		return nil
	}
	bc, bn, _, ok, err := d.gunzip(ctx, p.base, p.baseSize, false)
	if err != nil {
		return err
	}
	if !ok {
		p.dropBase() // a gzip file whose base is not one: its content goes to the pack
		return nil
	}
	p.base, p.baseSize, p.op.Gzip.BaseSize = bc, bn, bn
	return nil
}

// gunzip stores the content of the gzip payload dg (size bytes) and
// returns its digest and size; with recipe, only where gnugzip re-creates
// the payload from it. ok is false for payloads that are not such gzip
// files (or are too big to hold).
func (d *differ) gunzip(ctx context.Context, dg digest.Digest, size int64, recipe bool) (content digest.Digest, n int64, rc gnugzip.Recipe, ok bool, err error) {
	if size > maxGunzipPayload {
		return "", 0, rc, false, nil
	}
	r, err := d.store.Open(ctx, dg)
	if err != nil {
		return "", 0, rc, false, err
	}
	defer r.Close()
	f, isFile := r.(*os.File)
	if !isFile {
		return "", 0, rc, false, fmt.Errorf("content store returned %T", r)
	}
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || magic != [2]byte{0x1f, 0x8b} {
		return "", 0, rc, false, nil
	}
	if recipe {
		if rc, err = gnugzip.DetectAt(f, size); err != nil {
			return "", 0, rc, false, nil // not reproducible: diff the gzip bytes
		}
	}
	cr, err := gnugzip.NewContentReader(f, size)
	if err != nil {
		return "", 0, rc, false, nil
	}
	defer cr.Close()
	b, err := io.ReadAll(io.LimitReader(cr, maxGunzipContent+1))
	if err != nil || len(b) > maxGunzipContent {
		return "", 0, rc, false, nil
	}
	content, err = d.store.Ingest(ctx, bytes.NewReader(b), int64(len(b)))
	return content, int64(len(b)), rc, err == nil, err
}
