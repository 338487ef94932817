package exefilter

import (
	"encoding/binary"
	"fmt"
)

// maxInsn is the longest byte sequence the scanner looks at from one
// position: prefix, REX, 0F, opcode, ModRM (5) plus a 4-byte operand.
const maxInsn = 9

// lookahead is the most bytes the scanner needs from one position: an
// instruction form or a symbol table entry.
const lookahead = symSize

// oneByte marks the one-byte opcodes that take a ModRM byte and are looked
// at for RIP-relative operands; twoByte the same for opcodes after 0F.
//
// Exactness depends on what these tables leave out (see scan): neither may
// contain 0F, E8, E9 or a RIP ModRM byte (05 0D 15 1D 25 2D 35 3D), and
// twoByte may not contain 80-8F.
var oneByte, twoByte [256]bool

func init() {
	for _, op := range []byte{
		0x01, 0x03, 0x09, 0x0B, 0x11, 0x13, 0x19, 0x1B, 0x21, 0x23, 0x29, 0x2B,
		0x31, 0x33, 0x39, 0x3B, 0x63, 0x69, 0x6B, 0x80, 0x81, 0x83, 0x84, 0x85,
		0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8D, 0xC6, 0xC7, 0xF6, 0xF7, 0xFE,
		0xFF,
	} {
		oneByte[op] = true
	}
	for _, op := range []byte{
		0x10, 0x11, 0x12, 0x13, 0x16, 0x17, 0x28, 0x29, 0x2A, 0x2C, 0x2E, 0x2F,
		0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B,
		0x4C, 0x4D, 0x4E, 0x4F, 0x51, 0x54, 0x56, 0x57, 0x58, 0x59, 0x5A, 0x5C,
		0x5E, 0x5F, 0x6E, 0x6F, 0x7E, 0x7F, 0xAF, 0xB6, 0xB7, 0xBE, 0xBF, 0xD6,
		0xEF,
	} {
		twoByte[op] = true
	}
	for _, b := range []byte{0x0F, 0xE8, 0xE9, 0x05, 0x0D, 0x15, 0x1D, 0x25, 0x2D, 0x35, 0x3D} {
		if oneByte[b] || twoByte[b] {
			panic("exefilter: opcode table holds a byte that breaks exactness")
		}
	}
	for b := 0x80; b <= 0x8F; b++ {
		if twoByte[b] {
			panic("exefilter: twoByte holds a jcc opcode")
		}
	}
}

// match reports whether b (the bytes from a scan position to the end of its
// code region or of the buffer) starts with an instruction form in forms:
// the operand's offset in b and whether its target is data (RIP-relative)
// rather than code. It returns 0 if no form matches or the operand does not
// fit in b.
//
// match reads b strictly left to right and stops at the first byte that
// cannot continue a form; every byte it accepts before the operand is a
// prefix, REX, 0F, opcode or ModRM byte of the form.
func match(b []byte, forms Forms) (opnd int, data bool) {
	if len(b) < 5 {
		return 0, false
	}
	switch c := b[0]; {
	case c == 0xE8:
		if forms&FormCall != 0 {
			return 1, false
		}
		return 0, false
	case c == 0xE9:
		if forms&FormJmp != 0 {
			return 1, false
		}
		return 0, false
	case c == 0x0F && b[1]&0xF0 == 0x80:
		if forms&FormJcc != 0 && len(b) >= 6 {
			return 2, false
		}
		return 0, false
	}
	if forms&FormRIP == 0 {
		return 0, false
	}
	p := 0
	if c := b[0]; c == 0x66 || c == 0xF2 || c == 0xF3 {
		p++
	}
	if b[p]&0xF0 == 0x40 {
		p++
	}
	if b[p] == 0x0F {
		p++
		if !twoByte[b[p]] {
			return 0, false
		}
	} else if !oneByte[b[p]] {
		return 0, false
	}
	p++
	if p >= len(b) || b[p]&0xC7 != 0x05 {
		return 0, false
	}
	p++
	if p+4 > len(b) {
		return 0, false
	}
	return p, true
}

// scanner walks a file's code regions in order, converting operands. The
// same walk serves the forward transform and its inverse.
//
// Why the inverse is exact. The scan visits positions left to right; at
// each it either converts (rewriting the 4 operand bytes after the matched
// form and resuming after them) or moves on by one byte. By induction the
// inverse visits the same positions: (1) the bytes match reads before the
// operand are never rewritten bytes. Rewritten bytes of an earlier
// conversion lie before the position (the scan resumed after them). Those
// of a later conversion at j > i would have to be read while match at i is
// still succeeding, so every byte from j up to the end of j's form (the
// final one being E8/E9, a jcc opcode after 0F, or a RIP ModRM byte) would
// have to be a non-final element (prefix, REX, 0F, opcode) of the form at
// i; the opcode tables exclude exactly those bytes (see oneByte). (2) At a
// matched position, the inverse sees the transformed operand value w and
// takes "converted" to mean that w lies in the target range; converted
// values always do. Where the forward scan did not convert but w (read from
// the transformed output, as the inverse reads it) lies in the range, the
// encoder records the position as an exception and the inverse flips its
// decision there.
type scanner struct {
	l       Layout
	decode  bool
	ri      int     // current region
	prev    uint64  // symbol value before the current one (original)
	exc     []int64 // decode: exceptions still ahead
	skipped []skip  // encode: matched, not converted (nil: don't record)
	record  bool
	// ARM64: the previous word (original) and its address, for the
	// address pairs of FormA64Pair.
	prevWord   uint32
	prevWordAt uint64
}

