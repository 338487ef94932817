package zsections

import (
	"bytes"
	"cmp"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrNotExact means Expand's own check failed: its output does not map
// back to its input. It would be a bug; the caller should keep the file
// unexpanded.
var ErrNotExact = errors.New("zsections: expansion does not invert exactly")

// maxExpanded caps the total decompressed bytes Expand adds, so a file
// built to decompress enormously (the server may diff untrusted images)
// cannot exhaust memory; sections past the cap stay compressed.
const maxExpanded = 1 << 30

// candidate is a zlib stream found in the input: its offset and the
// decompressed size its header declares.
type candidate struct {
	off, end int64 // payload range after the Chdr or ZLIB header
	size     int64 // declared decompressed size
}

// Expand returns in with the zlib stream of each compressed ELF section
// (SHF_COMPRESSED with an ELFCOMPRESS_ZLIB header, or a ".zdebug_*"
// section) replaced by its decompressed bytes, when compress/zlib at some
// level reproduces that stream byte for byte; the section headers are
// read from in. Everything else is kept, in order. ok is false when
// nothing was expanded (not an ELF file, nothing compressed, nothing
// reproducible); out is then nil. Expand checks its work by running
// NewCompressor and NewExpander and comparing; a mismatch is ErrNotExact.
func Expand(in []byte) (out []byte, p Params, ok bool, err error) {
	cands := findCompressed(in)
	if len(cands) == 0 {
		return nil, Params{}, false, nil
	}
	type found struct {
		c   candidate
		raw []byte
		s   Section
	}
	var hits []found
	var total int64
	zr := &bytes.Reader{}
	for _, c := range cands {
		if total+c.size > maxExpanded {
			continue
		}
		z := in[c.off:c.end]
		raw, n, err := inflate(zr, z, c.size)
		if err != nil || int64(len(raw)) != c.size {
			continue
		}
		level, ok := findLevel(raw, z[:n])
		if !ok {
			continue
		}
		total += c.size
		hits = append(hits, found{c: c, raw: raw, s: Section{Size: c.size, ZSize: int64(n), Level: level}})
	}
	if len(hits) == 0 {
		return nil, Params{}, false, nil
	}
	var grow int64
	for _, h := range hits {
		grow += h.s.Size - h.s.ZSize
	}
	out = make([]byte, 0, int64(len(in))+max(grow, 0))
	var at int64
	for _, h := range hits {
		out = append(out, in[at:h.c.off]...)
		h.s.Off = int64(len(out))
		out = append(out, h.raw...)
		at = h.c.off + h.s.ZSize
		p.Sections = append(p.Sections, h.s)
	}
	out = append(out, in[at:]...)
	if err := check(in, out, p); err != nil {
		return nil, Params{}, false, err
	}
	return out, p, true, nil
}

// check runs both streams and compares them with in and out.
func check(in, out []byte, p Params) error {
	if err := sameStream(NewCompressor(bytes.NewReader(out), p), in); err != nil {
		return fmt.Errorf("recompressing: %v: %w", err, ErrNotExact)
	}
	if err := sameStream(NewExpander(bytes.NewReader(in), p), out); err != nil {
		return fmt.Errorf("expanding: %v: %w", err, ErrNotExact)
	}
	return nil
}

func sameStream(r io.Reader, want []byte) error {
	buf := make([]byte, 64<<10)
	var at int
	for {
		n, err := r.Read(buf)
		if n > len(want)-at || !bytes.Equal(buf[:n], want[at:at+n]) {
			return fmt.Errorf("bytes differ near offset %d", at)
		}
		at += n
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if at != len(want) {
		return fmt.Errorf("%d bytes, want %d", at, len(want))
	}
	return nil
}

// inflate decompresses the zlib stream at the start of z, expecting size
// bytes (it reads at most one more), and returns them with the number of
// compressed bytes the stream took.
func inflate(zr *bytes.Reader, z []byte, size int64) ([]byte, int, error) {
	zr.Reset(z) // a bytes.Reader is an io.ByteReader: flate does not read ahead
	r, err := zlib.NewReader(zr)
	if err != nil {
		return nil, 0, err
	}
	var buf bytes.Buffer
	buf.Grow(int(min(size, 64<<20)) + 1)
	if _, err := io.Copy(&buf, io.LimitReader(r, size+1)); err != nil {
		return nil, 0, err
	}
	// Read to the end of the stream so the checksum is checked and
	// consumed, even when size bytes were already produced.
	var one [1]byte
	if n, err := r.Read(one[:]); n != 0 || err != io.EOF {
		return nil, 0, fmt.Errorf("zlib stream longer than declared")
	}
	return buf.Bytes(), len(z) - zr.Len(), nil
}

// levelsFor lists the compress/zlib levels whose header has the FLEVEL
// bits of h (the second header byte), most likely first.
func levelsFor(h byte) []int {
	switch h >> 6 {
	case 0:
		return []int{1, 0, -2}
	case 1:
		return []int{2, 3, 4, 5}
	case 2:
		return []int{6}
	default:
		return []int{9, 7, 8}
	}
}

// findLevel returns the level at which compress/zlib turns raw into
// exactly z, fed in chunk-sized writes as NewCompressor does.
func findLevel(raw, z []byte) (int, bool) {
	if len(z) < 2 {
		return 0, false
	}
	for _, level := range levelsFor(z[1]) {
		w := &cmpWriter{want: z}
		zw, err := zlib.NewWriterLevel(w, level)
		if err != nil {
			return 0, false
		}
		good := true
		for b := raw; len(b) > 0; {
			n := min(len(b), chunk)
			if _, err := zw.Write(b[:n]); err != nil {
				good = false
				break
			}
			b = b[n:]
		}
		if good && zw.Close() == nil && w.at == len(z) {
			return level, true
		}
	}
	return 0, false
}

// cmpWriter fails at the first byte that differs from want.
type cmpWriter struct {
	want []byte
	at   int
}

var errDiffer = errors.New("differs")

func (c *cmpWriter) Write(p []byte) (int, error) {
	if len(p) > len(c.want)-c.at || !bytes.Equal(p, c.want[c.at:c.at+len(p)]) {
		return 0, errDiffer
	}
	c.at += len(p)
	return len(p), nil
}

// ELF constants (debug/elf has them, but Expand parses only what it needs
// and tolerates what debug/elf would reject).
const (
	shfCompressed = 0x800
	shtNobits     = 8
	compressZlib  = 1
	shnXindex     = 0xffff
)

// findCompressed returns the zlib streams of in's compressed sections,
// sorted by offset and not overlapping, from its section headers. Anything
// malformed yields fewer candidates, never an error.
func findCompressed(in []byte) []candidate {
	if len(in) < 52 || string(in[:4]) != "\x7fELF" {
		return nil
	}
	var bo binary.ByteOrder
	switch in[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return nil
	}
	is64 := in[4] == 2
	if !is64 && in[4] != 1 {
		return nil
	}
	size := int64(len(in))
	var shoff, shentsize, shnum, shstrndx int64
	if is64 {
		if len(in) < 64 {
			return nil
		}
		shoff = int64(bo.Uint64(in[0x28:]))
		shentsize, shnum, shstrndx = int64(bo.Uint16(in[0x3a:])), int64(bo.Uint16(in[0x3c:])), int64(bo.Uint16(in[0x3e:]))
	} else {
		shoff = int64(bo.Uint32(in[0x20:]))
		shentsize, shnum, shstrndx = int64(bo.Uint16(in[0x2e:])), int64(bo.Uint16(in[0x30:])), int64(bo.Uint16(in[0x32:]))
	}
	want := int64(40)
	if is64 {
		want = 64
	}
	if shoff <= 0 || shoff >= size || shentsize < want {
		return nil
	}
	type shdr struct {
		name, typ uint32
		flags     uint64
		off, size int64
		link      uint32
	}
	read := func(i int64) (shdr, bool) {
		o := shoff + i*shentsize
		if i < 0 || o < shoff || o > size-want {
			return shdr{}, false
		}
		b := in[o:]
		if is64 {
			return shdr{name: bo.Uint32(b), typ: bo.Uint32(b[4:]), flags: bo.Uint64(b[8:]),
				off: int64(bo.Uint64(b[24:])), size: int64(bo.Uint64(b[32:])), link: bo.Uint32(b[40:])}, true
		}
		return shdr{name: bo.Uint32(b), typ: bo.Uint32(b[4:]), flags: uint64(bo.Uint32(b[8:])),
			off: int64(bo.Uint32(b[16:])), size: int64(bo.Uint32(b[20:])), link: bo.Uint32(b[24:])}, true
	}
	s0, ok := read(0)
	if !ok {
		return nil
	}
	if shnum == 0 {
		shnum = s0.size // extended numbering
	}
	if shstrndx == shnXindex {
		shstrndx = int64(s0.link)
	}
	if shnum <= 0 || shnum > (size-shoff)/shentsize {
		return nil
	}
	var strtab []byte
	if st, ok := read(shstrndx); ok && st.off >= 0 && st.size >= 0 && st.off <= size && st.size <= size-st.off {
		strtab = in[st.off : st.off+st.size]
	}
	name := func(o uint32) string {
		if int64(o) >= int64(len(strtab)) {
			return ""
		}
		s := strtab[o:]
		if k := bytes.IndexByte(s, 0); k >= 0 {
			s = s[:k]
		}
		return string(s)
	}
	var cs []candidate
	for i := int64(1); i < shnum; i++ {
		h, ok := read(i)
		if !ok || h.typ == shtNobits || h.off <= 0 || h.size <= 0 || h.off > size || h.size > size-h.off {
			continue
		}
		b := in[h.off : h.off+h.size]
		var c candidate
		switch {
		case h.flags&shfCompressed != 0:
			var hdr int
			var typ uint32
			var declared uint64
			if is64 {
				if len(b) < 24 {
					continue
				}
				typ, declared, hdr = bo.Uint32(b), bo.Uint64(b[8:]), 24
			} else {
				if len(b) < 12 {
					continue
				}
				typ, declared, hdr = bo.Uint32(b), uint64(bo.Uint32(b[4:])), 12
			}
			if typ != compressZlib || declared > maxExpanded {
				continue
			}
			c = candidate{off: h.off + int64(hdr), end: h.off + h.size, size: int64(declared)}
		case strings.HasPrefix(name(h.name), ".zdebug"):
			if len(b) < 12 || string(b[:4]) != "ZLIB" {
				continue
			}
			declared := binary.BigEndian.Uint64(b[4:])
			if declared > maxExpanded {
				continue
			}
			c = candidate{off: h.off + 12, end: h.off + h.size, size: int64(declared)}
		default:
			continue
		}
		if c.end-c.off >= 2 {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b candidate) int { return cmp.Compare(a.off, b.off) })
	// Drop any section overlapping the one before it.
	out := cs[:0]
	var end int64
	for _, c := range cs {
		if c.off >= end {
			out = append(out, c)
			end = c.end
		}
	}
	return out
}
