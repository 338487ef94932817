package exefilter

import (
	"bytes"
	"debug/elf"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzRoundTrip checks T⁻¹(T(x)) == x for arbitrary bytes, code regions,
// target ranges and forms, through both the whole-buffer and the streaming
// paths. Run with -fuzztime 200000x.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{0xE8, 0xFF, 0xFF, 0xFF, 0xFF, 0xE8, 0, 0, 0, 0}, uint32(0), uint32(0), uint32(1<<31), uint16(formAll), uint8(0), uint16(0), uint16(0xFFFF))
	f.Add(bytes.Repeat([]byte{0x48, 0x8D, 0x05, 0xE8}, 64), uint32(0x400000), uint32(0), uint32(0xFFFFFFFF), uint16(formAll), uint8(0), uint16(3), uint16(200))
	f.Add(gen(5, 300, true), uint32(0xFFFFFFF0), uint32(0xFFFFF000), uint32(1<<20), uint16(FormJcc|FormRIP), uint8(0), uint16(0), uint16(300))
	f.Add(armWords(7, 400), uint32(0x10000), uint32(0), uint32(0), uint16(formAll), uint8(1), uint16(4), uint16(1500))
	f.Add(armWords(8, 400), uint32(0x10002), uint32(0), uint32(0), uint16(formA32), uint8(2), uint16(2), uint16(1500))
	f.Add(armWords(9, 400), uint32(0x8000), uint32(0), uint32(0), uint16(FormA32Call|FormA32Jump|FormSymtab), uint8(2), uint16(0), uint16(1000))
	f.Fuzz(func(t *testing.T, in []byte, addr, lo, span uint32, forms uint16, machine uint8, off, size uint16) {
		m := []elf.Machine{MachineX86_64, MachineARM64, MachineARM}[machine%3]
		mf, _ := machineForms(m)
		l := Layout{Machine: m, Forms: Forms(forms) & mf, CodeLo: uint64(lo), CodeHi: uint64(lo) + uint64(span),
			DataLo: uint64(lo) / 2, DataHi: uint64(lo)/2 + uint64(span)}
		if size > 0 {
			l.Code = []Region{{Off: int64(off), Size: int64(size), Addr: uint64(addr)}}
			// A symbol table region after the code one.
			l.Code = append(l.Code, Region{Off: int64(off) + int64(size) + int64(size%7), Size: int64(size)/3 + 1, Symtab: true})
		}
		out, p, err := EncodeLayout(in, l)
		if err != nil {
			t.Fatalf("EncodeLayout: %v", err)
		}
		streamed, err := io.ReadAll(NewEncoder(iotest.HalfReader(bytes.NewReader(in)), l))
		if err != nil || !bytes.Equal(streamed, out) {
			t.Fatalf("NewEncoder differs from EncodeLayout (err %v)", err)
		}
		back, err := io.ReadAll(NewDecoder(iotest.OneByteReader(bytes.NewReader(out)), p))
		if err != nil || !bytes.Equal(back, in) {
			t.Fatalf("round trip failed (err %v)", err)
		}
	})
}
