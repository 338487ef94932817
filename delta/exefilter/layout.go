package exefilter

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Errors returned by the package, always wrapped with a description.
var (
	// ErrCorrupt: serialized Params or a transformed stream that cannot be
	// decoded (an exception that does not fall on a convertible operand).
	ErrCorrupt = errors.New("exefilter: corrupt input")
	// ErrNotExact: Encode's own check found that decoding its output does
	// not give back the input. It indicates a bug; the caller should fall
	// back to diffing the untransformed file.
	ErrNotExact = errors.New("exefilter: transform is not exact")
)

// Forms selects the instruction forms whose operands are converted. Each
// form belongs to one machine (FormSymtab to all); a Layout only holds the
// forms of its machine.
type Forms uint16

const (
	// FormCall: E8 rel32 (call).
	FormCall Forms = 1 << iota
	// FormJmp: E9 rel32 (jmp).
	FormJmp
	// FormJcc: 0F 80..8F rel32 (conditional jumps).
	FormJcc
	// FormRIP: [66|F2|F3] [REX] opcode ModRM(mod=00, rm=101) disp32, for the
	// common one- and two-byte opcodes with a memory operand (LEA, MOV, CMP,
	// ALU, SSE loads/stores, indirect CALL/JMP through the GOT).
	FormRIP
	// FormSymtab: in ELF symbol tables (.symtab, .dynsym), each symbol's
	// value becomes its difference from the previous symbol's, so that
	// symbols that move together keep their bytes. Not machine code, but
	// the same problem: addresses that shift when code grows.
	FormSymtab
	// FormA64Call: ARM64 BL imm26 (call).
	FormA64Call
	// FormA64Jump: ARM64 B imm26.
	FormA64Jump
	// FormA64Page: ARM64 ADRP (the page of a PC-relative address; the
	// ADD or LDR after it carries the low 12 bits, already absolute).
	FormA64Page
	// FormA64Adr: ARM64 ADR imm21.
	FormA64Adr
	// FormA64Cond: ARM64 B.cond, CBZ/CBNZ imm19 and TBZ/TBNZ imm14.
	FormA64Cond
	// FormA64Literal: ARM64 LDR (literal) imm19, LDRSW, PRFM and SIMD.
	FormA64Literal
	// FormA32Call: ARM (A32) BL and BLX imm24.
	FormA32Call
	// FormA32Jump: ARM (A32) B imm24.
	FormA32Jump
	// FormT32Call: Thumb-2 BL and BLX (a pair of halfwords).
	FormT32Call
	// FormA64Pair: ARM64 address pairs made byte-aligned: an ADRP's page
	// in its low 21 bits, and the 12-bit immediate of an ADD or a load or
	// store (unsigned offset) right after an ADRP in its low 12 bits, so
	// that data that moved by the same amount changes those bytes alike.
	FormA64Pair

	formX86 = FormCall | FormJmp | FormJcc | FormRIP
	formA64 = FormA64Call | FormA64Jump | FormA64Page | FormA64Adr | FormA64Cond | FormA64Literal | FormA64Pair
	formA32 = FormA32Call | FormA32Jump | FormT32Call
	formAll = formX86 | formA64 | formA32 | FormSymtab
)

// DefaultForms is the set Encode uses when given 0: the forms that made
// patches smaller on the measured corpus (see doc.go), for each machine.
const DefaultForms = FormCall | FormRIP | FormSymtab | FormA64Call | FormA64Page | FormA64Pair | FormA32Call | FormT32Call

// X86Forms are the forms of x86-64 code (and FormSymtab), the only ones
// of Params version 1.
const X86Forms = formX86 | FormSymtab

// Machines the transform knows. A Layout's Machine is 0 for x86-64 (the
// first machine, whose Params keep their version 1 encoding).
const (
	MachineX86_64 = 0
	MachineARM64  = elf.Machine(elf.EM_AARCH64)
	MachineARM    = elf.Machine(elf.EM_ARM)
)

// machineForms are the forms a machine's code can have converted.
func machineForms(m elf.Machine) (Forms, bool) {
	switch m {
	case MachineX86_64:
		return formX86 | FormSymtab, true
	case MachineARM64:
		return formA64 | FormSymtab, true
	case MachineARM:
		return formA32 | FormSymtab, true
	}
	return 0, false
}

// String names the forms, e.g. "call+rip".
func (f Forms) String() string {
	if f == 0 {
		return "none"
	}
	s := ""
	for i, n := range []string{"call", "jmp", "jcc", "rip", "symtab", "a64-call", "a64-jump", "a64-page", "a64-adr", "a64-cond", "a64-literal", "a32-call", "a32-jump", "t32-call", "a64-pair"} {
		if f&(1<<i) != 0 {
			if s != "" {
				s += "+"
			}
			s += n
		}
	}
	return s
}

