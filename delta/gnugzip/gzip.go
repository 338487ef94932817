package gnugzip

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// MaxHeaderLen caps the gzip header (with FEXTRA, FNAME, FCOMMENT) that
// ParseHeader and Detect accept, so a hostile file cannot make them buffer
// without bound.
const MaxHeaderLen = 1 << 20

const (
	flgText    = 1 << 0
	flgHCRC    = 1 << 1
	flgExtra   = 1 << 2
	flgName    = 1 << 3
	flgComment = 1 << 4
	flgReserve = 0xe0

	xflSlow = 2 // gzip -9
	xflFast = 4 // gzip -1
)

// Compress writes one complete gzip member to w: header verbatim, the
// DEFLATE stream GNU gzip would write for r at level, then CRC-32 and
// ISIZE (the input size modulo 2^32), both little-endian.
func Compress(w io.Writer, r io.Reader, level int, header []byte) error {
	z := writers.Get().(*Writer)
	err := compressWith(z, w, r, level, header)
	z.d.t.w = nil // do not keep w alive in the pool
	writers.Put(z)
	return err
}

// writers reuses Writers (400 KiB each) across Compress calls: a device
// re-creating a hundred small .gz files would otherwise churn 40 MB.
var writers = sync.Pool{New: func() any { return new(Writer) }}

func compressWith(z *Writer, w io.Writer, r io.Reader, level int, header []byte) error {
	if err := z.Reset(w, level); err != nil {
		return err
	}
	if _, err := w.Write(header); err != nil {
		return err
	}
	crc := crc32.NewIEEE()
	n, err := z.ReadFrom(io.TeeReader(r, crc))
	if err != nil {
		return err
	}
	if err := z.Close(); err != nil {
		return err
	}
	var tr [8]byte
	binary.LittleEndian.PutUint32(tr[:4], crc.Sum32())
	binary.LittleEndian.PutUint32(tr[4:], uint32(n))
	_, err = w.Write(tr[:])
	return err
}

// Recipe is what it takes to re-create a gzip file made by GNU gzip from
// its decompressed content.
type Recipe struct {
	Level  int    // 1..9, as in gzip -1 .. -9
	Header []byte // the gzip header, written verbatim
}

// Compress writes the gzip file the recipe describes for content to w.
func (rc Recipe) Compress(w io.Writer, content io.Reader) error {
	return Compress(w, content, rc.Level, rc.Header)
}

// ParseHeader returns the gzip header at the start of gz (its length is
// where the DEFLATE stream begins). It fails with ErrNotGzip for anything
// that is not a gzip header and with ErrNotReproducible for a header GNU
// gzip never writes with a checksum (FHCRC).
func ParseHeader(gz []byte) ([]byte, error) {
	n, err := headerLen(bytes.NewReader(gz), int64(len(gz)))
	if err != nil {
		return nil, err
	}
	return gz[:n], nil
}

func headerLen(ra io.ReaderAt, size int64) (int64, error) {
	var h [10]byte
	if size < int64(len(h)) {
		return 0, fmt.Errorf("%d bytes, shorter than a gzip header: %w", size, ErrNotGzip)
	}
	if _, err := ra.ReadAt(h[:], 0); err != nil {
		return 0, fmt.Errorf("read header: %v: %w", err, ErrNotGzip)
	}
	if h[0] != 0x1f || h[1] != 0x8b {
		return 0, fmt.Errorf("magic %02x %02x: %w", h[0], h[1], ErrNotGzip)
	}
	if h[2] != 8 {
		return 0, fmt.Errorf("compression method %d, not deflate: %w", h[2], ErrNotGzip)
	}
	flg := h[3]
	if flg&flgReserve != 0 {
		return 0, fmt.Errorf("reserved header flags %#02x set: %w", flg&flgReserve, ErrNotGzip)
	}
	if flg&flgHCRC != 0 {
		return 0, fmt.Errorf("header CRC (FHCRC) present: %w", ErrNotReproducible)
	}
	off := int64(len(h))
	if flg&flgExtra != 0 {
		var x [2]byte
		if off+2 > size {
			return 0, fmt.Errorf("truncated FEXTRA length: %w", ErrNotGzip)
		}
		if _, err := ra.ReadAt(x[:], off); err != nil {
			return 0, fmt.Errorf("read FEXTRA: %v: %w", err, ErrNotGzip)
		}
		off += 2 + int64(binary.LittleEndian.Uint16(x[:]))
		if off > size {
			return 0, fmt.Errorf("FEXTRA runs past the end: %w", ErrNotGzip)
		}
	}
	for _, f := range []struct {
		bit  byte
		name string
	}{{flgName, "FNAME"}, {flgComment, "FCOMMENT"}} {
		if flg&f.bit == 0 {
			continue
		}
		end, err := zeroTerminated(ra, off, size)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f.name, err)
		}
		off = end
	}
	if off > MaxHeaderLen {
		return 0, fmt.Errorf("header of %d bytes exceeds %d: %w", off, MaxHeaderLen, ErrNotReproducible)
	}
	return off, nil
}

