package bsdiff

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
)

const (
	// DefaultMaxOutput is the largest new size a patch may declare unless
	// WithMaxOutput says otherwise.
	DefaultMaxOutput = 1 << 31
	// DefaultMaxBuffer is how many compressed control and diff bytes Patch
	// may buffer when the patch reader has no random access.
	DefaultMaxBuffer = 64 << 20
	// maxLimit keeps every position computation far from int64 overflow.
	maxLimit = 1 << 60
	// maxOldPos bounds the old position a patch may seek to.
	maxOldPos = 1 << 62
)

// PatchOption configures Patch and PatchStreams.
type PatchOption func(*patchConfig) error

type patchConfig struct {
	maxOutput int64
	maxBuffer int64
}

// WithMaxOutput caps the new size a patch may declare (default
// DefaultMaxOutput, at most 2^60). A patch declaring more is rejected
// before anything is written, with an error wrapping ErrTooLarge and
// ErrCorruptPatch.
func WithMaxOutput(n int64) PatchOption {
	return func(c *patchConfig) error {
		if n < 0 || n > maxLimit {
			return fmt.Errorf("bsdiff: WithMaxOutput(%d): want 0..%d", n, int64(maxLimit))
		}
		c.maxOutput = n
		return nil
	}
}

// WithMaxBuffer caps the memory Patch uses to hold the compressed control
// and diff blocks when the patch reader is not an io.ReaderAt+io.Seeker
// (default DefaultMaxBuffer). With random access nothing is buffered.
func WithMaxBuffer(n int64) PatchOption {
	return func(c *patchConfig) error {
		if n < 0 || n > maxLimit {
			return fmt.Errorf("bsdiff: WithMaxBuffer(%d): want 0..%d", n, int64(maxLimit))
		}
		c.maxBuffer = n
		return nil
	}
}

func makePatchConfig(opts []PatchOption) (patchConfig, error) {
	c := patchConfig{maxOutput: DefaultMaxOutput, maxBuffer: DefaultMaxBuffer}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Patch applies the BSDIFF40 patch read from patch to old (oldSize bytes,
// read by random access) and writes the new file sequentially to w.
//
// Memory is bounded and independent of the file sizes: three bzip2
// decoders (up to ~4 MB each, set by the streams' block size) and a few
// 32-64 KiB buffers. When patch is also an io.ReaderAt and io.Seeker (an
// *os.File, *bytes.Reader, *io.SectionReader), its three blocks are read in
// lockstep in place, starting at its current offset; otherwise the
// compressed control and diff blocks are buffered, up to WithMaxBuffer.
//
// Every length in the patch is checked before it is used: a malformed,
// truncated or hostile patch gets an error wrapping ErrCorruptPatch that
// says what is wrong; a declared size over a limit also wraps
// ErrTooLarge. Like bspatch 4.3, diff bytes that fall outside old are
// added to zero. On error, w may have received a prefix of the output.
func Patch(ctx context.Context, old io.ReaderAt, oldSize int64, patch io.Reader, w io.Writer, opts ...PatchOption) error {
	cfg, err := makePatchConfig(opts)
	if err != nil {
		return err
	}
	if oldSize < 0 {
		return fmt.Errorf("bsdiff: negative old size %d", oldSize)
	}
	var hdr [headerSize]byte
	if _, err := io.ReadFull(patch, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("header truncated: %w", ErrCorruptPatch)
		}
		return fmt.Errorf("bsdiff: reading header: %w", err)
	}
	if string(hdr[:8]) != magic {
		return fmt.Errorf("bad magic %q, want %q: %w", hdr[:8], magic, ErrCorruptPatch)
	}
	ctrlLen, diffLen, newSize := getOfft(hdr[8:]), getOfft(hdr[16:]), getOfft(hdr[24:])
	switch {
	case ctrlLen < 0 || ctrlLen > maxLimit:
		return fmt.Errorf("control block length %d out of range: %w", ctrlLen, ErrCorruptPatch)
	case diffLen < 0 || diffLen > maxLimit:
		return fmt.Errorf("diff block length %d out of range: %w", diffLen, ErrCorruptPatch)
	case newSize < 0:
		return fmt.Errorf("negative new size %d: %w", newSize, ErrCorruptPatch)
	case newSize > cfg.maxOutput:
		return fmt.Errorf("new size %d exceeds limit %d: %w: %w", newSize, cfg.maxOutput, ErrTooLarge, ErrCorruptPatch)
	}

	var ctrlR, diffR, extraR io.Reader
	if ra, ok := patch.(interface {
		io.ReaderAt
		io.Seeker
	}); ok {
		base, err := ra.Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("bsdiff: patch offset: %w", err)
		}
		ctrlR = io.NewSectionReader(ra, base, ctrlLen)
		diffR = io.NewSectionReader(ra, base+ctrlLen, diffLen)
		extraR = io.NewSectionReader(ra, base+ctrlLen+diffLen, maxOldPos)
	} else {
		if ctrlLen+diffLen > cfg.maxBuffer {
			return fmt.Errorf("control and diff blocks of %d bytes exceed buffer limit %d (pass an io.ReaderAt to avoid buffering): %w",
				ctrlLen+diffLen, cfg.maxBuffer, ErrTooLarge)
		}
		// Grow with the data actually read, not with the declared length.
		var buf bytes.Buffer
		if _, err := io.CopyN(&buf, patch, ctrlLen+diffLen); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("patch truncated: %d of %d control and diff bytes: %w", buf.Len(), ctrlLen+diffLen, ErrCorruptPatch)
			}
			return fmt.Errorf("bsdiff: reading patch: %w", err)
		}
		b := buf.Bytes()
		ctrlR = bytes.NewReader(b[:ctrlLen])
		diffR = bytes.NewReader(b[ctrlLen:])
		extraR = patch
	}
	a := applier{
		ctx:     ctx,
		old:     old,
		oldSize: oldSize,
		newSize: newSize,
		ctrl:    &offtControls{r: &streamReader{name: "control block", r: bzip2.NewReader(ctrlR)}},
		diff:    &streamReader{name: "diff block", r: bzip2.NewReader(diffR)},
		extra:   &streamReader{name: "extra block", r: bzip2.NewReader(extraR)},
	}
	return a.run(w)
}

