package bsdiff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

var (
	// ErrCorruptPatch means a patch (BSDIFF40 file or raw streams) is
	// malformed, truncated, inconsistent with its declared sizes or with
	// the old file. The wrapping error says what is wrong.
	ErrCorruptPatch = errors.New("bsdiff: corrupt patch")
	// ErrTooLarge means an input or a declared size exceeds a limit: the
	// differ's MaxInputSize, or a patch's output limit (WithMaxOutput).
	ErrTooLarge = errors.New("bsdiff: size exceeds limit")
)

// Control is one bsdiff control triple. Applying it: take Add bytes from
// the diff stream and add each, modulo 256, to the old byte at the same
// offset from the old position (old bytes outside the old file count as
// 0); then append Copy bytes from the extra stream unchanged; then move the
// old position by Add+Seek. The new position advances by Add+Copy.
type Control struct {
	Add  int64 // bytes produced as diff + old
	Copy int64 // bytes copied from the extra stream
	Seek int64 // old position adjustment after the triple (may be negative)
}

// BSDIFF40 file layout (all integers 8 bytes, sign-magnitude little endian:
// the low 63 bits hold |x| little endian, the top bit of the last byte is
// the sign):
//
//	Patch  = "BSDIFF40" || CtrlLen(8) || DiffLen(8) || NewSize(8)
//	         || bzip2(Ctrl) (CtrlLen bytes) || bzip2(Diff) (DiffLen bytes)
//	         || bzip2(Extra) (to end of file)
//	Ctrl   = (Add(8) || Copy(8) || Seek(8))*
const (
	magic      = "BSDIFF40"
	headerSize = 32
)

// putOfft encodes x in bsdiff's sign-magnitude form.
func putOfft(b []byte, x int64) {
	u := uint64(x)
	if x < 0 {
		u = uint64(-x) | 1<<63
	}
	binary.LittleEndian.PutUint64(b, u)
}

// getOfft decodes bsdiff's sign-magnitude form. Negative zero decodes as 0.
func getOfft(b []byte) int64 {
	u := binary.LittleEndian.Uint64(b)
	v := int64(u &^ (1 << 63))
	if u&(1<<63) != 0 {
		return -v
	}
	return v
}

// Compact control encoding used by DiffStreams and PatchStreams: each
// triple is
//
//	Ctrl = uvarint(Add) || uvarint(Copy) || varint(Seek)
//
// with encoding/binary's varints (LEB128; varint is zigzag-signed). There
// is no count or terminator: the stream ends after the triple that
// completes the declared new size.

// appendControl appends c in the compact encoding.
func appendControl(b []byte, c Control) []byte {
	b = binary.AppendUvarint(b, uint64(c.Add))
	b = binary.AppendUvarint(b, uint64(c.Copy))
	return binary.AppendVarint(b, c.Seek)
}

// controlReader yields control triples from some encoding.
type controlReader interface {
	next() (Control, error)
}

// offtControls reads 24-byte BSDIFF40 triples.
type offtControls struct {
	r   io.Reader
	buf [24]byte
}

func (o *offtControls) next() (Control, error) {
	if _, err := io.ReadFull(o.r, o.buf[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Control{}, fmt.Errorf("control block truncated: %w", ErrCorruptPatch)
		}
		return Control{}, err
	}
	return Control{getOfft(o.buf[0:]), getOfft(o.buf[8:]), getOfft(o.buf[16:])}, nil
}

// varintControls reads the compact encoding.
type varintControls struct {
	r   io.ByteReader
	src *streamReader // where r reads from, to tell its errors apart
}

func (v *varintControls) next() (Control, error) {
	add, err := binary.ReadUvarint(v.r)
	if err != nil {
		return Control{}, v.controlErr("add length", err)
	}
	cp, err := binary.ReadUvarint(v.r)
	if err != nil {
		return Control{}, v.controlErr("copy length", err)
	}
	seek, err := binary.ReadVarint(v.r)
	if err != nil {
		return Control{}, v.controlErr("seek", err)
	}
	if add > maxLimit || cp > maxLimit {
		return Control{}, fmt.Errorf("control stream: length %d/%d out of range: %w", add, cp, ErrCorruptPatch)
	}
	return Control{int64(add), int64(cp), seek}, nil
}

// controlErr classifies an error from decoding a varint: truncation and
// overlong varints are corruption; an error of the underlying stream
// (already wrapped by streamReader) is passed on.
func (v *varintControls) controlErr(field string, err error) error {
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return fmt.Errorf("control stream truncated in %s: %w", field, ErrCorruptPatch)
	case v.src != nil && err == v.src.err:
		return err
	default: // encoding/binary's overflow error
		return fmt.Errorf("control stream: %s: %v: %w", field, err, ErrCorruptPatch)
	}
}