// zeroTerminated returns the offset just past the NUL that ends the string
// starting at off.
func zeroTerminated(ra io.ReaderAt, off, size int64) (int64, error) {
	var buf [512]byte
	for off < size && off <= MaxHeaderLen {
		n := int64(len(buf))
		if size-off < n {
			n = size - off
		}
		if _, err := ra.ReadAt(buf[:n], off); err != nil {
			return 0, fmt.Errorf("read: %v: %w", err, ErrNotGzip)
		}
		if i := bytes.IndexByte(buf[:n], 0); i >= 0 {
			return off + int64(i) + 1, nil
		}
		off += n
	}
	if off > MaxHeaderLen {
		return 0, fmt.Errorf("string longer than %d bytes: %w", MaxHeaderLen, ErrNotReproducible)
	}
	return 0, fmt.Errorf("string not terminated: %w", ErrNotGzip)
}

// countingReader counts the bytes compress/flate consumes. Because it is
// an io.ByteReader, flate reads no further than the end of its stream.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// contentReader decompresses a single gzip member and, at its end, checks
// the trailer and that nothing follows.
type contentReader struct {
	ra    io.ReaderAt
	size  int64
	start int64
	cr    *countingReader
	fr    io.ReadCloser
	crc   uint32
	isize uint32
	err   error
}

// NewContentReader returns the decompressed content of the gzip file held
// in ra (size bytes). It reads the DEFLATE data as it goes, holding only
// buffers. Instead of io.EOF its Read returns an error wrapping ErrNotGzip
// when the data, CRC-32 or size are wrong, and ErrNotReproducible when the
// file has a second member or trailing bytes.
func NewContentReader(ra io.ReaderAt, size int64) (io.ReadCloser, error) {
	hl, err := headerLen(ra, size)
	if err != nil {
		return nil, err
	}
	return newContentReader(ra, size, hl), nil
}

func newContentReader(ra io.ReaderAt, size, start int64) *contentReader {
	cr := &countingReader{r: bufio.NewReaderSize(io.NewSectionReader(ra, start, size-start), 32<<10)}
	return &contentReader{ra: ra, size: size, start: start, cr: cr, fr: flate.NewReader(cr)}
}

func (c *contentReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.fr.Read(p)
	c.crc = crc32.Update(c.crc, crc32.IEEETable, p[:n])
	c.isize += uint32(n)
	switch {
	case err == io.EOF:
		c.err = c.finish()
		if c.err == nil {
			c.err = io.EOF
		}
	case errors.Is(err, io.ErrUnexpectedEOF):
		c.err = fmt.Errorf("deflate data truncated: %w", ErrNotGzip)
	case err != nil:
		c.err = fmt.Errorf("deflate data: %v: %w", err, ErrNotGzip)
	}
	return n, c.err
}

