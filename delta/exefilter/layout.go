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

// Forms selects the instruction forms whose operands are converted.
type Forms uint8

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

	formAll = FormCall | FormJmp | FormJcc | FormRIP | FormSymtab
)

// DefaultForms is the set Encode uses when given 0: the forms that made
// patches smaller on the measured corpus (see doc.go).
const DefaultForms = FormCall | FormRIP | FormSymtab

// String names the forms, e.g. "call+rip".
func (f Forms) String() string {
	if f == 0 {
		return "none"
	}
	s := ""
	for i, n := range []string{"call", "jmp", "jcc", "rip", "symtab"} {
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
// Off, loaded at virtual address Addr), or with Symtab set, an ELF64 symbol
// table (24-byte entries; Addr unused).
type Region struct {
	Off, Size int64
	Addr      uint64
	Symtab    bool
}

// symSize is the size of an Elf64_Sym; its value field is at symValue.
const (
	symSize  = 24
	symValue = 8
)

func (r Region) end() int64 { return r.Off + r.Size }

// Layout tells the scanner where the code of one file is and which
// targets are plausible. A zero Layout (no regions or no forms) is the
// identity transform. Branch targets are converted when they fall in
// [CodeLo, CodeHi), RIP-relative ones when in [DataLo, DataHi); both spans
// are below 4 GiB.
type Layout struct {
	Forms          Forms
	Code           []Region // sorted by Off, not overlapping
	CodeLo, CodeHi uint64
	DataLo, DataHi uint64
}

// Analyze reads the headers of an x86-64 ELF file of the given size and
// returns its Layout for forms. Anything else (not ELF, another machine,
// unreadable headers) yields the identity Layout and no error: the filter
// is an optimization, never a reason to fail. It reads only headers, so r
// may be a file on disk.
func Analyze(r io.ReaderAt, size int64, forms Forms) Layout {
	f, err := elf.NewFile(io.NewSectionReader(r, 0, size))
	if err != nil || f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 {
		return Layout{}
	}
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
			if (s.Type == elf.SHT_SYMTAB || s.Type == elf.SHT_DYNSYM) && s.Entsize == symSize && s.Size >= symSize {
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
	l := Layout{Forms: forms & formAll, CodeLo: codeLo, CodeHi: codeHi, DataLo: dataLo, DataHi: dataHi}
	if len(code) == 0 || codeHi-codeLo >= 1<<32 || codeHi < codeLo {
		l.Forms &^= FormCall | FormJmp | FormJcc | FormRIP
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
	return l
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
	if l.Forms&^formAll != 0 {
		return fmt.Errorf("%w: unknown forms %#x", ErrCorrupt, uint8(l.Forms))
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

const paramsVersion = 1

// MarshalBinary encodes p compactly: a version byte, the forms, the
// regions as uvarint gaps, sizes and addresses and a kind byte, the target
// ranges, and the
// exceptions as uvarint deltas.
func (p Params) MarshalBinary() ([]byte, error) {
	if err := p.Layout.validate(); err != nil {
		return nil, err
	}
	l := p.Layout
	b := []byte{paramsVersion, byte(l.Forms)}
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
	if b[0] != paramsVersion {
		return bad(fmt.Sprintf("version %d (want %d)", b[0], paramsVersion))
	}
	var q Params
	q.Layout.Forms = Forms(b[1])
	b = b[2:]
	next := func(what string) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad("truncated or overlong " + what)
		}
		b = b[n:]
		return v, nil
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