// skip records a matched but unconverted position for the exception pass.
type skip struct {
	pos  int64
	opnd uint8
	data bool
}

func newScanner(l Layout, decode bool) *scanner {
	return &scanner{l: l, decode: decode}
}

func (s *scanner) inRange(v uint32, data bool) bool {
	if data {
		return v-uint32(s.l.DataLo) < uint32(s.l.DataHi-s.l.DataLo)
	}
	return v-uint32(s.l.CodeLo) < uint32(s.l.CodeHi-s.l.CodeLo)
}

// run processes buf, whose first byte is at file offset base, from index
// start and returns the index of the first byte not yet final. Unless final
// (buf reaches the end of the file), it stops where a form could still
// extend past buf.
func (s *scanner) run(buf []byte, base int64, start int, final bool) (int, error) {
	i := start
	forms := s.l.Forms
	for i < len(buf) {
		pos := base + int64(i)
		if s.decode && len(s.exc) > 0 && s.exc[0] < pos {
			return i, fmt.Errorf("%w: exception at offset %d is not at a convertible operand", ErrCorrupt, s.exc[0])
		}
		for s.ri < len(s.l.Code) && s.l.Code[s.ri].end() <= pos {
			s.ri++
		}
		if s.ri == len(s.l.Code) || forms == 0 {
			return len(buf), nil
		}
		r := s.l.Code[s.ri]
		if pos < r.Off {
			i = int(min(r.Off-base, int64(len(buf))))
			continue
		}
		end := len(buf)
		if e := r.end() - base; e < int64(end) {
			end = int(e)
		}
		if r.Symtab {
			if forms&FormSymtab == 0 {
				i = end
				continue
			}
			size := int64(symSize)
			if s.l.Machine == MachineARM {
				size = sym32Size
			}
			if (pos-r.Off)%size != 0 { // unreachable: entries are visited whole
				i = end
				continue
			}
			if int64(end-i) < size {
				if !final && end == len(buf) {
					return i, nil
				}
				i = end // partial last entry: left as is
				continue
			}
			if pos == r.Off {
				s.prev = 0
			}
			s.symbol(buf[i:])
			i += int(size)
			continue
		}
		if s.l.Machine != MachineX86_64 {
			n, more := s.arm(buf[i:end], r.Addr+uint64(pos-r.Off))
			if more && !final && end == len(buf) {
				return i, nil // need more input
			}
			i += n
			continue
		}
		if !final && end-i < maxInsn && end == len(buf) {
			return i, nil // need more input
		}
		n, data := match(buf[i:end], forms)
		if n == 0 {
			i++
			continue
		}
		op := buf[i+n : i+n+4]
		v := binary.LittleEndian.Uint32(op)
		// The reference is the address just after the operand: the next
		// instruction for branches and for RIP forms without immediate.
		ref := uint32(r.Addr + uint64(pos-r.Off) + uint64(n) + 4)
		if !s.decode {
			if t := v + ref; s.inRange(t, data) {
				binary.LittleEndian.PutUint32(op, t)
				i += n + 4
				continue
			}
			if s.record {
				s.skipped = append(s.skipped, skip{pos: pos, opnd: uint8(n), data: data})
			}
			i++
			continue
		}
		conv := s.inRange(v, data)
		if len(s.exc) > 0 && s.exc[0] == pos {
			conv = !conv
			s.exc = s.exc[1:]
		}
		if conv {
			binary.LittleEndian.PutUint32(op, v-ref)
			i += n + 4
			continue
		}
		i++
	}
	return i, nil
}

// symbol delta-codes the value of the symbol table entry at the start of
// e (or undoes it), relative to the previous entry's original value.
func (s *scanner) symbol(e []byte) {
	if s.l.Machine == MachineARM {
		f := e[sym32Value : sym32Value+4]
		v := binary.LittleEndian.Uint32(f)
		if s.decode {
			v += uint32(s.prev)
			binary.LittleEndian.PutUint32(f, v)
		} else {
			binary.LittleEndian.PutUint32(f, v-uint32(s.prev))
		}
		s.prev = uint64(v)
		return
	}
	f := e[symValue : symValue+8]
	v := binary.LittleEndian.Uint64(f)
	if s.decode {
		v += s.prev // v is the original value again
		binary.LittleEndian.PutUint64(f, v)
	} else {
		binary.LittleEndian.PutUint64(f, v-s.prev)
	}
	s.prev = v
}

// finish reports exceptions left unused at the end of the input.
func (s *scanner) finish() error {
	if s.decode && len(s.exc) > 0 {
		return fmt.Errorf("%w: exception at offset %d lies past the end of the code", ErrCorrupt, s.exc[0])
	}
	return nil
}
