package exefilter

import "encoding/binary"

// The ARM forms. Every one rewrites only the PC-relative immediate of an
// instruction, never the bits that identify it, and rewrites it as
// (field + PC term) modulo the field's width: a bijection on the field.
// The inverse therefore finds the same instructions and subtracts the
// same terms, and needs no exceptions for any input, code or data.
//
// ARM64 (A64): fixed 4-byte instructions at 4-aligned addresses.
//
//	BL  100101 imm26           target = PC + imm26*4
//	B   000101 imm26
//	ADRP 1 immlo 10000 immhi   page = PC>>12 + imm21 (immhi:immlo)
//	ADR  0 immlo 10000 immhi   address = PC + imm21
//	B.cond 01010100 imm19 0 cond; CBZ/CBNZ x011010x imm19 Rt;
//	TBZ/TBNZ x011011x b40 imm14 Rt
//	LDR (literal) xx011x00 imm19 Rt (also LDRSW, PRFM, SIMD)
//
// A32 (ARM state): 4-byte instructions at 4-aligned addresses; PC reads as
// the instruction's address + 8.
//
//	BL  cond 1011 imm24, BLX 1111 101H imm24    call
//	B   cond 1010 imm24 (cond ≠ 1111)           jump
//
// T32 (Thumb-2) BL/BLX: two halfwords 11110 S imm10, 11 J1 x J2 imm11, at
// 2-aligned addresses; the 22 bits S:imm10:imm11 (J1, J2 kept) take the
// halfword address. The pair is found by its top bits alone (not BLX's
// zero H bit, which the sum may change); a conversion covers both
// halfwords and the scan resumes after them, so a pair's second halfword is
// never read as a first one, and the top bits the inverse reads at the
// next position are never rewritten. A32 and T32 calls are only converted by the form that
// is set; with FormT32Call the scan moves by halfwords.

// arm converts (or restores) the instruction at the start of b, found at
// virtual address addr, and returns how many bytes the scan moves on;
// more is set when b is too short to tell and the caller should offer
// more input if there is any.
func (s *scanner) arm(b []byte, addr uint64) (n int, more bool) {
	step := uint64(4)
	if s.l.Machine == MachineARM && s.l.Forms&FormT32Call != 0 {
		step = 2
	}
	if r := addr % step; r != 0 {
		return min(int(step-r), len(b)), false
	}
	if step == 2 {
		if len(b) < 4 {
			return len(b), true
		}
		if s.t32(b, addr) {
			return 4, false
		}
		return 2, false
	}
	if len(b) < 4 {
		return len(b), true
	}
	w := binary.LittleEndian.Uint32(b)
	if s.l.Machine == MachineARM64 {
		afterPage := s.prevWordAt == addr-4 && addr >= 4 && s.prevWord&0x9F000000 == 0x90000000
		in := w
		w = s.a64(w, addr, afterPage)
		if s.decode {
			s.prevWord = w // the original
		} else {
			s.prevWord = in
		}
		s.prevWordAt = addr
	} else {
		w = s.a32(w, addr)
	}
	binary.LittleEndian.PutUint32(b, w)
	return 4, false
}

// field adds (or, decoding, subtracts) term to the width-bit field of w at
// bit shift.
func (s *scanner) field(w uint32, shift, width uint, term uint32) uint32 {
	mask := uint32(1)<<width - 1
	v := w >> shift & mask
	if s.decode {
		v -= term
	} else {
		v += term
	}
	return w&^(mask<<shift) | (v&mask)<<shift
}

func (s *scanner) a64(w uint32, addr uint64, afterPage bool) uint32 {
	f := s.l.Forms
	pc := uint32(addr >> 2)
	if f&FormA64Pair != 0 && afterPage && (w&0x7F800000 == 0x11000000 || w&0x3B000000 == 0x39000000) {
		// ADD (immediate) or LDR/STR (unsigned offset) after an ADRP:
		// imm12 (bits 10-21) to bits 0-11, registers (0-9) to 12-21.
		if s.decode {
			return w&^0x3FFFFF | (w&0xFFF)<<10 | w>>12&0x3FF
		}
		return w&^0x3FFFFF | w>>10&0xFFF | (w&0x3FF)<<12
	}
	switch {
	case w&0xFC000000 == 0x94000000:
		if f&FormA64Call != 0 {
			return s.field(w, 0, 26, pc)
		}
	case w&0xFC000000 == 0x14000000:
		if f&FormA64Jump != 0 {
			return s.field(w, 0, 26, pc)
		}
	case w&0x1F000000 == 0x10000000: // ADR, ADRP
		page := w&0x80000000 != 0
		if page && f&FormA64Page == 0 || !page && f&FormA64Adr == 0 {
			return w
		}
		term := uint32(addr)
		if page {
			term = uint32(addr >> 12)
		}
		pair := page && f&FormA64Pair != 0
		var imm, rd uint32
		if s.decode && pair {
			// The page in bits 0-20, Rd in 21-23 and 29-30.
			imm, rd = w&0x1FFFFF, w>>21&7|(w>>29&3)<<3
		} else {
			imm, rd = (w>>5&0x7FFFF)<<2|w>>29&3, w&0x1F
		}
		v := imm + term
		if s.decode {
			v = imm - term
		}
		v &= 0x1FFFFF
		if pair && !s.decode {
			return w&^(0xFFFFFF|3<<29) | v | (rd&7)<<21 | (rd>>3)<<29
		}
		return w&^(0xFFFFFF|3<<29) | (v>>2)<<5 | (v&3)<<29 | rd
	case w&0xFF000010 == 0x54000000, w&0x7E000000 == 0x34000000:
		if f&FormA64Cond != 0 {
			return s.field(w, 5, 19, pc)
		}
	case w&0x7E000000 == 0x36000000:
		if f&FormA64Cond != 0 {
			return s.field(w, 5, 14, pc)
		}
	case w&0x3B000000 == 0x18000000:
		if f&FormA64Literal != 0 {
			return s.field(w, 5, 19, pc)
		}
	}
	return w
}

func (s *scanner) a32(w uint32, addr uint64) uint32 {
	if w>>25&7 != 5 {
		return w
	}
	call := w>>28 == 0xF || w&(1<<24) != 0
	if call && s.l.Forms&FormA32Call != 0 || !call && s.l.Forms&FormA32Jump != 0 {
		return s.field(w, 0, 24, uint32((addr+8)>>2))
	}
	return w
}

// t32 converts a Thumb-2 BL/BLX pair at the start of b, if there is one.
func (s *scanner) t32(b []byte, addr uint64) bool {
	h1 := uint32(binary.LittleEndian.Uint16(b))
	h2 := uint32(binary.LittleEndian.Uint16(b[2:]))
	if h1&0xF800 != 0xF000 || h2&0xC000 != 0xC000 {
		return false
	}
	// S:imm10:imm11, 22 bits; J1 and J2 stay.
	v := (h1&0x7FF)<<11 | h2&0x7FF
	term := uint32((addr + 4) >> 1)
	if s.decode {
		v -= term
	} else {
		v += term
	}
	v &= 0x3FFFFF
	h1 = h1&^0x7FF | v>>11
	h2 = h2&^0x7FF | v&0x7FF
	binary.LittleEndian.PutUint16(b, uint16(h1))
	binary.LittleEndian.PutUint16(b[2:], uint16(h2))
	return true
}
