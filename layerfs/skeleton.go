package layerfs

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// skeletonMagic starts every skeleton; its last byte is the format version.
var skeletonMagic = [8]byte{'S', 'K', 'I', 'F', 'F', 'S', 'K', 1}

// Record tags (SKELETON.md).
const (
	tagEnd     = 0x00
	tagHeader  = 0x01
	tagPayload = 0x02
	tagZeros   = 0x03
	tagLiteral = 0x04
	// tagMade = 0x05 || uvarint(size): a payload that the caller makes and
	// whose digest it learns then (SKELETON.md, "Made payloads"). Only
	// PatchSkeleton writes it, and only Walk and FillMade read it: a
	// stored skeleton or one given to Assemble never holds it.
	tagMade = 0x05
)

const maxLiteral = 64 << 10

// skelWriter encodes skeleton records.
type skelWriter struct {
	w            io.Writer
	n            int64 // bytes written
	buf          []byte
	pendingZeros int64 // zero bytes not yet written, merged into one Zeros record, written as one Zeros record
	err          error
}

func newSkelWriter(w io.Writer) *skelWriter {
	s := &skelWriter{w: w, buf: make([]byte, 0, 64)}
	s.write(skeletonMagic[:])
	return s
}

func (s *skelWriter) write(b []byte) {
	if s.err != nil {
		return
	}
	n, err := s.w.Write(b)
	s.n += int64(n)
	s.err = err
}

func (s *skelWriter) head(tag byte, n uint64) {
	if s.pendingZeros > 0 && tag != tagZeros {
		z := s.pendingZeros
		s.pendingZeros = 0
		s.head(tagZeros, uint64(z))
	}
	s.buf = append(s.buf[:0], tag)
	s.buf = binary.AppendUvarint(s.buf, n)
	s.write(s.buf)
}

func (s *skelWriter) header(group []byte) {
	s.head(tagHeader, uint64(len(group)))
	s.write(group)
}

func (s *skelWriter) payload(size int64, d digest.Digest) {
	s.head(tagPayload, uint64(size))
	s.write(digestBytes(d))
}

// zeros records n zero bytes; adjacent runs merge into one record.
func (s *skelWriter) zeros(n int64) {
	s.pendingZeros += n
}

// bytes writes b as Zeros and Literal records: b itself when it is all
// zeros, and runs of at least a block of zeros, become Zeros.
func (s *skelWriter) bytes(b []byte) {
	if isZeroBlock(b) {
		s.zeros(int64(len(b)))
		return
	}
	for len(b) > 0 {
		lit, run := len(b), 0
		for i, c := range b {
			if c != 0 {
				run = 0
				continue
			}
			if run++; run == blockSize {
				lit = i + 1 - blockSize
				break
			}
		}
		for lit > 0 {
			n := min(lit, maxLiteral)
			s.head(tagLiteral, uint64(n))
			s.write(b[:n])
			b, lit = b[n:], lit-n
		}
		z := 0
		for z < len(b) && b[z] == 0 {
			z++
		}
		s.zeros(int64(z))
		b = b[z:]
	}
}

func (s *skelWriter) end(size int64, d digest.Digest) error {
	s.head(tagEnd, uint64(size))
	s.write(digestBytes(d))
	return s.err
}

// digestBytes returns the raw bytes of a sha256 digest the caller made.
func digestBytes(d digest.Digest) []byte {
	b, err := hex.DecodeString(d.Encoded())
	if err != nil || len(b) != 32 {
		panic(fmt.Sprintf("layerfs: not a sha256 digest: %q", d))
	}
	return b
}

// record is one decoded skeleton record.
type record struct {
	tag    byte
	n      int64         // Header/Literal length, Payload size, Zeros count, End tar size
	data   []byte        // Header and Literal bytes (valid until the next call)
	digest digest.Digest // Payload and End
}

// skelReader decodes skeleton records, checking every limit before use.
type skelReader struct {
	r     *bufio.Reader
	buf   []byte
	ended bool
	made  bool // Made records are allowed
}

func newSkelReader(r io.Reader) (*skelReader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	var m [8]byte
	if _, err := io.ReadFull(br, m[:]); err != nil {
		return nil, fmt.Errorf("%w: reading magic: %v", ErrBadSkeleton, noEOF(err))
	}
	if m != skeletonMagic {
		if string(m[:7]) == string(skeletonMagic[:7]) {
			return nil, fmt.Errorf("%w: unsupported version %d (this skiff reads %d)", ErrBadSkeleton, m[7], skeletonMagic[7])
		}
		return nil, fmt.Errorf("%w: not a skiff skeleton (magic %q)", ErrBadSkeleton, m[:])
	}
	return &skelReader{r: br}, nil
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// next returns the next record; after End it checks nothing follows and
// returns io.EOF.
func (s *skelReader) next() (record, error) {
	if s.ended {
		return record{}, io.EOF
	}
	tag, err := s.r.ReadByte()
	if err != nil {
		return record{}, fmt.Errorf("%w: stream ends before its End record", ErrBadSkeleton)
	}
	n, err := binary.ReadUvarint(s.r)
	if err != nil || n > 1<<62 {
		return record{}, fmt.Errorf("%w: bad length in record %#x", ErrBadSkeleton, tag)
	}
	rec := record{tag: tag, n: int64(n)}
	switch tag {
	case tagHeader, tagLiteral:
		limit := int64(maxGroupSize)
		if tag == tagLiteral {
			limit = maxLiteral
		}
		if n == 0 || int64(n) > limit || (tag == tagHeader && n%blockSize != 0) {
			return rec, fmt.Errorf("%w: record %#x of length %d", ErrBadSkeleton, tag, n)
		}
		if cap(s.buf) < int(n) {
			s.buf = make([]byte, n)
		}
		rec.data = s.buf[:n]
		if _, err := io.ReadFull(s.r, rec.data); err != nil {
			return rec, fmt.Errorf("%w: record %#x truncated", ErrBadSkeleton, tag)
		}
	case tagZeros:
		if n == 0 {
			return rec, fmt.Errorf("%w: empty Zeros record", ErrBadSkeleton)
		}
	case tagMade:
		if !s.made {
			return rec, fmt.Errorf("%w: a Made record (payload still to be made) in a finished skeleton", ErrBadSkeleton)
		}
		if n == 0 {
			return rec, fmt.Errorf("%w: empty Made record", ErrBadSkeleton)
		}
	case tagPayload, tagEnd:
		if tag == tagPayload && n == 0 {
			return rec, fmt.Errorf("%w: empty Payload record", ErrBadSkeleton)
		}
		var d [32]byte
		if _, err := io.ReadFull(s.r, d[:]); err != nil {
			return rec, fmt.Errorf("%w: record %#x truncated", ErrBadSkeleton, tag)
		}
		rec.digest = digest.NewDigestFromBytes(digest.SHA256, d[:])
		if tag == tagEnd {
			s.ended = true
			if _, err := s.r.ReadByte(); err != io.EOF {
				return rec, fmt.Errorf("%w: bytes after the End record", ErrBadSkeleton)
			}
		}
	default:
		return rec, fmt.Errorf("%w: unknown record tag %#x", ErrBadSkeleton, tag)
	}
	return rec, nil
}
