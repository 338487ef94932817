package bsdiff

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// SplitEmitter collects a delta in the *split* form skiff's solid streams
// carry (delta/FORMAT.md, version 3): uvarint(n) ‖ n control triples
// (uvarint(Add) ‖ uvarint(Copy) ‖ varint(Seek)) ‖ every diff byte, zero
// runs coded by length (ZeroRuns) ‖ every extra byte. Keeping like with like (controls, then the diff bytes, mostly
// zeros, then the literal bytes) lets the compressor that follows model
// each kind on its own: on an npm update, 18.0 KB with brotli instead of
// 20.2 KB for the interleaved streaming form.
type SplitEmitter struct {
	zr          []byte // the diff bytes as ZeroRuns, once Size or Bytes asked
	ctrl        []byte
	n           int
	diff, extra []byte
	Pos         int64 // old position the patcher will be at, as in StreamEmitter
	outSize     int64
}

var _ Emitter = (*SplitEmitter)(nil)

// EmitControl records a control triple.
func (s *SplitEmitter) EmitControl(c Control) error {
	s.ctrl = binary.AppendUvarint(s.ctrl, uint64(c.Add))
	s.ctrl = binary.AppendUvarint(s.ctrl, uint64(c.Copy))
	s.ctrl = binary.AppendVarint(s.ctrl, c.Seek)
	s.n++
	s.Pos += c.Add + c.Seek
	s.outSize += c.Add + c.Copy
	return nil
}

// EmitDiff records diff bytes.
func (s *SplitEmitter) EmitDiff(p []byte) error {
	s.diff = append(s.diff, p...)
	s.zr = nil
	return nil
}

func (s *SplitEmitter) zeroRuns() []byte {
	if s.zr == nil {
		s.zr = AppendZeroRuns(make([]byte, 0, 64), s.diff)
	}
	return s.zr
}

// minZeroRun is the shortest run of zeros that ends a literal run: a
// shorter one costs less inside it than the two lengths a new run needs.
const minZeroRun = 8

// AppendZeroRuns appends b coded as zero runs: uvarint(z) ‖ uvarint(l) ‖
// l literal bytes, repeated, meaning z zero bytes then the l bytes, each
// run making at least one byte. A diff block of bsdiff is mostly zeros
// (the file matched its base there): coded so, the stream's compressor
// sees about a fortieth of the bytes (npm pair: 5.3 MB of diff bytes, 96%
// zeros) and its window reaches across far more files.
func AppendZeroRuns(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		z := i
		for z < len(b) && b[z] == 0 {
			z++
		}
		// The literal run ends at the next run of minZeroRun zeros, or the end.
		l, zeros := z, 0
		for l < len(b) {
			if b[l] == 0 {
				zeros++
				if zeros == minZeroRun {
					l -= minZeroRun - 1
					break
				}
			} else {
				zeros = 0
			}
			l++
		}
		if l == len(b) {
			// Trailing zeros belong to no literal.
			for l > z && b[l-1] == 0 {
				l--
			}
		}
		dst = binary.AppendUvarint(dst, uint64(z-i))
		dst = binary.AppendUvarint(dst, uint64(l-z))
		dst = append(dst, b[z:l]...)
		i = l
	}
	return dst
}

// zeroRunReader expands ZeroRuns, left bytes in all: each run's lengths
// read from zbr and lbr, its literal bytes from r.
type zeroRunReader struct {
	r           io.Reader
	zbr, lbr    io.ByteReader
	left        int64
	zeros, lits int64
}

func (z *zeroRunReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for z.zeros == 0 && z.lits == 0 {
		if z.left == 0 {
			return 0, io.EOF
		}
		a, err1 := binary.ReadUvarint(z.zbr)
		b, err2 := binary.ReadUvarint(z.lbr)
		if err := firstErr(err1, err2); err != nil {
			return 0, fmt.Errorf("%w: split bsdiff: zero run: %v", ErrCorruptPatch, err)
		}
		if a+b == 0 || a > uint64(z.left) || b > uint64(z.left)-a {
			return 0, fmt.Errorf("%w: split bsdiff: zero run (%d, %d) for %d bytes left", ErrCorruptPatch, a, b, z.left)
		}
		z.zeros, z.lits = int64(a), int64(b)
	}
	if z.zeros > 0 {
		n := int(min(int64(len(p)), z.zeros))
		clear(p[:n])
		z.zeros -= int64(n)
		z.left -= int64(n)
		return n, nil
	}
	n, err := io.ReadFull(z.r, p[:min(int64(len(p)), z.lits)])
	z.lits -= int64(n)
	z.left -= int64(n)
	if err != nil {
		return n, fmt.Errorf("%w: split bsdiff: literal bytes: %v", ErrCorruptPatch, err)
	}
	return n, nil
}

