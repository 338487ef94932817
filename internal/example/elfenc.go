package example

import (
	"encoding/binary"
)

// ELF constants used by encode.
const (
	shtProgbits = 1
	shtSymtab   = 2
	shtStrtab   = 3
	shfWrite    = 1
	shfAlloc    = 2
	shfExec     = 4
	shfMerge    = 0x10
	shfStrings  = 0x20
)

var le = binary.LittleEndian

type section struct {
	name           string
	typ            uint32
	flags          uint64
	addr, off      uint64
	data           []byte
	link, info     uint32
	align, entsize uint64
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

// encode lays the program out and returns the bytes of an ELF64 x86-64
// file with sections .text, .rodata, .eh_frame, .data.rel.ro, .data,
// .comment, .symtab, .strtab and .shstrtab.
func (p *program) encode() []byte {
	base := uint64(0)
	if p.exec {
		base = 0x400000
	}
	// Layout of .text.
	textOff := uint64(0x1000)
	funcAddr := make(map[int32]uint64, len(p.funcs))
	off := textOff
	for _, f := range p.funcs {
		off = alignUp(off, 16)
		funcAddr[f.id] = base + off
		off += uint64(f.size())
	}
	textEnd := off
	// Layout of .rodata: strings, then a table of records pointing at them.
	roOff := alignUp(textEnd, 64)
	strAddr := make(map[int32]uint64, len(p.strs))
	var ro []byte
	for _, s := range p.strs {
		strAddr[s.id] = base + roOff + uint64(len(ro))
		ro = append(ro, s.s...)
		ro = append(ro, 0)
	}
	for len(ro)%16 != 0 {
		ro = append(ro, 0)
	}
	for i := 0; i < len(p.strs); i += 4 {
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], uint32(i/4))
		le.PutUint16(rec[4:], uint16(len(p.strs[i].s)))
		le.PutUint16(rec[6:], uint16(i%7))
		le.PutUint64(rec[8:], strAddr[p.strs[i].id])
		ro = append(ro, rec...)
	}
	// .eh_frame: one CIE, then an FDE per function.
	ehOff := alignUp(roOff+uint64(len(ro)), 8)
	eh := []byte{0x14, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0x0c, 7, 8, 0x90, 1, 0, 0}
	for _, f := range p.funcs {
		fde := make([]byte, 24)
		pos := ehOff + uint64(len(eh))
		le.PutUint32(fde[0:], 20)
		le.PutUint32(fde[4:], uint32(pos+4-ehOff))
		le.PutUint32(fde[8:], uint32(funcAddr[f.id]-(base+pos+8)))
		le.PutUint32(fde[12:], uint32(f.size()))
		copy(fde[16:], []byte{0, 0x41, 0x0e, 0x10, 0x86, 0x02, 0x43, 0x0d})
		eh = append(eh, fde...)
	}
	// .data.rel.ro: function pointer tables, on a new page.
	relOff := alignUp(ehOff+uint64(len(eh)), 0x1000)
	var rel []byte
	for _, t := range p.tables {
		for _, id := range t {
			rel = le.AppendUint64(rel, funcAddr[id])
		}
	}
	dataOff := alignUp(relOff+uint64(len(rel)), 64)
	data := make([]byte, 8*p.nData)
	dr := newRNG("data/" + p.prefix)
	for i := 0; i < len(data); i += 8 {
		if dr.chance(0.3) {
			le.PutUint64(data[i:], uint64(dr.skewed(4096)))
		}
	}
	// Now the code, whose displacements depend on all of the above.
	text := make([]byte, 0, textEnd-textOff)
	for _, f := range p.funcs {
		for uint64(len(text))+textOff < funcAddr[f.id]-base {
			text = append(text, 0xcc)
		}
		for _, in := range f.body {
			op := opcodes[in.op]
			text = append(text, op.b...)
			pc := base + textOff + uint64(len(text)) + 4
			switch op.kind {
			case kImm8:
				text = append(text, byte(in.imm))
			case kImm32:
				text = le.AppendUint32(text, in.imm)
			case kCall:
				text = le.AppendUint32(text, uint32(funcAddr[in.ref]-pc))
			case kStrRef:
				text = le.AppendUint32(text, uint32(strAddr[in.ref]-pc))
			case kDataRef:
				text = le.AppendUint32(text, uint32(base+dataOff+8*uint64(in.ref)-pc))
			}
		}
	}
	// Symbols, in address order.
	strtab := []byte{0}
	symtab := make([]byte, 24)
	for _, f := range p.funcs {
		sym := make([]byte, 24)
		le.PutUint32(sym[0:], uint32(len(strtab)))
		sym[4] = 0x12 // STB_GLOBAL, STT_FUNC
		le.PutUint16(sym[6:], 1)
		le.PutUint64(sym[8:], funcAddr[f.id])
		le.PutUint64(sym[16:], uint64(f.size()))
		symtab = append(symtab, sym...)
		strtab = append(strtab, f.name...)
		strtab = append(strtab, 0)
	}
	secs := []section{
		{name: ".text", typ: shtProgbits, flags: shfAlloc | shfExec, off: textOff, data: text, align: 16},
		{name: ".rodata", typ: shtProgbits, flags: shfAlloc | shfMerge | shfStrings, off: roOff, data: ro, align: 64, entsize: 1},
		{name: ".eh_frame", typ: shtProgbits, flags: shfAlloc, off: ehOff, data: eh, align: 8},
		{name: ".data.rel.ro", typ: shtProgbits, flags: shfAlloc | shfWrite, off: relOff, data: rel, align: 8},
		{name: ".data", typ: shtProgbits, flags: shfAlloc | shfWrite, off: dataOff, data: data, align: 64},
		{name: ".comment", typ: shtProgbits, flags: shfMerge | shfStrings, data: append([]byte(p.comment), 0), align: 1, entsize: 1},
		{name: ".symtab", typ: shtSymtab, data: symtab, link: 8, info: 1, align: 8, entsize: 24},
		{name: ".strtab", typ: shtStrtab, data: strtab, align: 1},
		{name: ".shstrtab", typ: shtStrtab, align: 1},
	}
	shstr := []byte{0}
	nameOff := make([]uint32, len(secs))
	for i := range secs {
		nameOff[i] = uint32(len(shstr))
		shstr = append(shstr, secs[i].name...)
		shstr = append(shstr, 0)
	}
	secs[len(secs)-1].data = shstr
	// Non-allocated sections follow the loaded ones.
	end := dataOff + uint64(len(data))
	for i := range secs {
		if secs[i].flags&shfAlloc != 0 {
			secs[i].addr = base + secs[i].off
			continue
		}
		end = alignUp(end, secs[i].align)
		secs[i].off = end
		end += uint64(len(secs[i].data))
	}
	shoff := alignUp(end, 8)
	out := make([]byte, shoff+uint64(64*(len(secs)+1)))
	for _, s := range secs {
		copy(out[s.off:], s.data)
	}
	// ELF header.
	copy(out, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	typ := uint16(3) // ET_DYN
	if p.exec {
		typ = 2 // ET_EXEC
	}
	le.PutUint16(out[16:], typ)
	le.PutUint16(out[18:], 0x3e) // EM_X86_64
	le.PutUint32(out[20:], 1)
	if len(p.funcs) > 0 {
		le.PutUint64(out[24:], funcAddr[p.funcs[0].id])
	}
	le.PutUint64(out[32:], 64)    // e_phoff
	le.PutUint64(out[40:], shoff) // e_shoff
	le.PutUint16(out[52:], 64)    // e_ehsize
	le.PutUint16(out[54:], 56)    // e_phentsize
	le.PutUint16(out[56:], 2)     // e_phnum
	le.PutUint16(out[58:], 64)    // e_shentsize
	le.PutUint16(out[60:], uint16(len(secs)+1))
	le.PutUint16(out[62:], uint16(len(secs))) // e_shstrndx
	// Program headers: R+X text segment, RW data segment.
	ph := func(at int, flags uint32, off, size uint64) {
		le.PutUint32(out[at:], 1) // PT_LOAD
		le.PutUint32(out[at+4:], flags)
		le.PutUint64(out[at+8:], off)
		le.PutUint64(out[at+16:], base+off)
		le.PutUint64(out[at+24:], base+off)
		le.PutUint64(out[at+32:], size)
		le.PutUint64(out[at+40:], size)
		le.PutUint64(out[at+48:], 0x1000)
	}
	ph(64, 5, 0, ehOff+uint64(len(eh)))
	ph(64+56, 6, relOff, dataOff+uint64(len(data))-relOff)
	for i, s := range secs {
		h := out[shoff+uint64(64*(i+1)):]
		le.PutUint32(h[0:], nameOff[i])
		le.PutUint32(h[4:], s.typ)
		le.PutUint64(h[8:], s.flags)
		le.PutUint64(h[16:], s.addr)
		le.PutUint64(h[24:], s.off)
		le.PutUint64(h[32:], uint64(len(s.data)))
		le.PutUint32(h[40:], s.link)
		le.PutUint32(h[44:], s.info)
		le.PutUint64(h[48:], s.align)
		le.PutUint64(h[56:], s.entsize)
	}
	return out
}
