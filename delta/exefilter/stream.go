package exefilter

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// bufSize is the streaming buffer: the only per-stream memory besides the
// exceptions.
const bufSize = 64 << 10

// Encode returns the forward transform of in for forms (DefaultForms if 0),
// with the Params its decoder needs. The Layout comes from in's ELF
// headers; a file that is not x86-64 ELF is returned unchanged with an
// identity Layout. Encode checks its own work: it decodes the output and
// compares it with in, returning ErrNotExact if they differ.
func Encode(in []byte, forms Forms) ([]byte, Params, error) {
	if forms == 0 {
		forms = DefaultForms
	}
	return EncodeLayout(in, Analyze(bytes.NewReader(in), int64(len(in)), forms))
}

// EncodeLayout is Encode with a given Layout.
func EncodeLayout(in []byte, l Layout) ([]byte, Params, error) {
	if err := l.validate(); err != nil {
		return nil, Params{}, err
	}
	out := bytes.Clone(in)
	s := newScanner(l, false)
	s.record = true
	if _, err := s.run(out, 0, 0, true); err != nil {
		return nil, Params{}, err
	}
	// The decoder sees transformed bytes at every position; where it would
	// take an unconverted operand for a converted one, record an exception.
	var exc Exceptions
	for _, k := range s.skipped {
		v := binary.LittleEndian.Uint32(out[k.pos+int64(k.opnd):])
		if s.inRange(v, k.data) {
			exc = append(exc, k.pos)
		}
	}
	p := Params{Layout: l, Exceptions: exc}
	var back bytes.Buffer
	back.Grow(len(in))
	if err := Decode(&back, bytes.NewReader(out), p); err != nil {
		return nil, Params{}, fmt.Errorf("checking the transform: %v: %w", err, ErrNotExact)
	}
	if !bytes.Equal(back.Bytes(), in) {
		return nil, Params{}, fmt.Errorf("decoded %d bytes differ from the %d-byte input: %w", back.Len(), len(in), ErrNotExact)
	}
	return out, p, nil
}

// NewEncoder returns a reader of the forward transform of r under l, in
// bounded memory: what a device uses to transform the file it already has
// (with the Layout the server computed for that file). It gives the same
// bytes as EncodeLayout and needs no exceptions.
func NewEncoder(r io.Reader, l Layout) io.Reader {
	if err := l.validate(); err != nil {
		return &stream{err: err}
	}
	return &stream{r: r, s: newScanner(l, false), buf: make([]byte, bufSize)}
}

// NewDecoder returns a reader of the inverse transform of r (the output
// of Encode) under p, in bounded memory (a 64 KiB buffer and the
// exceptions). A stream that contradicts p yields ErrCorrupt.
func NewDecoder(r io.Reader, p Params) io.Reader {
	if err := p.Layout.validate(); err != nil {
		return &stream{err: err}
	}
	for i := 1; i < len(p.Exceptions); i++ {
		if p.Exceptions[i] <= p.Exceptions[i-1] {
			return &stream{err: fmt.Errorf("%w: exceptions not strictly increasing at %d", ErrCorrupt, p.Exceptions[i])}
		}
	}
	s := newScanner(p.Layout, true)
	s.exc = p.Exceptions
	return &stream{r: r, s: s, buf: make([]byte, bufSize)}
}

// Decode writes the inverse transform of r under p to w.
func Decode(w io.Writer, r io.Reader, p Params) error {
	_, err := io.Copy(w, NewDecoder(r, p))
	return err
}

// stream runs a scanner over a reader. buf[:n] holds input; bytes before
// done are final, bytes before out were returned; base is the file offset
// of buf[0].
type stream struct {
	r             io.Reader
	s             *scanner
	buf           []byte
	base          int64
	n, done, out  int
	eof, finished bool
	err           error
}

func (t *stream) Read(p []byte) (int, error) {
	for t.out == t.done {
		if t.err != nil {
			return 0, t.err
		}
		if t.eof && t.done == t.n {
			if !t.finished {
				t.finished = true
				if err := t.s.finish(); err != nil {
					t.err = err
					return 0, err
				}
			}
			t.err = io.EOF
			return 0, io.EOF
		}
		if err := t.fill(); err != nil {
			t.err = err
			return 0, err
		}
	}
	n := copy(p, t.buf[t.out:t.done])
	t.out += n
	return n, nil
}

// fill drops returned bytes, reads more input and scans it.
func (t *stream) fill() error {
	if t.out > 0 {
		copy(t.buf, t.buf[t.out:t.n])
		t.base += int64(t.out)
		t.n -= t.out
		t.done -= t.out
		t.out = 0
	}
	for !t.eof && t.n < len(t.buf) {
		m, err := t.r.Read(t.buf[t.n:])
		t.n += m
		if err == io.EOF {
			t.eof = true
		} else if err != nil {
			return err
		}
		if m == 0 && err == nil {
			continue
		}
		if t.n-t.done >= lookahead {
			break
		}
	}
	d, err := t.s.run(t.buf[:t.n], t.base, t.done, t.eof)
	t.done = d
	return err
}