// EmitExtra records extra bytes.
func (s *SplitEmitter) EmitExtra(p []byte) error { s.extra = append(s.extra, p...); return nil }

// OutSize is how many bytes the recorded triples make.
func (s *SplitEmitter) OutSize() int64 { return s.outSize }

// Size is the length of the split form.
func (s *SplitEmitter) Size() int {
	return binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(s.n)) + len(s.ctrl) + len(s.zeroRuns()) + len(s.extra)
}

// WriteTo writes the split form.
func (s *SplitEmitter) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, b := range [][]byte{binary.AppendUvarint(nil, uint64(s.n)), s.ctrl, s.zeroRuns(), s.extra} {
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Bytes returns the split form.
func (s *SplitEmitter) Bytes() []byte {
	out := make([]byte, 0, s.Size())
	out = binary.AppendUvarint(out, uint64(s.n))
	out = append(out, s.ctrl...)
	out = append(out, s.zeroRuns()...)
	return append(out, s.extra...)
}

// ApplySplit rebuilds size bytes from the split form read from r and old
// (read by random access; bytes outside it count as zero), writing them to
// out by offset: first every diff region, then every extra region. It
// reads exactly the split form from r and nothing after it, so several
// split forms can follow each other in one stream; r should be an
// io.ByteReader (a *bufio.Reader), or each control byte is a Read call.
//
// The control triples are spilled to spill (a scratch file), so memory is
// two 32 KiB buffers and spill's buffering whatever the file's size; at
// most maxControls triples are accepted. A malformed form gets
// ErrCorruptPatch.
func ApplySplit(old io.ReaderAt, oldSize int64, r io.Reader, size int64, out io.WriterAt, spill io.ReadWriteSeeker, maxControls int64) error {
	return ApplyColumns(old, oldSize, SameColumns(r), size, out, spill, maxControls)
}

// Columns are where the parts of a split form are read from, each in
// order: the control count, each triple's add, copy and seek, each zero
// run's two lengths and its literal bytes, and the extra bytes. The split
// form itself is all of them one reader (SameColumns); skiff's columnar
// streams (delta/FORMAT.md, version 5) keep each part of every file of a
// stream together, so the compressor models each on its own.
type Columns struct {
	Count, Add, Copy, Seek io.ByteReader
	Zeros, Lits            io.ByteReader // a zero run's lengths: zero bytes, literal bytes
	Diff                   io.Reader     // the literal diff bytes
	Extra                  io.Reader
}

// SameColumns reads every part from r, as the split form has them.
func SameColumns(r io.Reader) Columns {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = byteReader{r}
	}
	return Columns{Count: br, Add: br, Copy: br, Seek: br, Zeros: br, Lits: br, Diff: r, Extra: r}
}

// Column indices of a columnar layout (ColumnWriter).
const (
	ColCount = iota
	ColAdd
	ColCopy
	ColSeek
	ColZeros
	ColLits
	ColDiff
	ColExtra
	NumColumns
)

// ColumnWriter distributes split forms into NumColumns column writers.
type ColumnWriter [NumColumns]io.Writer

// Split reads one split form from r (exactly its bytes) and writes its
// parts to the columns. A malformed form gets ErrCorruptPatch.
func (c ColumnWriter) Split(r *bufio.Reader) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: split bsdiff: %s", ErrCorruptPatch, fmt.Sprintf(format, args...))
	}
	put := func(col int, x uint64) error {
		_, err := c[col].Write(binary.AppendUvarint(nil, x))
		return err
	}
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return bad("control count: %v", err)
	}
	if err := put(ColCount, n); err != nil {
		return err
	}
	var adds, copies uint64
	for i := uint64(0); i < n; i++ {
		add, err1 := binary.ReadUvarint(r)
		cp, err2 := binary.ReadUvarint(r)
		seek, err3 := binary.ReadVarint(r)
		if err := firstErr(err1, err2, err3); err != nil {
			return bad("control %d: %v", i, err)
		}
		adds, copies = adds+add, copies+cp
		err1 = put(ColAdd, add)
		err2 = put(ColCopy, cp)
		_, err3 = c[ColSeek].Write(binary.AppendVarint(nil, seek))
		if err := firstErr(err1, err2, err3); err != nil {
			return err
		}
	}
	for got := uint64(0); got < adds; {
		z, err1 := binary.ReadUvarint(r)
		l, err2 := binary.ReadUvarint(r)
		if err := firstErr(err1, err2); err != nil || z+l == 0 || z > adds-got || l > adds-got-z {
			return bad("zero run (%d, %d): %v", z, l, err)
		}
		got += z + l
		if err := firstErr(put(ColZeros, z), put(ColLits, l)); err != nil {
			return err
		}
		if _, err := io.CopyN(c[ColDiff], r, int64(l)); err != nil {
			return bad("literal bytes: %v", err)
		}
	}
	if _, err := io.CopyN(c[ColExtra], r, int64(copies)); err != nil {
		return bad("extra bytes: %v", err)
	}
	return nil
}