// Region is a run of machine code in the file (Size bytes at file offset
// Off, loaded at virtual address Addr), or with Symtab set, an ELF symbol
// table (24-byte ELF64 entries, 16-byte ELF32 ones for MachineARM; Addr
// unused).
type Region struct {
	Off, Size int64
	Addr      uint64
	Symtab    bool
}

// symSize is the size of an Elf64_Sym; its value field is at symValue.
// sym32Size and sym32Value are the same for an Elf32_Sym.
const (
	symSize    = 24
	symValue   = 8
	sym32Size  = 16
	sym32Value = 4
)

func (r Region) end() int64 { return r.Off + r.Size }

// Layout tells the scanner where the code of one file is and which
// targets are plausible. A zero Layout (no regions or no forms) is the
// identity transform. Branch targets are converted when they fall in
// [CodeLo, CodeHi), RIP-relative ones when in [DataLo, DataHi); both spans
// are below 4 GiB.
type Layout struct {
	Machine        elf.Machine // MachineX86_64 (0), MachineARM64 or MachineARM
	Forms          Forms
	Code           []Region // sorted by Off, not overlapping
	CodeLo, CodeHi uint64
	DataLo, DataHi uint64
}

// Analyze reads the headers of an x86-64, ARM64 or 32-bit ARM ELF file of
// the given size and returns its Layout for the forms of its machine among
// forms. Anything else (not ELF, another machine, unreadable headers)
// yields the identity Layout and no error: the filter is an optimization,
// never a reason to fail. It reads only headers, so r may be a file on
// disk.
func Analyze(r io.ReaderAt, size int64, forms Forms) Layout {
	f, err := elf.NewFile(io.NewSectionReader(r, 0, size))
	if err != nil || f.Data != elf.ELFDATA2LSB {
		return Layout{}
	}
	var machine elf.Machine
	entsize := uint64(symSize)
	switch {
	case f.Class == elf.ELFCLASS64 && f.Machine == elf.EM_X86_64:
		machine = MachineX86_64
	case f.Class == elf.ELFCLASS64 && f.Machine == elf.EM_AARCH64:
		machine = MachineARM64
	case f.Class == elf.ELFCLASS32 && f.Machine == elf.EM_ARM:
		machine, entsize = MachineARM, sym32Size
	default:
		return Layout{}
	}
	mf, _ := machineForms(machine)
	forms &= mf
	var code []Region
	var codeLo, codeHi, dataLo, dataHi uint64
	codeLo, dataLo = ^uint64(0), ^uint64(0)
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		dataLo, dataHi = min(dataLo, s.Addr), max(dataHi, s.Addr+s.Size)
		if s.Flags&elf.SHF_EXECINSTR == 0 || s.Type == elf.SHT_NOBITS {
			continue
		}
		codeLo, codeHi = min(codeLo, s.Addr), max(codeHi, s.Addr+s.Size)
		code = append(code, Region{Off: int64(s.Offset), Size: int64(s.Size), Addr: s.Addr})
	}
	var syms []Region
	if forms&FormSymtab != 0 {
		for _, s := range f.Sections {
			if (s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_DYNSYM) && s.Entsize == entsize && s.Size >= entsize {
				syms = append(syms, Region{Off: int64(s.Offset), Size: int64(s.Size), Symtab: true})
			}
		}
	}
	if len(code) == 0 { // no section headers: fall back to executable segments
		codeLo, dataLo, dataHi = ^uint64(0), ^uint64(0), 0
		for _, p := range f.Progs {
			if p.Type != elf.PT_LOAD {
				continue
			}
			dataLo, dataHi = min(dataLo, p.Vaddr), max(dataHi, p.Vaddr+p.Memsz)
			if p.Flags&elf.PF_X != 0 && p.Filesz > 0 {
				codeLo, codeHi = min(codeLo, p.Vaddr), max(codeHi, p.Vaddr+p.Filesz)
				code = append(code, Region{Off: int64(p.Off), Size: int64(p.Filesz), Addr: p.Vaddr})
			}
		}
	}
	l := Layout{Machine: machine, Forms: forms, CodeLo: codeLo, CodeHi: codeHi, DataLo: dataLo, DataHi: dataHi}
	if len(code) == 0 || codeHi-codeLo >= 1<<32 || codeHi < codeLo {
		l.Forms &= FormSymtab
		l.CodeLo, l.CodeHi, code = 0, 0, nil
	}
	l.Code = normalize(append(code, syms...), size)
	if len(l.Code) == 0 || l.Forms == 0 {
		return Layout{}
	}
	if dataHi-dataLo >= 1<<32 || dataHi < dataLo {
		l.Forms &^= FormRIP
		l.DataLo, l.DataHi = 0, 0
	}
	if machine == MachineARM && l.Forms&FormT32Call != 0 && l.Forms&(FormA32Call|FormA32Jump) != 0 {
		if thumb(r, l.Code) {
			l.Forms &^= FormA32Call | FormA32Jump
		} else {
			l.Forms &^= FormT32Call
		}
	}
	if machine != MachineX86_64 {
		// The ARM forms are bijections on their fields and need no
		// target ranges.
		l.CodeLo, l.CodeHi, l.DataLo, l.DataHi = 0, 0, 0, 0
	}
	return l
}

