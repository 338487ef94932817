package zsections

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
)

// text returns n bytes of seeded, word-like data that compresses about
// as well as DWARF (3-5x).
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	words := make([][]byte, 256)
	for i := range words {
		w := make([]byte, 2+r.IntN(10))
		for j := range w {
			w[j] = byte('a' + r.IntN(26))
		}
		words[i] = w
	}
	out := make([]byte, 0, n+16)
	for len(out) < n {
		out = append(out, words[r.IntN(len(words))]...)
		if r.IntN(4) == 0 {
			out = binary.LittleEndian.AppendUint32(out, r.Uint32()&0xfff)
		} else {
			out = append(out, ' ')
		}
	}
	return out[:n]
}

// textReader streams text(seed, n) without holding it: the same bytes
// for every call, in 64 KiB blocks each generated from its own seed.
type textReader struct {
	seed      uint64
	left, blk int64
	buf       []byte
}

func newTextReader(seed uint64, n int64) *textReader {
	return &textReader{seed: seed, left: n}
}

func (t *textReader) Read(p []byte) (int, error) {
	if t.left == 0 {
		return 0, io.EOF
	}
	if len(t.buf) == 0 {
		t.buf = text(t.seed+uint64(t.blk), 64<<10)
		t.blk++
	}
	n := copy(p, t.buf[:min(int64(len(t.buf)), t.left)])
	t.buf = t.buf[n:]
	t.left -= int64(n)
	return n, nil
}

func zlibAt(t testing.TB, level int, raw []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := zlib.NewWriterLevel(&b, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(raw)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// order is a byte order that can also append.
type order interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

// elfSection is one section of a synthetic ELF file.
type elfSection struct {
	name  string
	flags uint64
	data  []byte
}

// chdr returns an ELF compression header declaring size bytes of zlib.
func chdr(is64 bool, bo order, size int) []byte {
	if is64 {
		b := bo.AppendUint32(nil, compressZlib)
		b = bo.AppendUint32(b, 0)
		b = bo.AppendUint64(b, uint64(size))
		return bo.AppendUint64(b, 1)
	}
	b := bo.AppendUint32(nil, compressZlib)
	b = bo.AppendUint32(b, uint32(size))
	return bo.AppendUint32(b, 1)
}

// buildELF lays out an ELF file: header, a filler, the sections' data in
// order, .shstrtab, then the section header table.
func buildELF(is64 bool, bo order, secs []elfSection) []byte {
	hdr := 52
	if is64 {
		hdr = 64
	}
	out := make([]byte, hdr)
	out = append(out, text(99, 300)...) // stands for code and data
	strtab := []byte{0}
	type placed struct {
		name, off, size int
		flags           uint64
		typ             uint32
	}
	var ps []placed
	for _, s := range secs {
		ps = append(ps, placed{name: len(strtab), off: len(out), size: len(s.data), flags: s.flags, typ: 1})
		strtab = append(append(strtab, s.name...), 0)
		out = append(out, s.data...)
	}
	ps = append(ps, placed{name: len(strtab), off: len(out), size: 0, typ: 3})
	strtab = append(strtab, ".shstrtab\x00"...)
	ps[len(ps)-1].size = len(strtab)
	out = append(out, strtab...)
	for len(out)%8 != 0 {
		out = append(out, 0)
	}
	shoff := len(out)
	shent := 40
	if is64 {
		shent = 64
	}
	out = append(out, make([]byte, shent)...) // null section
	for _, p := range ps {
		e := make([]byte, shent)
		if is64 {
			bo.PutUint32(e, uint32(p.name))
			bo.PutUint32(e[4:], p.typ)
			bo.PutUint64(e[8:], p.flags)
			bo.PutUint64(e[24:], uint64(p.off))
			bo.PutUint64(e[32:], uint64(p.size))
			bo.PutUint64(e[48:], 1)
		} else {
			bo.PutUint32(e, uint32(p.name))
			bo.PutUint32(e[4:], p.typ)
			bo.PutUint32(e[8:], uint32(p.flags))
			bo.PutUint32(e[16:], uint32(p.off))
			bo.PutUint32(e[20:], uint32(p.size))
			bo.PutUint32(e[32:], 1)
		}
		out = append(out, e...)
	}
	copy(out, "\x7fELF")
	out[4], out[5], out[6] = 1, 1, 1
	if is64 {
		out[4] = 2
	}
	if bo.String() == binary.BigEndian.String() {
		out[5] = 2
	}
	n := uint16(len(ps) + 1)
	if is64 {
		bo.PutUint64(out[0x28:], uint64(shoff))
		bo.PutUint16(out[0x3a:], uint16(shent))
		bo.PutUint16(out[0x3c:], n)
		bo.PutUint16(out[0x3e:], n-1)
	} else {
		bo.PutUint32(out[0x20:], uint32(shoff))
		bo.PutUint16(out[0x2e:], uint16(shent))
		bo.PutUint16(out[0x30:], n)
		bo.PutUint16(out[0x32:], n-1)
	}
	return out
}
