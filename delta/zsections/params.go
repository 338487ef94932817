package zsections

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrCorrupt marks Params or a stream that contradict each other or are
// malformed: a hostile or damaged patch, never a bug of the caller's file.
var ErrCorrupt = errors.New("zsections: corrupt params or stream")

// Level bounds: compress/zlib's HuffmanOnly (-2) to BestCompression (9).
const (
	minLevel = -2
	maxLevel = 9
)

// Limits applied to every Params, so that nothing read from a patch can
// overflow an offset or make a parser loop for long.
const (
	maxSections = 1 << 16
	maxLen      = 1 << 48
)

// Section is one expanded range. In the expanded file its Size bytes
// start at Off; in the original file they are the ZSize-byte output of
// compress/zlib at Level for those bytes, at Off minus the growth of the
// sections before it. Headers around the zlib stream (the ELF Chdr, the
// ".zdebug" "ZLIB"+size prefix) are left in place and are not part of the
// range.
type Section struct {
	Off   int64 // offset of the expanded bytes in the expanded file
	Size  int64 // expanded (decompressed) length
	ZSize int64 // compressed length in the original file
	Level int   // compress/zlib level, -2..9
}

// Params lists the expanded sections in increasing, non-overlapping order.
// The zero value expands nothing.
type Params struct {
	Sections []Section
}

// validate checks order, bounds and levels.
func (p Params) validate() error {
	if len(p.Sections) > maxSections {
		return fmt.Errorf("%w: %d sections (at most %d)", ErrCorrupt, len(p.Sections), maxSections)
	}
	var end int64
	for i, s := range p.Sections {
		if s.Off < end || s.Off > maxLen || s.Size < 0 || s.Size > maxLen || s.ZSize <= 0 || s.ZSize > maxLen {
			return fmt.Errorf("%w: section %d (offset %d, %d bytes from %d) out of order or range", ErrCorrupt, i, s.Off, s.Size, s.ZSize)
		}
		if s.Level < minLevel || s.Level > maxLevel {
			return fmt.Errorf("%w: section %d: zlib level %d", ErrCorrupt, i, s.Level)
		}
		end = s.Off + s.Size
	}
	return nil
}

// Growth returns how many bytes the expanded file is longer than the
// original (negative if the sections were stored uncompressible).
func (p Params) Growth() int64 {
	var g int64
	for _, s := range p.Sections {
		g += s.Size - s.ZSize
	}
	return g
}

const paramsVersion = 1

// MarshalBinary encodes p: a version byte, uvarint(count), then per
// section uvarint(Off - end of the previous section), uvarint(Size),
// uvarint(ZSize) and one byte Level+2.
func (p Params) MarshalBinary() ([]byte, error) {
	if err := p.validate(); err != nil {
		return nil, err
	}
	b := []byte{paramsVersion}
	b = binary.AppendUvarint(b, uint64(len(p.Sections)))
	var end int64
	for _, s := range p.Sections {
		b = binary.AppendUvarint(b, uint64(s.Off-end))
		b = binary.AppendUvarint(b, uint64(s.Size))
		b = binary.AppendUvarint(b, uint64(s.ZSize))
		b = append(b, byte(s.Level-minLevel))
		end = s.Off + s.Size
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote, rejecting anything
// malformed (or with trailing bytes) with ErrCorrupt.
func (p *Params) UnmarshalBinary(b []byte) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: params: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < 1 {
		return bad("empty")
	}
	if b[0] != paramsVersion {
		return bad("version %d (want %d)", b[0], paramsVersion)
	}
	b = b[1:]
	next := func(what string) (int64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad("truncated or overlong %s", what)
		}
		if v > maxLen {
			return 0, bad("%s %d out of range", what, v)
		}
		// One encoding per value: MarshalBinary writes the shortest.
		if n != len(binary.AppendUvarint(nil, v)) {
			return 0, bad("%s %d in a %d-byte varint, longer than needed", what, v, n)
		}
		b = b[n:]
		return int64(v), nil
	}
	n, err := next("count")
	if err != nil {
		return err
	}
	if n > int64(len(b))/4 || n > maxSections { // each section takes at least 4 bytes
		return bad("section count %d exceeds what %d bytes can hold", n, len(b))
	}
	q := Params{Sections: make([]Section, 0, n)}
	var end int64
	for i := range n {
		var s Section
		gap, err := next("offset")
		if err != nil {
			return err
		}
		if s.Size, err = next("size"); err != nil {
			return err
		}
		if s.ZSize, err = next("compressed size"); err != nil {
			return err
		}
		if len(b) == 0 {
			return bad("section %d: missing level", i)
		}
		s.Level = int(b[0]) + minLevel
		b = b[1:]
		s.Off = end + gap
		if s.Off > maxLen {
			return bad("section %d: offset %d out of range", i, s.Off)
		}
		end = s.Off + s.Size
		q.Sections = append(q.Sections, s)
	}
	if len(b) != 0 {
		return bad("%d trailing bytes", len(b))
	}
	if err := q.validate(); err != nil {
		return err
	}
	*p = q
	return nil
}