// ApplyColumns is ApplySplit reading each part of the split form from its
// column.
func ApplyColumns(old io.ReaderAt, oldSize int64, cols Columns, size int64, out io.WriterAt, spill io.ReadWriteSeeker, maxControls int64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: split bsdiff: %s", ErrCorruptPatch, fmt.Sprintf(format, args...))
	}
	n, err := binary.ReadUvarint(cols.Count)
	if err != nil {
		return bad("control count: %v", err)
	}
	if n > uint64(maxControls) {
		return bad("%d control triples, at most %d allowed", n, maxControls)
	}
	if _, err := spill.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sw := bufio.NewWriterSize(spill, 32<<10)
	var rec [24]byte
	var total, adds int64 // output bytes, of them diff bytes
	for i := uint64(0); i < n; i++ {
		add, err1 := binary.ReadUvarint(cols.Add)
		cp, err2 := binary.ReadUvarint(cols.Copy)
		seek, err3 := binary.ReadVarint(cols.Seek)
		if err := firstErr(err1, err2, err3); err != nil {
			return bad("control %d: %v", i, err)
		}
		if add > uint64(size-total) || cp > uint64(size-total)-add {
			return bad("control (%d, %d) runs past the %d-byte output", add, cp, size)
		}
		if seek < -(1<<62) || seek > 1<<62 {
			return bad("seek %d", seek)
		}
		total += int64(add + cp)
		adds += int64(add)
		binary.LittleEndian.PutUint64(rec[0:], add)
		binary.LittleEndian.PutUint64(rec[8:], cp)
		binary.LittleEndian.PutUint64(rec[16:], uint64(seek))
		if _, err := sw.Write(rec[:]); err != nil {
			return err
		}
	}
	if total != size {
		return bad("controls make %d bytes, the file has %d", total, size)
	}
	if err := sw.Flush(); err != nil {
		return err
	}
	// each walks the spilled controls: fn gets the output offset of the
	// triple and the old position of its diff region.
	each := func(fn func(add, cp, newPos, oldPos int64) error) error {
		if _, err := spill.Seek(0, io.SeekStart); err != nil {
			return err
		}
		sr := bufio.NewReaderSize(spill, 32<<10)
		var newPos, oldPos int64
		for i := uint64(0); i < n; i++ {
			if _, err := io.ReadFull(sr, rec[:]); err != nil {
				return fmt.Errorf("reading spilled controls: %w", err)
			}
			add := int64(binary.LittleEndian.Uint64(rec[0:]))
			cp := int64(binary.LittleEndian.Uint64(rec[8:]))
			seek := int64(binary.LittleEndian.Uint64(rec[16:]))
			if err := fn(add, cp, newPos, oldPos); err != nil {
				return err
			}
			newPos += add + cp
			oldPos += add + seek
		}
		return nil
	}
	dbuf := make([]byte, chunkSize)
	obuf := make([]byte, chunkSize)
	zr := &zeroRunReader{r: cols.Diff, zbr: cols.Zeros, lbr: cols.Lits, left: adds}
	err = each(func(add, _, newPos, oldPos int64) error {
		for left := add; left > 0; {
			k := min(left, int64(len(dbuf)))
			d := dbuf[:k]
			if _, err := io.ReadFull(zr, d); err != nil {
				return bad("diff bytes: %v", err)
			}
			o := obuf[:k]
			clear(o)
			lo, hi := max(oldPos, 0), min(oldPos+k, oldSize)
			if lo < hi {
				if _, err := old.ReadAt(o[lo-oldPos:hi-oldPos], lo); err != nil && err != io.EOF {
					return fmt.Errorf("reading old: %w", err)
				}
			}
			for i := range d {
				d[i] += o[i]
			}
			if _, err := out.WriteAt(d, newPos); err != nil {
				return err
			}
			newPos += k
			oldPos += k
			left -= k
		}
		return nil
	})
	if err != nil {
		return err
	}
	return each(func(add, cp, newPos, _ int64) error {
		newPos += add
		for left := cp; left > 0; {
			k := min(left, int64(len(dbuf)))
			if _, err := io.ReadFull(cols.Extra, dbuf[:k]); err != nil {
				return bad("extra bytes: %v", err)
			}
			if _, err := out.WriteAt(dbuf[:k], newPos); err != nil {
				return err
			}
			newPos += k
			left -= k
		}
		return nil
	})
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// byteReader reads one byte at a time from an io.Reader.
type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var one [1]byte
	_, err := io.ReadFull(b.r, one[:])
	return one[0], err
}