// PatchStreams applies a delta given as the three raw streams DiffStreams
// returns (ctrl in its compact encoding) to old (oldSize bytes, random
// access), writing exactly newSize bytes to w. The streams are read
// sequentially and in lockstep, so each may be a decompressor over a
// larger container; memory is a few small buffers. Each stream must end
// exactly where the delta does: trailing bytes are an error.
//
// Errors are as for Patch; newSize is checked against WithMaxOutput.
func PatchStreams(ctx context.Context, old io.ReaderAt, oldSize, newSize int64, ctrl, diff, extra io.Reader, w io.Writer, opts ...PatchOption) error {
	cfg, err := makePatchConfig(opts)
	if err != nil {
		return err
	}
	switch {
	case oldSize < 0:
		return fmt.Errorf("bsdiff: negative old size %d", oldSize)
	case newSize < 0:
		return fmt.Errorf("bsdiff: negative new size %d", newSize)
	case newSize > cfg.maxOutput:
		return fmt.Errorf("new size %d exceeds limit %d: %w: %w", newSize, cfg.maxOutput, ErrTooLarge, ErrCorruptPatch)
	}
	cr := &streamReader{name: "control stream", r: ctrl}
	a := applier{
		ctx:     ctx,
		old:     old,
		oldSize: oldSize,
		newSize: newSize,
		ctrl:    &varintControls{r: bufio.NewReaderSize(cr, 4<<10), src: cr},
		diff:    &streamReader{name: "diff stream", r: diff},
		extra:   &streamReader{name: "extra stream", r: extra},
	}
	if err := a.run(w); err != nil {
		return err
	}
	// The control reader is buffered: anything it holds is trailing too.
	if br := a.ctrl.(*varintControls).r.(*bufio.Reader); br.Buffered() > 0 {
		return fmt.Errorf("control stream has trailing bytes: %w", ErrCorruptPatch)
	}
	for _, s := range []*streamReader{cr, a.diff, a.extra} {
		if err := s.expectEOF(); err != nil {
			return err
		}
	}
	return nil
}

