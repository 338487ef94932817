package tartest

import (
	"archive/tar"
	"fmt"
)

// Malformed returns broken tar streams, deterministic for a seed. A correct
// disassembler must either reject each with an error or round-trip it byte
// for byte; it must never panic, hang, or allocate the size a header claims
// before the bytes arrive. archive/tar returns an error on all of them when
// read to the end (entries and data) except two it takes for a clean end of
// archive: truncated-in-padding and longname-then-eof. A round-tripping
// reader must still keep their bytes, or reject them.
func Malformed(seed int64) []Case {
	var out []Case
	add := func(name, notes string, build func(g *gen) []byte) {
		out = append(out, Case{Name: name, Data: build(newGen(seed, "malformed/"+name)), Notes: notes})
	}
	// good is one valid member, so every case starts as a real layer does.
	good := func(g *gen) []byte {
		return writeMembers(reg("ok/first", 0o644, tar.FormatUSTAR, g.content(g.size(1, 900))))
	}

	add("bad-checksum", "The second header's checksum is off by one. archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/checksum", mode: 0o644, size: 10, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			var sum int64
			copy(h[offChksum:offChksum+8], "        ")
			for _, b := range h {
				sum += int64(b)
			}
			copy(h[offChksum:offChksum+8], fmt.Sprintf("%06o\x00 ", sum+1))
			out = append(out, member(h, g.content(10))...)
			return append(out, endMarker()...)
		})
	add("truncated-file-data", "A header declares 5000 bytes; the stream ends after 2000 of them. "+
		"archive/tar: io.ErrUnexpectedEOF.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/truncated", mode: 0o644, size: 5000, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, h[:]...)
			return append(out, g.content(2000)...)
		})
	add("truncated-in-padding", "All 100 data bytes are there but the stream ends 50 bytes into the "+
		"padding. archive/tar does NOT report this: its next Next returns io.EOF as if the archive ended.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/short-pad", mode: 0o644, size: 100, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, h[:]...)
			out = append(out, g.content(100)...)
			return append(out, make([]byte, 50)...)
		})
	add("truncated-mid-header", "The stream ends 300 bytes into a header block. archive/tar: "+
		"io.ErrUnexpectedEOF.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/half-header", mode: 0o644, size: 10, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			return append(out, h[:300]...)
		})
	add("pax-bad-length", "A PAX record whose length prefix (99) is longer than the record. "+
		"archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			out = append(out, paxMember("bad/PaxHeaders/x", tar.TypeXHeader, "99 path=bad/pax\n")...)
			h := rawEntry{name: "bad/x", mode: 0o644, size: 5, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, member(h, []byte("hello"))...)
			return append(out, endMarker()...)
		})
	add("pax-short-length", "A PAX record whose length prefix (5) ends inside the key, so the record "+
		"is not newline-terminated. archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			out = append(out, paxMember("bad/PaxHeaders/y", tar.TypeXHeader, "5 path=bad/pax\n")...)
			h := rawEntry{name: "bad/y", mode: 0o644, size: 5, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, member(h, []byte("hello"))...)
			return append(out, endMarker()...)
		})
	add("pax-size-not-number", "A PAX 'size' record whose value is not a number. archive/tar: "+
		"tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			out = append(out, paxMember("bad/PaxHeaders/z", tar.TypeXHeader, paxRecord("size", "12abc"))...)
			h := rawEntry{name: "bad/z", mode: 0o644, size: 5, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, member(h, []byte("hello"))...)
			return append(out, endMarker()...)
		})
	add("pax-header-too-big", "A PAX extended header declaring 2 GiB of records, followed by nothing. "+
		"Readers must cap it and not allocate 2 GiB (archive/tar reads at most 1 MiB + 1, here it "+
		"gets io.ErrUnexpectedEOF; past 1 MiB it would give tar.ErrFieldTooLong).",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/PaxHeaders/huge", mode: 0o644, size: 2 << 30, mtime: epoch.Unix(),
				typeflag: tar.TypeXHeader, magic: magicUSTAR}.block()
			out = append(out, h[:]...)
			return append(out, []byte(paxRecord("path", "bad/huge"))...)
		})
	add("absurd-size-octal", "A regular file declaring 077777777777 bytes (8 GiB - 1) in octal; the "+
		"stream holds 100. Readers must not allocate the declared size. archive/tar: "+
		"io.ErrUnexpectedEOF while reading data.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/absurd-octal", mode: 0o644, size: 0o77777777777, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			out = append(out, h[:]...)
			return append(out, g.content(100)...)
		})
	add("absurd-size-base256", "A regular file declaring 2^62 bytes in base-256; the stream holds 100. "+
		"archive/tar: io.ErrUnexpectedEOF while reading data.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/absurd-b256", mode: 0o644, size: 1 << 62, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicGNU, size256: true}.block()
			out = append(out, h[:]...)
			return append(out, g.content(100)...)
		})
	add("negative-size", "A regular file whose base-256 size is -1. archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/negative", mode: 0o644, size: -1, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicGNU, size256: true}.block()
			out = append(out, h[:]...)
			return append(out, endMarker()...)
		})
	add("size-not-octal", "A size field holding '0000012x45' (not octal). archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/not-octal", mode: 0o644, size: 0, mtime: epoch.Unix(),
				typeflag: tar.TypeReg, magic: magicUSTAR}.block()
			h.str(offSize, 12, "0000012x45\x00")
			h.setChecksum()
			out = append(out, h[:]...)
			return append(out, endMarker()...)
		})
	add("sparse-overlapping-map", "Old GNU sparse header whose map entries overlap and run past the "+
		"real size. archive/tar: tar.ErrHeader.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/sparse", mode: 0o644, size: 200, mtime: epoch.Unix(),
				typeflag: tar.TypeGNUSparse, magic: magicGNU}.block()
			h.octal(offGNURealSize, 12, 150)
			h.octal(offGNUSparse, 12, 0)
			h.octal(offGNUSparse+12, 12, 100)
			h.octal(offGNUSparse+24, 12, 50)
			h.octal(offGNUSparse+36, 12, 100)
			h.setChecksum()
			out = append(out, member(h, g.content(200))...)
			return append(out, endMarker()...)
		})
	add("sparse-truncated-ext", "Old GNU sparse header that promises an extension block, and the "+
		"stream ends. archive/tar: io.ErrUnexpectedEOF.",
		func(g *gen) []byte {
			out := good(g)
			h := rawEntry{name: "bad/sparse-ext", mode: 0o644, size: 10, mtime: epoch.Unix(),
				typeflag: tar.TypeGNUSparse, magic: magicGNU}.block()
			h.octal(offGNURealSize, 12, 4096)
			h.octal(offGNUSparse, 12, 0)
			h.octal(offGNUSparse+12, 12, 10)
			h[offGNUExtended] = 1
			h.setChecksum()
			return append(out, h[:]...)
		})
	add("longname-then-eof", "A GNU 'L' long-name member with nothing after it. archive/tar does NOT "+
		"report this: it drops the dangling long name and returns io.EOF.",
		func(g *gen) []byte {
			out := good(g)
			name := "bad/" + string(g.text(200))
			h := rawEntry{name: "././@LongLink", mode: 0o644, size: int64(len(name) + 1),
				typeflag: tar.TypeGNULongName, magic: magicGNU}.block()
			return append(out, member(h, append([]byte(name), 0))...)
		})
	return out
}