func (c *contentReader) finish() error {
	end := c.start + c.cr.n
	var tr [8]byte
	if end+8 > c.size {
		return fmt.Errorf("trailer truncated: %w", ErrNotGzip)
	}
	if _, err := c.ra.ReadAt(tr[:], end); err != nil {
		return fmt.Errorf("read trailer: %v: %w", err, ErrNotGzip)
	}
	if got := binary.LittleEndian.Uint32(tr[:4]); got != c.crc {
		return fmt.Errorf("CRC-32 %08x, content has %08x: %w", got, c.crc, ErrNotGzip)
	}
	if got := binary.LittleEndian.Uint32(tr[4:]); got != c.isize {
		return fmt.Errorf("ISIZE %d, content has %d (mod 2^32): %w", got, c.isize, ErrNotGzip)
	}
	if rest := c.size - end - 8; rest > 0 {
		var m [2]byte
		if rest >= 2 {
			if _, err := c.ra.ReadAt(m[:], end+8); err == nil && m[0] == 0x1f && m[1] == 0x8b {
				return fmt.Errorf("more than one gzip member: %w", ErrNotReproducible)
			}
		}
		return fmt.Errorf("%d bytes after the gzip member: %w", rest, ErrNotReproducible)
	}
	return nil
}

func (c *contentReader) Close() error { return c.fr.Close() }

// Detect finds the GNU gzip level that re-creates gz byte for byte. See
// DetectAt.
func Detect(gz []byte) (Recipe, error) {
	return DetectAt(bytes.NewReader(gz), int64(len(gz)))
}

// DetectAt finds the GNU gzip 1.12 level (1..9) that re-creates the gzip
// file in ra (size bytes) from its content, and returns it with the header.
// It first checks the file completely (one member, valid data, CRC-32,
// ISIZE, nothing after it), then tries the level XFL suggests (2: 9,
// 4: 1, else 6) and the others from 9 down, each streaming its output
// against the file and stopping at the first block that differs. Memory
// stays bounded by buffers whatever the size. When several levels give the
// file, the first tried wins, so the answer depends only on the file.
func DetectAt(ra io.ReaderAt, size int64) (Recipe, error) {
	hl, err := headerLen(ra, size)
	if err != nil {
		return Recipe{}, err
	}
	cr := newContentReader(ra, size, hl)
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return Recipe{}, err
	}
	header := make([]byte, hl)
	if _, err := ra.ReadAt(header, 0); err != nil {
		return Recipe{}, fmt.Errorf("read header: %v: %w", err, ErrNotGzip)
	}
	z := new(Writer)
	cw := &compareWriter{ra: ra, size: size}
	for _, level := range levelOrder(header[8]) {
		cw.off, cw.bad = 0, false
		fr := flate.NewReader(bufio.NewReaderSize(io.NewSectionReader(ra, hl, size-hl), 32<<10))
		err := compressWith(z, cw, fr, level, header)
		fr.Close()
		if cw.bad {
			continue
		}
		if err != nil {
			return Recipe{}, fmt.Errorf("level %d: %w", level, err)
		}
		if cw.off == size {
			return Recipe{Level: level, Header: header}, nil
		}
	}
	return Recipe{}, fmt.Errorf("no gzip level 1..9 gives these bytes: %w", ErrNotReproducible)
}

func levelOrder(xfl byte) []int {
	first := 6
	switch xfl {
	case xflSlow:
		first = 9
	case xflFast:
		first = 1
	}
	order := []int{first}
	for l := 9; l >= 1; l-- {
		if l != first {
			order = append(order, l)
		}
	}
	return order
}

var errMismatch = errors.New("gnugzip: output differs")

// compareWriter checks what is written against ra from offset 0 on and
// fails at the first difference.
type compareWriter struct {
	ra   io.ReaderAt
	size int64
	off  int64
	bad  bool
	buf  []byte
}

func (c *compareWriter) Write(p []byte) (int, error) {
	if c.bad {
		return 0, errMismatch
	}
	if int64(len(p)) > c.size-c.off {
		c.bad = true
		return 0, errMismatch
	}
	if cap(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	b := c.buf[:len(p)]
	if _, err := c.ra.ReadAt(b, c.off); err != nil && !(err == io.EOF && c.off+int64(len(p)) == c.size) {
		c.bad = true
		return 0, errMismatch
	}
	if !bytes.Equal(b, p) {
		c.bad = true
		return 0, errMismatch
	}
	c.off += int64(len(p))
	return len(p), nil
}
