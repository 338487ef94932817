package gnugzip

import (
	"errors"
	"fmt"
	"io"
)

// Sentinel errors. Every error this package returns wraps one of them.
var (
	// ErrLevel: a compression level outside 1..9.
	ErrLevel = errors.New("gnugzip: level must be 1..9")
	// ErrClosed: Write or ReadFrom after Close.
	ErrClosed = errors.New("gnugzip: writer is closed")
	// ErrNotGzip: the input is not a well-formed gzip member (bad magic,
	// method, truncation, corrupt deflate data, CRC or size mismatch).
	ErrNotGzip = errors.New("gnugzip: not a valid gzip file")
	// ErrNotReproducible: a valid gzip file that this package cannot
	// re-create byte for byte (several members, trailing bytes, FHCRC,
	// or no level 1..9 of GNU gzip gives the same bytes).
	ErrNotReproducible = errors.New("gnugzip: not reproducible with GNU gzip 1.12")
)

// Writer compresses to a raw DEFLATE stream identical to the one GNU gzip
// writes between its header and trailer for the same input and level.
// It holds about 400 KiB whatever the input size.
type Writer struct {
	d      deflater
	closed bool
}

var (
	_ io.WriteCloser = (*Writer)(nil)
	_ io.ReaderFrom  = (*Writer)(nil)
)

// NewWriter returns a Writer compressing at level 1..9 (gzip -1 .. -9) to w.
func NewWriter(w io.Writer, level int) (*Writer, error) {
	z := new(Writer)
	if err := z.Reset(w, level); err != nil {
		return nil, err
	}
	return z, nil
}

// Reset discards the Writer's state and makes it compress to w at level,
// as if freshly made by NewWriter, reusing its buffers.
func (z *Writer) Reset(w io.Writer, level int) error {
	if level < 1 || level > 9 {
		return fmt.Errorf("level %d: %w", level, ErrLevel)
	}
	z.d.reset(level)
	z.d.t.w = w
	z.closed = false
	return nil
}

// Write compresses p. Errors of the underlying writer are returned by this
// or a later call.
func (z *Writer) Write(p []byte) (int, error) {
	if z.closed {
		return 0, ErrClosed
	}
	n := 0
	for len(p) > 0 && z.d.t.err == nil {
		c := copy(z.d.readRegion(), p)
		z.d.rdFill += c
		n += c
		p = p[c:]
		if z.d.rdPos+z.d.rdFill == z.d.rdEnd {
			z.d.pump()
		}
	}
	return n, z.d.t.err
}

// ReadFrom compresses everything r yields until io.EOF, reading straight
// into the window.
func (z *Writer) ReadFrom(r io.Reader) (int64, error) {
	if z.closed {
		return 0, ErrClosed
	}
	var total int64
	for z.d.t.err == nil {
		n, err := r.Read(z.d.readRegion())
		z.d.rdFill += n
		total += int64(n)
		if z.d.rdPos+z.d.rdFill == z.d.rdEnd {
			z.d.pump()
		}
		if err == io.EOF {
			return total, z.d.t.err
		}
		if err != nil {
			return total, err
		}
	}
	return total, z.d.t.err
}

// Close compresses what is left, writes the final block and flushes. It
// does not close the underlying writer.
func (z *Writer) Close() error {
	if z.closed {
		return z.d.t.err
	}
	z.closed = true
	z.d.inputDone = true
	z.d.pump()
	z.d.t.flushOut()
	return z.d.t.err
}
