package zsections

import (
	"bufio"
	"compress/zlib"
	"errors"
	"fmt"
	"io"
)

// chunk is how many expanded bytes the compressor feeds compress/zlib per
// Write. Go's deflate output does not depend on how its input is split,
// but Expand searches levels with the same split, so the check it runs and
// the device's recompression are the same computation.
const chunk = 32 << 10

// NewCompressor returns a reader of the original file, given r, the
// expanded file (Expand's output), and p: bytes outside p's sections are
// copied, each section is recompressed with compress/zlib at its level.
// Memory is a 32 KiB buffer, one zlib writer and its pending output,
// whatever the sizes in p. A stream or Params that disagree (the stream
// ends inside or before a section, a recompressed section does not have
// its recorded length) give an error wrapping ErrCorrupt.
func NewCompressor(r io.Reader, p Params) io.Reader {
	if err := p.validate(); err != nil {
		return &compressor{err: err}
	}
	return &compressor{src: r, secs: p.Sections}
}

type compressor struct {
	src  io.Reader
	secs []Section
	i    int   // next or current section
	pos  int64 // offset in the expanded stream
	err  error

	in        bool  // inside section i
	left      int64 // expanded bytes of section i still to read
	zw        *zlib.Writer
	zlevel    int
	sink      sink
	inbuf     []byte
	pending   []byte // compressed bytes not yet returned
	pendingAt int
}

// sink collects the zlib writer's output and bounds it by the section's
// recorded compressed length.
type sink struct {
	buf   []byte
	total int64
	limit int64
}

var errTooLong = errors.New("compressed output exceeds the recorded length")

func (s *sink) Write(p []byte) (int, error) {
	if s.total+int64(len(p)) > s.limit {
		return 0, errTooLong
	}
	s.total += int64(len(p))
	s.buf = append(s.buf, p...)
	return len(p), nil
}

func (c *compressor) fail(err error) error {
	c.err = err
	return err
}

func (c *compressor) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.pendingAt < len(c.sink.buf) {
			n := copy(p, c.sink.buf[c.pendingAt:])
			c.pendingAt += n
			if c.pendingAt == len(c.sink.buf) {
				c.sink.buf, c.pendingAt = c.sink.buf[:0], 0
			}
			return n, nil
		}
		if c.err != nil {
			return 0, c.err
		}
		if c.in {
			if err := c.step(); err != nil {
				return 0, c.fail(err)
			}
			continue
		}
		limit := int64(len(p))
		if c.i < len(c.secs) {
			if gap := c.secs[c.i].Off - c.pos; gap < limit {
				limit = gap
			}
			if limit == 0 {
				c.start()
				continue
			}
		}
		n, err := c.src.Read(p[:limit])
		c.pos += int64(n)
		if err == io.EOF {
			if c.i < len(c.secs) {
				err = fmt.Errorf("%w: stream ends at %d, before section %d at %d", ErrCorrupt, c.pos, c.i, c.secs[c.i].Off)
			}
			c.err = err
			if n > 0 {
				return n, nil
			}
		} else if err != nil {
			c.err = err
		}
		return n, err
	}
}

// start begins section i.
func (c *compressor) start() {
	s := c.secs[c.i]
	c.in, c.left = true, s.Size
	c.sink.total, c.sink.limit = 0, s.ZSize
	if c.inbuf == nil {
		c.inbuf = make([]byte, chunk)
	}
	if c.zw == nil || c.zlevel != s.Level {
		c.zw, _ = zlib.NewWriterLevel(&c.sink, s.Level) // level validated
		c.zlevel = s.Level
	} else {
		c.zw.Reset(&c.sink)
	}
}