// streamReader names a patch stream in errors and tells data errors
// (truncation, bad compression: the patch is corrupt) from I/O errors.
type streamReader struct {
	name string
	r    io.Reader
	err  error // the last non-EOF error returned
}

func (s *streamReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		var se bzip2.StructuralError
		if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%s: %v: %w", s.name, err, ErrCorruptPatch)
		} else {
			err = fmt.Errorf("bsdiff: reading %s: %w", s.name, err)
		}
		s.err = err
	}
	return n, err
}

// readFull fills p or says the stream is truncated.
func (s *streamReader) readFull(p []byte) error {
	_, err := io.ReadFull(s, p)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%s truncated: %w", s.name, ErrCorruptPatch)
	}
	return err
}

func (s *streamReader) expectEOF() error {
	var b [1]byte
	for {
		n, err := s.Read(b[:])
		if n > 0 {
			return fmt.Errorf("%s has trailing bytes: %w", s.name, ErrCorruptPatch)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

type applier struct {
	ctx              context.Context
	old              io.ReaderAt
	oldSize, newSize int64
	ctrl             controlReader
	diff, extra      *streamReader
	buf, obuf        []byte
	newPos, oldPos   int64
	triples          int64
}

func (a *applier) run(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 2*chunkSize)
	a.buf = make([]byte, chunkSize)
	a.obuf = make([]byte, chunkSize)
	for a.newPos < a.newSize {
		if err := a.ctx.Err(); err != nil {
			return err
		}
		c, err := a.ctrl.next()
		if err != nil {
			return fmt.Errorf("at new offset %d: %w", a.newPos, err)
		}
		if err := a.step(c, bw); err != nil {
			return err
		}
		a.triples++
	}
	return bw.Flush()
}

// step applies one control triple.
func (a *applier) step(c Control, w io.Writer) error {
	left := a.newSize - a.newPos
	switch {
	case c.Add < 0 || c.Copy < 0:
		return fmt.Errorf("control triple %d: negative length (add %d, copy %d): %w", a.triples, c.Add, c.Copy, ErrCorruptPatch)
	case c.Add > left:
		return fmt.Errorf("control triple %d: add length %d overruns new size (%d bytes left): %w", a.triples, c.Add, left, ErrCorruptPatch)
	case c.Copy > left-c.Add:
		return fmt.Errorf("control triple %d: copy length %d overruns new size (%d bytes left): %w", a.triples, c.Copy, left-c.Add, ErrCorruptPatch)
	case c.Seek > maxOldPos || c.Seek < -maxOldPos:
		return fmt.Errorf("control triple %d: seek %d out of range: %w", a.triples, c.Seek, ErrCorruptPatch)
	}
	for rem := c.Add; rem > 0; {
		m := int(min(rem, int64(len(a.buf))))
		p := a.buf[:m]
		if err := a.diff.readFull(p); err != nil {
			return err
		}
		if err := a.addOld(p); err != nil {
			return err
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
		rem -= int64(m)
		a.oldPos += int64(m)
		a.newPos += int64(m)
		if err := a.ctx.Err(); err != nil {
			return err
		}
	}
	for rem := c.Copy; rem > 0; {
		m := int(min(rem, int64(len(a.buf))))
		p := a.buf[:m]
		if err := a.extra.readFull(p); err != nil {
			return err
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
		rem -= int64(m)
		a.newPos += int64(m)
	}
	a.oldPos += c.Seek
	if a.oldPos > maxOldPos || a.oldPos < -maxOldPos {
		return fmt.Errorf("control triple %d: old position %d out of range: %w", a.triples, a.oldPos, ErrCorruptPatch)
	}
	return nil
}

// addOld adds to p the old bytes at a.oldPos, treating bytes outside old
// as zero.
func (a *applier) addOld(p []byte) error {
	lo := max(a.oldPos, 0)
	hi := min(a.oldPos+int64(len(p)), a.oldSize)
	if lo >= hi {
		return nil
	}
	ob := a.obuf[:hi-lo]
	n, err := a.old.ReadAt(ob, lo)
	if n < len(ob) {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("bsdiff: reading old file at %d (old size %d): %w", lo, a.oldSize, err)
	}
	dst := p[lo-a.oldPos:]
	for i, b := range ob {
		dst[i] += b
	}
	return nil
}
