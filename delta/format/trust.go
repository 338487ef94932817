package format

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/ctxio"
)

// Trust is what a reader accepts as a delta's origin (FORMAT.md, "Trust
// model").
type Trust struct {
	// Keys are the trusted public keys: a delta must carry a valid
	// signature by one of them.
	Keys []ed25519.PublicKey
	// AllowUnsigned accepts unsigned deltas (development only). With no
	// Keys it also accepts signed deltas it cannot check; with Keys, a
	// signed delta must still verify.
	AllowUnsigned bool
}

// Check verifies h's signature block against t. It returns the ID of the
// trusted key that verified, or "" when t let an unverified delta through.
// Errors wrap sign.ErrUnsigned, sign.ErrBadSignature or
// sign.ErrUntrustedKey and say what is missing.
func (t Trust) Check(h *Header) (string, error) {
	if len(t.Keys) == 0 {
		if t.AllowUnsigned {
			return "", nil
		}
		if len(h.Signature) == 0 {
			return "", fmt.Errorf("%w, and no public keys are trusted", sign.ErrUnsigned)
		}
		_, err := sign.Verify(h.Signature, h.Raw, nil)
		return "", err
	}
	if len(h.Signature) == 0 && t.AllowUnsigned {
		return "", nil
	}
	id, err := sign.Verify(h.Signature, h.Raw, t.Keys)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// ReadVerifiedHeader is ReadHeader that first checks the signature against
// trust, before the manifest is decompressed or parsed.
func ReadVerifiedHeader(r io.Reader, trust Trust) (*Header, string, error) {
	var id string
	h, err := readHeader(r, func(h *Header) (err error) {
		id, err = trust.Check(h)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return h, id, nil
}

// SignatureKeyIDs lists the key IDs of h's signatures (none when unsigned).
func (h *Header) SignatureKeyIDs() ([]string, error) {
	if len(h.Signature) == 0 {
		return nil, nil
	}
	blk, err := sign.Parse(h.Signature)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, id := range blk.KeyIDs() {
		ids = append(ids, id.String())
	}
	return ids, nil
}

// Resign copies the delta from r to w with signatures by signers added to
// its signature block (replacing an earlier signature by the same key; with
// replace, dropping all earlier ones). The header bytes are kept exactly, so
// the header digest and existing signatures by other keys stay valid; the
// blobs are copied unchanged. It returns the header as written.
func Resign(ctx context.Context, r io.Reader, w io.Writer, replace bool, signers ...crypto.Signer) (*Header, error) {
	h, err := ReadHeader(r)
	if err != nil {
		return nil, err
	}
	sig, err := sign.Append(h.Signature, h.Raw, replace, signers...)
	if err != nil {
		return nil, err
	}
	n, err := WriteFrame(w, h.Raw, sig)
	if err != nil {
		return nil, err
	}
	h.Signature, h.BodyOffset = sig, n
	var body int64
	for _, b := range h.Manifest.Blobs {
		body += b.Size
	}
	got, err := io.Copy(w, ctxio.Reader(ctx, r))
	if err != nil {
		return nil, err
	}
	if got != body {
		return nil, fmt.Errorf("%w: the body holds %d bytes, the manifest's blobs %d", ErrBadDelta, got, body)
	}
	return h, nil
}
