package tartest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"strconv"
)

// blockSize is the size of one tar block.
const blockSize = 512

// Offsets and lengths of the fields of a tar header block. The first group is
// common to V7, ustar and GNU; prefix is ustar only; the rest are GNU only.
const (
	offName     = 0
	lenName     = 100
	offMode     = 100
	offUID      = 108
	offGID      = 116
	offSize     = 124
	offMtime    = 136
	offChksum   = 148
	offTypeflag = 156
	offLinkname = 157
	offMagic    = 257
	offVersion  = 263
	offUname    = 265
	offGname    = 297
	offDevmajor = 329
	offDevminor = 337
	offPrefix   = 345

	offGNUAtime      = 345
	offGNUCtime      = 357
	offGNUSparse     = 386 // 4 entries of (offset[12], numbytes[12])
	offGNUExtended   = 482
	offGNURealSize   = 483
	gnuSparseInHdr   = 4
	gnuSparseInExt   = 21 // entries per extension block
	offGNUExtFlagExt = 504
)

// Magic strings at offset 257 (magic and version together).
const (
	magicUSTAR = "ustar\x0000"
	magicGNU   = "ustar  \x00"
)

// header is one hand-built 512-byte tar header block.
type header [blockSize]byte

// str copies s into the field at off, of length n. s may fill the field
// completely (no NUL) but not overflow it.
func (h *header) str(off, n int, s string) {
	if len(s) > n {
		panic(fmt.Sprintf("tartest: %q does not fit a %d-byte field", s, n))
	}
	copy(h[off:off+n], s)
}

// octal writes v as zero-padded octal followed by a NUL, the way most
// writers do, into the field at off of length n.
func (h *header) octal(off, n int, v int64) {
	s := strconv.FormatInt(v, 8)
	if len(s) > n-1 {
		panic(fmt.Sprintf("tartest: %d does not fit a %d-byte octal field", v, n))
	}
	s = string(bytes.Repeat([]byte{'0'}, n-1-len(s))) + s
	h.str(off, n, s+"\x00")
}

// base256 writes v in GNU's base-256 (binary) encoding: the first byte has
// its high bit set, the value is big-endian two's complement in the rest.
func (h *header) base256(off, n int, v int64) {
	f := h[off : off+n]
	for i := n - 1; i >= 0; i-- {
		f[i] = byte(v)
		v >>= 8
	}
	f[0] |= 0x80
}

// setChecksum computes the header checksum (the unsigned sum of all bytes
// with the checksum field counted as spaces) and stores it as six octal
// digits, a NUL and a space, as GNU tar and archive/tar do.
func (h *header) setChecksum() {
	copy(h[offChksum:offChksum+8], "        ")
	var sum int64
	for _, b := range h {
		sum += int64(b)
	}
	copy(h[offChksum:offChksum+8], fmt.Sprintf("%06o\x00 ", sum))
}

// rawEntry describes one hand-built header. Numbers are written in octal
// unless the matching *256 flag is set.
type rawEntry struct {
	name     string
	mode     int64
	uid, gid int64
	size     int64
	mtime    int64
	typeflag byte
	linkname string
	magic    string // magicUSTAR, magicGNU or "" for V7
	uname    string
	gname    string
	prefix   string // ustar only
	devmajor int64
	devminor int64

	size256, uid256, gid256, mtime256 bool
}

// block returns the header block of e with a correct checksum. For GNU magic,
// fields after offPrefix are left zero for the caller to fill.
func (e rawEntry) block() *header {
	var h header
	h.str(offName, lenName, e.name)
	h.octal(offMode, 8, e.mode)
	num := func(off, n int, v int64, b256 bool) {
		if b256 {
			h.base256(off, n, v)
		} else {
			h.octal(off, n, v)
		}
	}
	num(offUID, 8, e.uid, e.uid256)
	num(offGID, 8, e.gid, e.gid256)
	num(offSize, 12, e.size, e.size256)
	num(offMtime, 12, e.mtime, e.mtime256)
	h[offTypeflag] = e.typeflag
	h.str(offLinkname, 100, e.linkname)
	if e.magic != "" {
		h.str(offMagic, 8, e.magic)
		h.str(offUname, 32, e.uname)
		h.str(offGname, 32, e.gname)
		if e.typeflag == tar.TypeChar || e.typeflag == tar.TypeBlock || e.devmajor != 0 || e.devminor != 0 {
			h.octal(offDevmajor, 8, e.devmajor)
			h.octal(offDevminor, 8, e.devminor)
		}
		if e.magic == magicUSTAR {
			h.str(offPrefix, 155, e.prefix)
		}
	}
	h.setChecksum()
	return &h
}

// paxRecord formats one PAX extended header record, "%d %s=%s\n", where the
// leading decimal counts the whole record including itself.
func paxRecord(k, v string) string {
	const padding = 3 // ' ', '=' and '\n'
	size := len(k) + len(v) + padding
	size += len(strconv.Itoa(size))
	rec := strconv.Itoa(size) + " " + k + "=" + v + "\n"
	if len(rec) != size { // the length grew a digit
		size = len(rec)
		rec = strconv.Itoa(size) + " " + k + "=" + v + "\n"
	}
	return rec
}

// paxRecords formats the records in the order given (order matters for
// repeated keys such as GNU.sparse.offset in sparse format 0.0).
func paxRecords(kv ...string) string {
	if len(kv)%2 != 0 {
		panic("tartest: odd number of PAX key/value strings")
	}
	var b bytes.Buffer
	for i := 0; i < len(kv); i += 2 {
		b.WriteString(paxRecord(kv[i], kv[i+1]))
	}
	return b.String()
}

// member appends a header, its data and zero padding to a whole block.
func member(h *header, data []byte) []byte {
	out := append([]byte{}, h[:]...)
	out = append(out, data...)
	return append(out, make([]byte, padLen(int64(len(data))))...)
}

// padLen returns how many padding bytes follow n bytes of data.
func padLen(n int64) int64 {
	return -n & (blockSize - 1)
}

// paxMember returns a hand-built PAX extended header ('x' or 'g') member
// holding records.
func paxMember(name string, flag byte, records string) []byte {
	h := rawEntry{
		name: name, mode: 0o644, size: int64(len(records)),
		typeflag: flag, magic: magicUSTAR,
	}.block()
	return member(h, []byte(records))
}

// endMarker is the two zero blocks that end a tar archive.
func endMarker() []byte { return make([]byte, 2*blockSize) }

// recordPad returns the zero bytes GNU tar adds after the end marker so that
// a stream of n bytes becomes a whole number of 10 KiB records.
func recordPad(n int) []byte {
	const record = 20 * blockSize
	return make([]byte, (record-n%record)%record)
}
