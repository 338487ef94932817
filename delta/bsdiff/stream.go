package bsdiff

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// StreamEmitter writes a delta as a streaming bsdiff, the form skiff's
// delta format stores: for each control triple uvarint(Add) ‖
// uvarint(Copy) ‖ varint(Seek), then its Add diff bytes, then its Copy
// extra bytes. A device reads it once, in order (ApplyStream). Pos is the
// old position the patcher will be at, so callers can join several diffs
// with position-only triples (Add = Copy = 0).
type StreamEmitter struct {
	w   *bufio.Writer
	tmp [3 * binary.MaxVarintLen64]byte
	Pos int64
}

var _ Emitter = (*StreamEmitter)(nil)

// NewStreamEmitter returns a StreamEmitter writing to w; call Flush at the end.
func NewStreamEmitter(w io.Writer) *StreamEmitter {
	return &StreamEmitter{w: bufio.NewWriterSize(w, 64<<10)}
}

// EmitControl writes a control triple.
func (s *StreamEmitter) EmitControl(c Control) error {
	b := binary.AppendUvarint(s.tmp[:0], uint64(c.Add))
	b = binary.AppendUvarint(b, uint64(c.Copy))
	b = binary.AppendVarint(b, c.Seek)
	s.Pos += c.Add + c.Seek
	_, err := s.w.Write(b)
	return err
}

// EmitDiff writes diff bytes.
func (s *StreamEmitter) EmitDiff(p []byte) error { _, err := s.w.Write(p); return err }

// EmitExtra writes extra bytes.
func (s *StreamEmitter) EmitExtra(p []byte) error { _, err := s.w.Write(p); return err }

// Flush writes what is buffered.
func (s *StreamEmitter) Flush() error { return s.w.Flush() }

// ApplyStream rebuilds size bytes from a streaming bsdiff r and old (read
// by random access; bytes outside it count as zero), writing them to w.
// Memory is two 32 KiB buffers. A malformed stream gets ErrCorruptPatch.
func ApplyStream(old io.ReaderAt, oldSize int64, r io.Reader, size int64, w io.Writer) error {
	br, ok := r.(io.ByteReader)
	if !ok {
		b := bufio.NewReaderSize(r, 64<<10)
		br, r = b, b
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: streaming bsdiff: %s", ErrCorruptPatch, fmt.Sprintf(format, args...))
	}
	var (
		newPos, oldPos int64
		dbuf           = make([]byte, 32<<10)
		obuf           = make([]byte, 32<<10)
	)
	for newPos < size {
		add, err := binary.ReadUvarint(br)
		if err != nil {
			return bad("control: %v", err)
		}
		cp, err := binary.ReadUvarint(br)
		if err != nil {
			return bad("control: %v", err)
		}
		seek, err := binary.ReadVarint(br)
		if err != nil {
			return bad("control: %v", err)
		}
		if add > uint64(size-newPos) || cp > uint64(size-newPos)-add {
			return bad("control (%d, %d) runs past the %d-byte output", add, cp, size)
		}
		for left := int64(add); left > 0; {
			n := min(left, int64(len(dbuf)))
			d := dbuf[:n]
			if _, err := io.ReadFull(r, d); err != nil {
				return bad("diff bytes: %v", err)
			}
			o := obuf[:n]
			clear(o)
			lo, hi := max(oldPos, 0), min(oldPos+n, oldSize)
			if lo < hi {
				if _, err := old.ReadAt(o[lo-oldPos:hi-oldPos], lo); err != nil && err != io.EOF {
					return fmt.Errorf("reading old: %w", err)
				}
			}
			for i := range d {
				d[i] += o[i]
			}
			if _, err := w.Write(d); err != nil {
				return err
			}
			oldPos += n
			left -= n
		}
		if _, err := io.CopyN(w, r, int64(cp)); err != nil {
			return bad("extra bytes: %v", err)
		}
		newPos += int64(add) + int64(cp)
		if seek < -(1<<62) || seek > 1<<62 {
			return bad("seek %d", seek)
		}
		oldPos += seek
	}
	return nil
}
