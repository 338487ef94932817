package layerfs

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// Assemble streams the tar described by the skeleton skel, with payloads
// from p, to w. Each payload is checked against its digest as it streams,
// and the whole tar against the skeleton's End record (size and diff_id);
// a mismatch is ErrDigestMismatch. w may already have received bytes when an
// error is returned: write to a temporary file and publish only on success.
func Assemble(ctx context.Context, skel io.Reader, p Provider, w io.Writer) (digest.Digest, error) {
	sr, err := newSkelReader(skel)
	if err != nil {
		return "", err
	}
	a := &assembler{p: p, hash: sha256.New()}
	a.w = io.MultiWriter(w, a.hash)
	for {
		rec, err := sr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		if err := ctx.Err(); err != nil {
			return "", err
		}
		if err := a.record(ctx, rec); err != nil {
			return "", err
		}
		if rec.tag == tagEnd {
			got := digest.NewDigest(digest.SHA256, a.hash)
			if rec.n != a.n || got != rec.digest {
				return "", fmt.Errorf("reassembled layer is %s (%d bytes), skeleton says %s (%d bytes): %w",
					got, a.n, rec.digest, rec.n, ErrDigestMismatch)
			}
			return got, nil
		}
	}
	return "", fmt.Errorf("%w: no End record", ErrBadSkeleton)
}

type assembler struct {
	p     Provider
	w     io.Writer
	hash  hash.Hash
	n     int64
	zeros []byte
	buf   []byte // copy buffer shared by all payloads
}

func (a *assembler) write(b []byte) error {
	n, err := a.w.Write(b)
	a.n += int64(n)
	return err
}

func (a *assembler) record(ctx context.Context, rec record) error {
	switch rec.tag {
	case tagHeader, tagLiteral:
		return a.write(rec.data)
	case tagZeros:
		if a.zeros == nil {
			a.zeros = make([]byte, 32<<10)
		}
		for left := rec.n; left > 0; {
			k := min(left, int64(len(a.zeros)))
			if err := a.write(a.zeros[:k]); err != nil {
				return err
			}
			left -= k
		}
		return nil
	case tagPayload:
		return a.payload(ctx, rec.digest, rec.n)
	}
	return nil
}

func (a *assembler) payload(ctx context.Context, d digest.Digest, size int64) error {
	rc, err := a.p.Open(ctx, d)
	if err != nil {
		return fmt.Errorf("payload %s: %w", d, err)
	}
	defer rc.Close()
	if a.buf == nil {
		a.buf = make([]byte, 64<<10)
	}
	n, err := io.CopyBuffer(a.w, VerifyReader(rc, d, size), a.buf)
	a.n += n
	if err != nil {
		return fmt.Errorf("payload %s: %w", d, err)
	}
	return nil
}

// VerifyReader returns a reader of exactly size bytes of r that fails with
// ErrDigestMismatch, instead of returning io.EOF, when they do not hash to d
// or r holds fewer or more bytes.
func VerifyReader(r io.Reader, d digest.Digest, size int64) io.Reader {
	return &verifyReader{r: io.LimitReader(r, size+1), d: d, size: size, h: sha256.New()}
}

type verifyReader struct {
	r    io.Reader
	d    digest.Digest
	size int64
	n    int64
	h    hash.Hash
	err  error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("%s: more than %d bytes: %w", v.d, v.size, ErrDigestMismatch)
		return 0, v.err
	}
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := digest.NewDigest(digest.SHA256, v.h); v.n != v.size || got != v.d {
			v.err = fmt.Errorf("content is %s (%d bytes), expected %s (%d bytes): %w", got, v.n, v.d, v.size, ErrDigestMismatch)
			return n, v.err
		}
		v.err = io.EOF
	} else if err != nil {
		v.err = err
	}
	return n, err
}