// step compresses the next chunk of section i, or finishes it.
func (c *compressor) step() error {
	s := c.secs[c.i]
	if c.left == 0 {
		if err := c.zw.Close(); err != nil {
			return fmt.Errorf("%w: section %d at %d: %v", ErrCorrupt, c.i, s.Off, err)
		}
		if c.sink.total != s.ZSize {
			return fmt.Errorf("%w: section %d at %d recompresses to %d bytes, not %d", ErrCorrupt, c.i, s.Off, c.sink.total, s.ZSize)
		}
		c.in = false
		c.i++
		return nil
	}
	b := c.inbuf[:min(int64(len(c.inbuf)), c.left)]
	n, err := io.ReadFull(c.src, b)
	c.pos += int64(n)
	c.left -= int64(n)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream ends at %d inside section %d (%d bytes at %d)", ErrCorrupt, c.pos, c.i, s.Size, s.Off)
	}
	if err != nil {
		return err
	}
	if _, err := c.zw.Write(b); err != nil {
		return fmt.Errorf("%w: section %d at %d: %v", ErrCorrupt, c.i, s.Off, err)
	}
	return nil
}

// NewExpander returns a reader of the expanded file given r, the original
// file, and p: what a device runs on the file it has to get the base its
// patch was computed against (with the Params the server computed for that
// file). Each section is decompressed and must consume exactly ZSize bytes
// and produce exactly Size bytes, or the read fails with ErrCorrupt. Memory
// is a 32 KiB buffer and one zlib reader.
func NewExpander(r io.Reader, p Params) io.Reader {
	if err := p.validate(); err != nil {
		return &expander{err: err}
	}
	return &expander{src: bufio.NewReaderSize(r, chunk), secs: p.Sections}
}

type expander struct {
	src  *bufio.Reader
	secs []Section
	i    int
	pos  int64 // offset in the expanded stream
	err  error

	in   bool
	zr   io.ReadCloser
	lim  limitedByteReader
	made int64 // expanded bytes of section i produced so far
}

// limitedByteReader gives the zlib reader exactly n bytes, byte by byte
// when it asks (it never reads ahead through an io.ByteReader).
type limitedByteReader struct {
	r *bufio.Reader
	n int64
}

func (l *limitedByteReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (l *limitedByteReader) ReadByte() (byte, error) {
	if l.n <= 0 {
		return 0, io.EOF
	}
	b, err := l.r.ReadByte()
	if err == nil {
		l.n--
	}
	return b, err
}

func (e *expander) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if e.in {
			s := e.secs[e.i]
			n, err := e.zr.Read(p[:min(int64(len(p)), s.Size-e.made+1)])
			e.made += int64(n)
			e.pos += int64(n)
			if e.made > s.Size {
				e.err = fmt.Errorf("%w: section %d at %d expands past its %d bytes", ErrCorrupt, e.i, s.Off, s.Size)
				return 0, e.err
			}
			if err == io.EOF {
				if e.made != s.Size || e.lim.n != 0 {
					e.err = fmt.Errorf("%w: section %d at %d: zlib stream ends after %d of %d bytes, %d compressed bytes unread", ErrCorrupt, e.i, s.Off, e.made, s.Size, e.lim.n)
					return n, e.err
				}
				e.in = false
				e.i++
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				e.err = fmt.Errorf("%w: section %d at %d: %v", ErrCorrupt, e.i, s.Off, err)
				return n, e.err
			}
			return n, nil
		}
		limit := int64(len(p))
		if e.i < len(e.secs) {
			if gap := e.secs[e.i].Off - e.pos; gap < limit {
				limit = gap
			}
			if limit == 0 {
				if err := e.start(); err != nil {
					e.err = err
					return 0, err
				}
				continue
			}
		}
		n, err := e.src.Read(p[:limit])
		e.pos += int64(n)
		if err == io.EOF {
			if e.i < len(e.secs) {
				err = fmt.Errorf("%w: stream ends before section %d at %d", ErrCorrupt, e.i, e.secs[e.i].Off)
			}
			e.err = err
			if n > 0 {
				return n, nil
			}
		} else if err != nil {
			e.err = err
		}
		return n, err
	}
}

func (e *expander) start() error {
	s := e.secs[e.i]
	e.lim = limitedByteReader{r: e.src, n: s.ZSize}
	e.made = 0
	var err error
	if e.zr == nil {
		e.zr, err = zlib.NewReader(&e.lim)
	} else {
		err = e.zr.(zlib.Resetter).Reset(&e.lim, nil)
	}
	if err != nil {
		return fmt.Errorf("%w: section %d at %d: %v", ErrCorrupt, e.i, s.Off, err)
	}
	e.in = true
	return nil
}