// thumb tells whether 32-bit ARM code is mostly Thumb-2 (Debian's armhf)
// or ARM (Go's GOARCH=arm), by counting, in up to 1 MiB of it, the calls
// of each kind: unconditional A32 BL words and T32 BL pairs.
func thumb(r io.ReaderAt, code []Region) bool {
	var a32, t32 int
	left := int64(1 << 20)
	for _, c := range code {
		if c.Symtab || left <= 0 {
			continue
		}
		b := make([]byte, min(c.Size, left))
		left -= int64(len(b))
		n, _ := r.ReadAt(b, c.Off)
		b = b[:n]
		for i := int((4 - c.Addr%4) % 4); i+4 <= len(b); i += 4 {
			if b[i+3] == 0xEB {
				a32++
			}
		}
		for i := int(c.Addr % 2); i+4 <= len(b); i += 2 {
			if b[i+1]&0xF8 == 0xF0 && b[i+3]&0xD0 == 0xD0 {
				t32++
				i += 2
			}
		}
	}
	return t32 > a32
}

// normalize clips regions to the file, sorts them, trims overlaps and
// merges adjacent code regions with a continuous address mapping.
func normalize(rs []Region, size int64) []Region {
	var out []Region
	for _, r := range rs {
		if r.Off < 0 || r.Size <= 0 || r.Off >= size {
			continue
		}
		r.Size = min(r.Size, size-r.Off)
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Region) int {
		if a.Off != b.Off {
			if a.Off < b.Off {
				return -1
			}
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 {
			p := &merged[n-1]
			if r.Off < p.end() { // overlap: drop the overlapping part
				cut := p.end() - r.Off
				if cut >= r.Size {
					continue
				}
				r.Off += cut
				r.Size -= cut
				r.Addr += uint64(cut)
			}
			if r.Off == p.end() && !r.Symtab && !p.Symtab && r.Addr == p.Addr+uint64(p.Size) {
				p.Size += r.Size
				continue
			}
		}
		merged = append(merged, r)
	}
	return merged
}

// validate checks the invariants the scanner relies on.
func (l Layout) validate() error {
	mf, ok := machineForms(l.Machine)
	if !ok {
		return fmt.Errorf("%w: unknown machine %d", ErrCorrupt, l.Machine)
	}
	if l.Forms&^mf != 0 {
		return fmt.Errorf("%w: forms %#x for machine %d", ErrCorrupt, uint16(l.Forms), l.Machine)
	}
	var prev int64
	for i, r := range l.Code {
		if r.Off < prev || r.Size <= 0 || r.Off > 1<<62 || r.Size > 1<<62 {
			return fmt.Errorf("%w: code region %d (offset %d, %d bytes) out of order or empty", ErrCorrupt, i, r.Off, r.Size)
		}
		prev = r.end()
	}
	if l.CodeHi < l.CodeLo || l.CodeHi-l.CodeLo >= 1<<32 || l.DataHi < l.DataLo || l.DataHi-l.DataLo >= 1<<32 {
		return fmt.Errorf("%w: target ranges [%#x,%#x) [%#x,%#x) invalid", ErrCorrupt, l.CodeLo, l.CodeHi, l.DataLo, l.DataHi)
	}
	return nil
}

// Exceptions are the file offsets of scan positions where the decoder must
// flip its default decision; strictly increasing.
type Exceptions []int64

// Params is what the decoder needs besides the transformed bytes: the
// Layout of the file and its Exceptions.
type Params struct {
	Layout     Layout
	Exceptions Exceptions
}

// Params encodings: version 1 for x86-64 (a forms byte), version 2 for
// the other machines (uvarint machine and forms).
const (
	paramsVersion  = 1
	paramsVersionM = 2
)

// MarshalBinary encodes p compactly: a version byte, the forms (version 2:
// the machine, then the forms), the regions as uvarint gaps, sizes and
// addresses and a kind byte, the target ranges, and the exceptions as
// uvarint deltas.
func (p Params) MarshalBinary() ([]byte, error) {
	if err := p.Layout.validate(); err != nil {
		return nil, err
	}
	l := p.Layout
	b := []byte{paramsVersion, byte(l.Forms)}
	if l.Machine != MachineX86_64 {
		b = binary.AppendUvarint([]byte{paramsVersionM}, uint64(l.Machine))
		b = binary.AppendUvarint(b, uint64(l.Forms))
	}
	b = binary.AppendUvarint(b, uint64(len(l.Code)))
	var prev int64
	for _, r := range l.Code {
		b = binary.AppendUvarint(b, uint64(r.Off-prev))
		b = binary.AppendUvarint(b, uint64(r.Size))
		b = binary.AppendUvarint(b, r.Addr)
		if r.Symtab {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		prev = r.end()
	}
	for _, v := range []uint64{l.CodeLo, l.CodeHi - l.CodeLo, l.DataLo, l.DataHi - l.DataLo} {
		b = binary.AppendUvarint(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Exceptions)))
	prev = -1
	for _, e := range p.Exceptions {
		if e <= prev {
			return nil, fmt.Errorf("%w: exceptions not strictly increasing at %d", ErrCorrupt, e)
		}
		b = binary.AppendUvarint(b, uint64(e-prev-1))
		prev = e
	}
	return b, nil
}

// UnmarshalBinary decodes what MarshalBinary wrote, rejecting anything
// malformed with ErrCorrupt.
func (p *Params) UnmarshalBinary(b []byte) error {
	bad := func(what string) error { return fmt.Errorf("%w: params: %s", ErrCorrupt, what) }
	if len(b) < 2 {
		return bad("truncated header")
	}
	var q Params
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad("truncated or overlong " + what)
		}
		b = b[n:]
		return v, nil
	}
	switch b[0] {
	case paramsVersion:
		q.Layout.Forms = Forms(b[1])
		b = b[2:]
	case paramsVersionM:
		b = b[1:]
		m, err := next("machine")
		if err != nil {
			return err
		}
		f, err := next("forms")
		if err != nil {
			return err
		}
		if m == MachineX86_64 || m > 0xFFFF || f > 0xFFFF {
			return bad(fmt.Sprintf("machine %d, forms %#x", m, f))
		}
		q.Layout.Machine, q.Layout.Forms = elf.Machine(m), Forms(f)
	default:
		return bad(fmt.Sprintf("version %d (want %d or %d)", b[0], paramsVersion, paramsVersionM))
	}
	count := func(what string) (int, error) {
		v, err := next(what)
		if err != nil {
			return 0, err
		}
		if v > uint64(len(b)) { // every entry takes at least one byte
			return 0, bad(fmt.Sprintf("%s count %d exceeds the remaining %d bytes", what, v, len(b)))
		}
		return int(v), nil
	}
	n, err := count("region")
	if err != nil {
		return err
	}
	var prev int64
	for range n {
		var v [3]uint64
		for k := range v {
			if v[k], err = next("region"); err != nil {
				return err
			}
		}
		if v[0] > 1<<62 || v[1] > 1<<62 || v[1] == 0 || prev+int64(v[0]) > 1<<62 {
			return bad("region offset or size out of range")
		}
		if len(b) == 0 || b[0] > 1 {
			return bad("region kind")
		}
		r := Region{Off: prev + int64(v[0]), Size: int64(v[1]), Addr: v[2], Symtab: b[0] == 1}
		b = b[1:]
		q.Layout.Code = append(q.Layout.Code, r)
		prev = r.end()
	}
	var rg [4]uint64
	for k := range rg {
		if rg[k], err = next("target range"); err != nil {
			return err
		}
	}
	if rg[1] >= 1<<32 || rg[3] >= 1<<32 || rg[0]+rg[1] < rg[0] || rg[2]+rg[3] < rg[2] {
		return bad("target range too wide")
	}
	q.Layout.CodeLo, q.Layout.CodeHi = rg[0], rg[0]+rg[1]
	q.Layout.DataLo, q.Layout.DataHi = rg[2], rg[2]+rg[3]
	if n, err = count("exception"); err != nil {
		return err
	}
	e := int64(-1)
	for range n {
		d, err := next("exception")
		if err != nil {
			return err
		}
		if d > 1<<62 || e+1+int64(d) > 1<<62 {
			return bad("exception offset out of range")
		}
		e += 1 + int64(d)
		q.Exceptions = append(q.Exceptions, e)
	}
	if len(b) != 0 {
		return bad(fmt.Sprintf("%d trailing bytes", len(b)))
	}
	if err := q.Layout.validate(); err != nil {
		return err
	}
	*p = q
	return nil
}
