package format

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/sign"
)

// Header is a parsed delta header.
type Header struct {
	Manifest  Manifest
	Raw       []byte // the stored (compressed) header bytes a signature covers
	Signature []byte
	// BodyOffset is where the first blob starts.
	BodyOffset int64
}

// WriteHeader writes magic, manifest and the signature block by signers
// (empty when there are none) and returns the bytes written: the body (the
// blobs, in manifest order) follows.
func WriteHeader(w io.Writer, m *Manifest, signers ...crypto.Signer) (int64, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	hdr := enc.EncodeAll(js, nil)
	enc.Close()
	if len(hdr) > maxHeader || len(js) > maxManifest {
		return 0, fmt.Errorf("%w: manifest of %d bytes", ErrLimit, len(js))
	}
	var sig []byte
	if len(signers) > 0 {
		if sig, err = sign.Sign(hdr, signers...); err != nil {
			return 0, err
		}
	}
	return WriteFrame(w, hdr, sig)
}

// ReadHeader reads and validates a delta's header from r, leaving r at the
// first blob.
func ReadHeader(r io.Reader) (*Header, error) { return readHeader(r, nil) }

// readHeader is ReadHeader; check, if set, sees the stored header and
// signature before anything is decompressed (signature verification).
func readHeader(r io.Reader, check func(h *Header) error) (*Header, error) {
	var m [8]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return nil, fmt.Errorf("%w: reading magic: %v", ErrBadDelta, err)
	}
	if m != magic {
		if bytes.Equal(m[:7], magic[:7]) {
			return nil, fmt.Errorf("%w: format version %d, this skiff reads %d", ErrBadDelta, m[7], magic[7])
		}
		return nil, fmt.Errorf("%w: not a skiff delta", ErrBadDelta)
	}
	readLen := func(what string, max uint32) (uint32, error) {
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return 0, fmt.Errorf("%w: reading %s length: %v", ErrBadDelta, what, err)
		}
		if n > max {
			return 0, fmt.Errorf("%w: %s of %d bytes (max %d)", ErrLimit, what, n, max)
		}
		return n, nil
	}
	n, err := readLen("header", maxHeader)
	if err != nil {
		return nil, err
	}
	h := &Header{Raw: make([]byte, n)}
	if _, err := io.ReadFull(r, h.Raw); err != nil {
		return nil, fmt.Errorf("%w: header truncated: %v", ErrBadDelta, err)
	}
	sn, err := readLen("signature", maxSignature)
	if err != nil {
		return nil, err
	}
	h.Signature = make([]byte, sn)
	if _, err := io.ReadFull(r, h.Signature); err != nil {
		return nil, fmt.Errorf("%w: signature truncated: %v", ErrBadDelta, err)
	}
	h.BodyOffset = int64(8 + 4 + n + 4 + sn)
	if check != nil {
		if err := check(h); err != nil {
			return nil, err
		}
	}
	dec, err := zstd.NewReader(bytes.NewReader(h.Raw), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifest), zstd.WithDecoderMaxWindow(maxManifest))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadDelta, err)
	}
	if len(js) > maxManifest {
		return nil, fmt.Errorf("%w: manifest over %d bytes", ErrLimit, maxManifest)
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(&h.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadDelta, err)
	}
	if err := h.Manifest.Validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// HeaderDigest is what a signature will cover: the sha256 of the stored header.
func (h *Header) HeaderDigest() digest.Digest {
	s := sha256.Sum256(h.Raw)
	return digest.NewDigestFromBytes(digest.SHA256, s[:])
}

// WriteFrame writes Magic || u32le(len(hdr)) || hdr || u32le(len(sig)) ||
// sig: the stored header bytes as they are, with a signature block.
func WriteFrame(w io.Writer, hdr, sig []byte) (int64, error) {
	if len(sig) > maxSignature {
		return 0, fmt.Errorf("%w: signature block of %d bytes (max %d)", ErrLimit, len(sig), maxSignature)
	}
	var buf bytes.Buffer
	buf.Grow(8 + 4 + len(hdr) + 4 + len(sig))
	buf.Write(magic[:])
	binary.Write(&buf, binary.LittleEndian, uint32(len(hdr)))
	buf.Write(hdr)
	binary.Write(&buf, binary.LittleEndian, uint32(len(sig)))
	buf.Write(sig)
	n, err := w.Write(buf.Bytes())
	return int64(n), err
}
