package tartest

import (
	"archive/tar"
	"bytes"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Case is one named tar stream.
type Case struct {
	// Name is short, unique within its list, and safe as a file or subtest
	// name.
	Name string
	// Data is the whole stream.
	Data []byte
	// Notes says what the case exercises and anything unusual about how
	// readers treat it.
	Notes string
}

// epoch is the base modification time of generated entries.
var epoch = time.Unix(1700000000, 0)

// gen holds the random source of one case. Each case gets its own source,
// derived from the seed and the case name, so adding or reordering cases
// does not change the bytes of the others.
type gen struct {
	rng *rand.Rand
}

func newGen(seed int64, name string) *gen {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &gen{rng: rand.New(rand.NewPCG(uint64(seed), h.Sum64()))}
}

// random returns n incompressible bytes.
func (g *gen) random(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

var words = strings.Fields(`the of and to in is for on that with as by this be are
from at or an it not which config layer image file system lib usr bin etc share
value true false null error warning info debug start stop return function const
var package import export default static public private void int string bytes`)

// text returns n bytes of compressible, text-like content.
func (g *gen) text(n int) []byte {
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[g.rng.IntN(len(words))])
		if g.rng.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// content returns n bytes that are text or random, chosen at random.
func (g *gen) content(n int) []byte {
	if g.rng.IntN(2) == 0 {
		return g.text(n)
	}
	return g.random(n)
}

// size returns a random size in [lo, hi].
func (g *gen) size(lo, hi int) int { return lo + g.rng.IntN(hi-lo+1) }

// tarFile is one entry written with archive/tar.
type tarFile struct {
	hdr  tar.Header
	data []byte
}

// writeMembers writes files with archive/tar and returns the members
// without an end marker. A write error is a bug in this package.
func writeMembers(files ...tarFile) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = epoch
		}
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeGNUSparse {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			panic("tartest: archive/tar refused " + strconv.Quote(h.Name) + ": " + err.Error())
		}
		if _, err := tw.Write(f.data); err != nil {
			panic("tartest: archive/tar write " + strconv.Quote(h.Name) + ": " + err.Error())
		}
	}
	if err := tw.Flush(); err != nil {
		panic("tartest: archive/tar flush: " + err.Error())
	}
	return buf.Bytes()
}

func reg(name string, mode int64, f tar.Format, data []byte) tarFile {
	return tarFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Format: f,
		Uname: "root", Gname: "root"}, data: data}
}

func dir(name string, mode int64, f tar.Format) tarFile {
	return tarFile{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Format: f,
		Uname: "root", Gname: "root"}}
}

func link(flag byte, name, target string, f tar.Format) tarFile {
	return tarFile{hdr: tar.Header{Typeflag: flag, Name: name, Linkname: target, Mode: 0o777, Format: f,
		Uname: "root", Gname: "root"}}
}

// memberCase builds the members (no end marker) of one case.
type memberCase struct {
	name  string
	notes string
	build func(g *gen) []byte
}

// memberCases are the cases whose members also go into the kitchen sink, in
// kitchen-sink order.
var memberCases = []memberCase{
	{"pax-headers", "PAX ('x') headers written by archive/tar: a 300-byte path that no ustar split can hold, " +
		"a long symlink target (linkpath record), uid/gid above the 7-digit octal limit, a 40-byte uname, " +
		"a UTF-8 path, and free-form records (comment, a vendor key whose value holds spaces, '=' and a newline).",
		buildPAX},
	{"pax-overrides", "Hand-built PAX headers whose records contradict the ustar header that follows: " +
		"'size' is 700 while the header's size field says 0, 'path' and 'uid' differ from the header, " +
		"and an empty 'uname=' record (archive/tar keeps the header value). Data length follows the PAX size. " +
		"PAX header member names in GNU tar's style ('./PaxHeaders/...').",
		buildPAXOverrides},
	{"gnu-long-names", "GNU format from archive/tar: a 150-byte name ('L' member '././@LongLink'), a symlink with a " +
		"200-byte target ('K'), and a hardlink with both a long name and a long target ('L' then 'K').",
		buildGNULong},
	{"ustar-prefix", "ustar names split into prefix (155) + name (100), a name of exactly 100 bytes and a link " +
		"target of exactly 100 bytes (fields filled with no NUL terminator).",
		buildUSTARPrefix},
	{"hardlinks", "Hardlinks ('1', size 0) to a file in the same dir, to one in another dir, a link to a link, " +
		"and a hardlink written before a second file with the same content.",
		buildHardlinks},
	{"symlinks", "Symlinks: relative, absolute, dangling, to a directory, to '.', and one with a target that " +
		"contains spaces.",
		buildSymlinks},
	{"devices", "Character and block devices with major/minor numbers, including a minor of 1048575 (20 bits).",
		buildDevices},
	{"fifos", "Named pipes ('6').", buildFIFOs},
	{"directories", "Directories with sticky, setgid and 0700 modes, deep nesting, and one directory name " +
		"without a trailing slash.",
		buildDirs},
	{"header-only-nonzero-size", "A directory and a fifo whose size fields are non-zero but which are " +
		"followed by no data: POSIX says these types carry no data blocks whatever the size field says, and " +
		"archive/tar reads them that way. A reader that skips 'size' bytes misparses the rest.",
		buildHeaderOnlySize},
	{"xattrs", "PAX xattrs: SCHILY.xattr.user.*, a binary security.capability (vfs_cap_data v2, " +
		"cap_net_bind_service, contains NUL bytes), security.selinux with its trailing NUL, " +
		"trusted.overlay.opaque on a directory, and a bsdtar-style LIBARCHIVE.xattr.* record (base64).",
		buildXattrs},
	{"whiteouts", "OCI/AUFS whiteouts: '.wh.<name>' empty files for deleted files and directories, and " +
		"'.wh..wh..opq' opaque-directory markers.",
		buildWhiteouts},
	{"non-utf8-names", "GNU format with raw non-UTF-8 bytes: Latin-1 and 0xff/0xfe names, a 150-byte " +
		"non-UTF-8 name ('L'), and a symlink with a non-UTF-8 target.",
		buildNonUTF8},
	{"subsecond-mtimes", "PAX mtime/atime/ctime records with nanoseconds, a negative (pre-1970) fractional " +
		"mtime, and an mtime past the 11-digit octal limit (year 2300).",
		buildSubsecond},
	{"pax-global-header", "PAX global headers ('g'): one named 'pax_global_header' with a comment record as " +
		"git archive writes, entries, then a second global header mid-stream.",
		buildGlobal},
	{"duplicate-paths", "The same path written twice with different content and size, and a directory " +
		"written twice with different modes.",
		buildDuplicates},
	{"empty-files", "Regular files of size 0 (header only, no data block), with different modes.",
		buildEmptyFiles},
	{"block-multiple-sizes", "Files of 512, 1024 and 4096 bytes (no padding), next to 1, 511 and 513 bytes.",
		buildBlockMultiples},
	{"base256-fields", "Hand-built GNU headers with base-256 numbers: small size (1000) and uid (1000) " +
		"in base-256, a 2^40 uid and gid, and a negative mtime (-1000) in two's-complement base-256.",
		buildBase256},
	{"nonzero-padding", "Hand-built members whose data padding is not zero: random bytes, and ASCII text. " +
		"archive/tar ignores padding content and reads these without error.",
		buildNonzeroPadding},
	{"header-field-variants", "Hand-built headers with numeric fields formatted as other tars do: leading " +
		"spaces, space terminators, 12-digit mtime with no terminator, a 7-digit checksum with NUL, " +
		"garbage after the NUL of name and linkname, and non-zero bytes in the unused tail of the block.",
		buildFieldVariants},
	{"v7-header", "Hand-built pre-POSIX (V7) headers: no magic, typeflag NUL for a regular file, and a " +
		"directory written as a '\\x00' entry whose name ends in '/'.",
		buildV7},
	{"sparse-oldgnu", "Old GNU sparse ('S') with 3 data fragments and a trailing hole recorded as a " +
		"zero-length entry: 4 entries fit in the header, no extension block.",
		func(g *gen) []byte { return buildOldGNUSparse(g, "sparse/oldgnu-small", 4, true) }},
	{"sparse-oldgnu-extended", "Old GNU sparse ('S') with 30 map entries: 4 in the header, 21 in a first " +
		"extension block, 5 in a second (isextended flags at 482 and 504).",
		func(g *gen) []byte { return buildOldGNUSparse(g, "sparse/oldgnu-extended", 30, true) }},
	{"sparse-oldgnu-unaligned", "Old GNU sparse ('S') whose data fragments are not whole blocks (e.g. 257 " +
		"bytes). The stream layout is unambiguous (data is the sum of the fragment sizes) but the file " +
		"content is not: archive/tar and libarchive read the fragments packed end to end, GNU tar 1.34 " +
		"starts each fragment at a block boundary. The other sparse cases use block-sized fragments, " +
		"on which all three agree.",
		func(g *gen) []byte { return buildOldGNUSparse(g, "sparse/oldgnu-unaligned", 4, false) }},
	{"sparse-pax-0.0", "PAX GNU.sparse 0.0: repeated GNU.sparse.offset / GNU.sparse.numbytes records.",
		buildPAXSparse00},
	{"sparse-pax-0.1", "PAX GNU.sparse 0.1: GNU.sparse.map with comma-separated offset,size pairs, " +
		"GNU.sparse.size and numblocks, header name 'GNUSparseFile.0/...', real name in GNU.sparse.name.",
		buildPAXSparse01},
	{"sparse-pax-1.0", "PAX GNU.sparse 1.0: major/minor/name/realsize records; the sparse map is a " +
		"decimal text block at the start of the data, padded to 512, then the fragments.",
		buildPAXSparse10},
}

// smallTail is a little regular file used to give the ending cases content.
func smallTail(g *gen, name string, size int) []byte {
	return writeMembers(reg(name, 0o644, tar.FormatUSTAR, g.content(size)))
}

// Cases returns every tricky case, deterministic for a seed.
func Cases(seed int64) []Case {
	var out []Case
	var sink []byte
	for _, mc := range memberCases {
		m := mc.build(newGen(seed, mc.name))
		sink = append(sink, m...)
		out = append(out, Case{Name: mc.name, Data: append(m, endMarker()...), Notes: mc.notes})
	}

	out = append(out,
		Case{Name: "empty-layer", Data: endMarker(),
			Notes: "Just the end marker: two zero blocks, as an empty Docker layer."},
		Case{Name: "zero-length-stream", Data: []byte{},
			Notes: "A stream of zero bytes. archive/tar returns io.EOF at once."},
	)

	g := newGen(seed, "gnu-record-padding")
	m := smallTail(g, "etc/padded", 700)
	d := append(m, endMarker()...)
	out = append(out, Case{Name: "gnu-record-padding", Data: append(d, recordPad(len(d))...),
		Notes: "End marker followed by zero blocks up to a 10 KiB record, as GNU tar's default blocking factor 20 writes."})

	g = newGen(seed, "extra-zero-blocks")
	m = smallTail(g, "etc/extra", 100)
	out = append(out, Case{Name: "extra-zero-blocks", Data: append(m, make([]byte, 5*blockSize)...),
		Notes: "Five zero blocks after the last member (end marker plus three more, not a whole record)."})

	g = newGen(seed, "no-end-marker")
	m = smallTail(g, "etc/no-eof", 300)
	out = append(out, Case{Name: "no-end-marker", Data: m,
		Notes: "The stream ends right after the last member's padding: no zero blocks. archive/tar treats " +
			"EOF at a block boundary as the end."})

	g = newGen(seed, "no-end-marker-unpadded")
	m = smallTail(g, "etc/no-eof-exact", 1024)
	out = append(out, Case{Name: "no-end-marker-unpadded", Data: m,
		Notes: "The stream ends right after the last data byte; the file is 1024 bytes so no padding is due."})

	g = newGen(seed, "single-zero-block")
	m = smallTail(g, "etc/one-zero", 10)
	out = append(out, Case{Name: "single-zero-block", Data: append(m, make([]byte, blockSize)...),
		Notes: "The stream ends with one zero block instead of two (some writers truncate the marker). " +
			"archive/tar accepts it as the end."})

	g = newGen(seed, "data-after-end-marker")
	m = smallTail(g, "etc/before-marker", 200)
	m = append(m, endMarker()...)
	m = append(m, smallTail(g, "etc/after-marker", 300)...) // a stale member, as left by tar --delete
	out = append(out, Case{Name: "data-after-end-marker", Data: append(m, g.random(100)...),
		Notes: "Non-zero bytes after the end marker: a complete stale member and 100 random bytes (not a " +
			"whole block). Readers stop at the marker (archive/tar sees one entry); a byte-exact " +
			"round trip must keep the trailing bytes."})

	d = append(sink, endMarker()...)
	out = append(out, Case{Name: "kitchen-sink", Data: append(d, recordPad(len(d))...),
		Notes: "The members of every case except the stream-ending ones (empty-layer through " +
			"data-after-end-marker, which differ only in how the stream ends), concatenated in order " +
			"(paths repeat between cases), then the end marker and GNU record padding to 10 KiB."})
	return out
}

func buildPAX(g *gen) []byte {
	long := "pax/" + strings.Repeat("d", 120) + "/" + strings.Repeat("f", 175)
	f1 := reg(long, 0o644, tar.FormatPAX, g.content(g.size(1, 3000)))
	f2 := reg("pax/big-ids", 0o600, tar.FormatPAX, g.content(g.size(1, 600)))
	f2.hdr.Uid, f2.hdr.Gid = 3000000, 4000001
	f2.hdr.Uname = "a-user-name-longer-than-thirty-two-bytes"
	f3 := reg("pax/ünïcødé-名前.txt", 0o644, tar.FormatPAX, g.text(g.size(1, 200)))
	f3.hdr.PAXRecords = map[string]string{
		"comment":         "written by skiff tartest",
		"SKIFF.note":      "spaces, = signs and\na newline",
		"SKIFF.empty-ish": " ",
	}
	sl := link(tar.TypeSymlink, "pax/long-target", "/"+strings.Repeat("t", 140)+"/target", tar.FormatPAX)
	return writeMembers(dir("pax/", 0o755, tar.FormatPAX), f1, f2, f3, sl)
}

func buildPAXOverrides(g *gen) []byte {
	data := g.content(700)
	var out []byte
	out = append(out, paxMember("./PaxHeaders/ustar-name", tar.TypeXHeader, paxRecords(
		"path", "pax-override/real-name-from-pax",
		"size", "700",
		"uid", "1234",
		"uname", "",
	))...)
	h := rawEntry{name: "pax-override/ustar-name", mode: 0o644, uid: 0, size: 0, mtime: epoch.Unix(),
		typeflag: tar.TypeReg, magic: magicUSTAR, uname: "root", gname: "root"}.block()
	return append(out, member(h, data)...)
}

func buildGNULong(g *gen) []byte {
	longName := "gnu/" + strings.Repeat("n", 146)
	longTarget := "../" + strings.Repeat("t", 197)
	return writeMembers(
		reg(longName, 0o644, tar.FormatGNU, g.content(g.size(0, 900))),
		link(tar.TypeSymlink, "gnu/symlink-long-target", longTarget, tar.FormatGNU),
		link(tar.TypeLink, "gnu/"+strings.Repeat("h", 130), longName, tar.FormatGNU),
	)
}

func buildUSTARPrefix(g *gen) []byte {
	prefixed := "ustar/" + strings.Repeat("p", 120) + "/" + strings.Repeat("n", 90)
	exact := "ustar/" + strings.Repeat("x", 94) // exactly 100 bytes
	return writeMembers(
		reg(prefixed, 0o644, tar.FormatUSTAR, g.content(g.size(1, 1500))),
		reg(exact, 0o644, tar.FormatUSTAR, g.content(g.size(1, 100))),
		link(tar.TypeSymlink, "ustar/link-100", strings.Repeat("l", 100), tar.FormatUSTAR),
	)
}

func buildHardlinks(g *gen) []byte {
	data := g.content(g.size(1, 2000))
	return writeMembers(
		dir("hl/", 0o755, tar.FormatUSTAR),
		reg("hl/original", 0o755, tar.FormatUSTAR, data),
		link(tar.TypeLink, "hl/link1", "hl/original", tar.FormatUSTAR),
		dir("hl/sub/", 0o755, tar.FormatUSTAR),
		link(tar.TypeLink, "hl/sub/link2", "hl/original", tar.FormatUSTAR),
		link(tar.TypeLink, "hl/link-to-link", "hl/link1", tar.FormatUSTAR),
		reg("hl/copy-not-link", 0o755, tar.FormatUSTAR, data),
	)
}

func buildSymlinks(*gen) []byte {
	f := tar.FormatUSTAR
	return writeMembers(
		dir("sl/", 0o755, f),
		link(tar.TypeSymlink, "sl/relative", "../lib/libfoo.so.1", f),
		link(tar.TypeSymlink, "sl/absolute", "/etc/alternatives/editor", f),
		link(tar.TypeSymlink, "sl/dangling", "does/not/exist", f),
		link(tar.TypeSymlink, "sl/to-dir", "/usr/share", f),
		link(tar.TypeSymlink, "sl/dot", ".", f),
		link(tar.TypeSymlink, "sl/spaces", "a target with spaces", f),
	)
}

func buildDevices(*gen) []byte {
	dev := func(flag byte, name string, major, minor int64) tarFile {
		return tarFile{hdr: tar.Header{Typeflag: flag, Name: name, Mode: 0o666, Devmajor: major,
			Devminor: minor, Format: tar.FormatUSTAR, Uname: "root", Gname: "disk"}}
	}
	return writeMembers(
		dir("dev/", 0o755, tar.FormatUSTAR),
		dev(tar.TypeChar, "dev/null", 1, 3),
		dev(tar.TypeChar, "dev/zero", 1, 5),
		dev(tar.TypeBlock, "dev/sda", 8, 0),
		dev(tar.TypeBlock, "dev/loop7", 7, 7),
		dev(tar.TypeChar, "dev/big-minor", 259, 1048575),
	)
}

func buildFIFOs(*gen) []byte {
	fifo := func(name string, mode int64) tarFile {
		return tarFile{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: mode,
			Format: tar.FormatUSTAR, Uname: "root", Gname: "root"}}
	}
	return writeMembers(fifo("run/initctl", 0o600), fifo("run/other-fifo", 0o644))
}

func buildDirs(*gen) []byte {
	f := tar.FormatUSTAR
	return writeMembers(
		dir("d/", 0o755, f),
		dir("d/tmp/", 0o1777, f),
		dir("d/shared/", 0o2775, f),
		dir("d/private/", 0o700, f),
		dir("d/a/b/c/d/e/f/g/", 0o755, f),
		dir("d/no-trailing-slash", 0o755, f),
	)
}

func buildHeaderOnlySize(*gen) []byte {
	d := rawEntry{name: "hos/dir-with-size/", mode: 0o755, size: 4096, mtime: epoch.Unix(),
		typeflag: tar.TypeDir, magic: magicUSTAR, uname: "root", gname: "root"}.block()
	f := rawEntry{name: "hos/fifo-with-size", mode: 0o644, size: 1000, mtime: epoch.Unix(),
		typeflag: tar.TypeFifo, magic: magicUSTAR, uname: "root", gname: "root"}.block()
	out := append([]byte{}, d[:]...)
	return append(out, f[:]...)
}

// capNetBindService is a vfs_cap_data revision 2 value granting
// cap_net_bind_service (bit 10) permitted and effective.
var capNetBindService = string([]byte{
	0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
	0x00, 0x04, 0x00, 0x00, // permitted[0]
	0x00, 0x00, 0x00, 0x00, // inheritable[0]
	0x00, 0x00, 0x00, 0x00, // permitted[1]
	0x00, 0x00, 0x00, 0x00, // inheritable[1]
})

func buildXattrs(g *gen) []byte {
	f := tar.FormatPAX
	bin := reg("xattr/bin/server", 0o755, f, g.random(g.size(1, 1200)))
	bin.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.security.capability": capNetBindService,
		"SCHILY.xattr.security.selinux":    "system_u:object_r:bin_t:s0\x00",
	}
	txt := reg("xattr/notes.txt", 0o644, f, g.text(g.size(1, 300)))
	txt.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.comment":      "hello, xattr",
		"SCHILY.xattr.user.empty":        "",
		"LIBARCHIVE.xattr.user.mimetype": base64.StdEncoding.EncodeToString([]byte("text/plain")),
		"SCHILY.xattr.user.mimetype":     "text/plain",
	}
	d := dir("xattr/opaque/", 0o755, f)
	d.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
	return writeMembers(dir("xattr/", 0o755, f), bin, txt, d)
}

func buildWhiteouts(g *gen) []byte {
	f := tar.FormatUSTAR
	wh := func(name string) tarFile { return reg(name, 0, f, nil) }
	return writeMembers(
		dir("app/", 0o755, f),
		wh("app/.wh.removed.txt"),
		wh("app/.wh.removed-dir"),
		dir("app/cache/", 0o755, f),
		wh("app/cache/.wh..wh..opq"),
		reg("app/cache/new-entry", 0o644, f, g.text(g.size(1, 100))),
		wh(".wh..wh..opq"),
	)
}

func buildNonUTF8(g *gen) []byte {
	f := tar.FormatGNU
	return writeMembers(
		dir("raw/", 0o755, f),
		reg("raw/caf\xe9-latin1.txt", 0o644, f, g.text(g.size(1, 200))),
		reg("raw/\xff\xfe-bom-like", 0o644, f, g.content(g.size(0, 200))),
		reg("raw/"+strings.Repeat("\xe9", 150), 0o644, f, g.content(g.size(1, 200))),
		link(tar.TypeSymlink, "raw/link-\x80", "target-\xc3\x28-invalid", f),
	)
}

func buildSubsecond(g *gen) []byte {
	f := tar.FormatPAX
	a := reg("time/nanos", 0o644, f, g.content(g.size(1, 300)))
	a.hdr.ModTime = time.Unix(1700000000, 123456789)
	a.hdr.AccessTime = time.Unix(1700000001, 1)
	a.hdr.ChangeTime = time.Unix(1700000002, 999999999)
	b := reg("time/pre-1970", 0o644, f, g.content(g.size(1, 300)))
	b.hdr.ModTime = time.Unix(-1, 500000000)
	c := reg("time/year-2300", 0o644, f, g.content(g.size(1, 300)))
	c.hdr.ModTime = time.Date(2300, 1, 1, 0, 0, 0, 250000000, time.UTC)
	return writeMembers(dir("time/", 0o755, f), a, b, c)
}

func buildGlobal(g *gen) []byte {
	g1 := tarFile{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header",
		Format: tar.FormatPAX, PAXRecords: map[string]string{
			"comment": "0123456789abcdef0123456789abcdef01234567",
		}}}
	g2 := tarFile{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Format: tar.FormatPAX,
		PAXRecords: map[string]string{"comment": "second global header", "SKIFF.global": "1"}}}
	return writeMembers(g1,
		reg("global/a", 0o644, tar.FormatPAX, g.content(g.size(1, 300))),
		g2,
		reg("global/b", 0o644, tar.FormatPAX, g.content(g.size(1, 300))),
	)
}

func buildDuplicates(g *gen) []byte {
	f := tar.FormatUSTAR
	return writeMembers(
		dir("dup/", 0o755, f),
		reg("dup/config", 0o644, f, g.text(g.size(100, 400))),
		reg("dup/other", 0o644, f, g.text(g.size(1, 50))),
		reg("dup/config", 0o600, f, g.content(g.size(500, 1400))),
		dir("dup/", 0o700, f),
	)
}

func buildEmptyFiles(*gen) []byte {
	f := tar.FormatUSTAR
	return writeMembers(
		reg("empty/a", 0o644, f, nil),
		reg("empty/b", 0o755, f, nil),
		reg("empty/c", 0o400, f, []byte{}),
	)
}

func buildBlockMultiples(g *gen) []byte {
	f := tar.FormatUSTAR
	var files []tarFile
	for _, n := range []int{512, 1, 1024, 511, 4096, 513} {
		files = append(files, reg("blocks/size-"+strconv.Itoa(n), 0o644, f, g.content(n)))
	}
	return writeMembers(files...)
}

func buildBase256(g *gen) []byte {
	var out []byte
	h := rawEntry{name: "b256/size-and-uid", mode: 0o644, uid: 1000, gid: 1000, size: 1000,
		mtime: epoch.Unix(), typeflag: tar.TypeReg, magic: magicGNU, uname: "user", gname: "user",
		size256: true, uid256: true}.block()
	out = append(out, member(h, g.content(1000))...)
	h = rawEntry{name: "b256/huge-ids", mode: 0o644, uid: 1 << 40, gid: 1<<40 + 1, size: 37,
		mtime: epoch.Unix(), typeflag: tar.TypeReg, magic: magicGNU, uid256: true, gid256: true}.block()
	out = append(out, member(h, g.content(37))...)
	h = rawEntry{name: "b256/negative-mtime", mode: 0o644, size: 3, mtime: -1000,
		typeflag: tar.TypeReg, magic: magicGNU, mtime256: true}.block()
	return append(out, member(h, []byte("old"))...)
}

func buildNonzeroPadding(g *gen) []byte {
	var out []byte
	data := g.content(100)
	h := rawEntry{name: "pad/random", mode: 0o644, size: 100, mtime: epoch.Unix(),
		typeflag: tar.TypeReg, magic: magicUSTAR}.block()
	out = append(out, h[:]...)
	out = append(out, data...)
	out = append(out, g.random(int(padLen(100)))...)

	data = g.text(1000)
	h = rawEntry{name: "pad/text", mode: 0o644, size: 1000, mtime: epoch.Unix(),
		typeflag: tar.TypeReg, magic: magicUSTAR}.block()
	out = append(out, h[:]...)
	out = append(out, data...)
	pad := bytes.Repeat([]byte("PADDING!"), 8)[:padLen(1000)]
	return append(out, pad...)
}

func buildFieldVariants(g *gen) []byte {
	data := g.content(1000)
	var h header
	h.str(offName, lenName, "fields/variants\x00junk-after-nul")
	h.str(offMode, 8, "   644 \x00") // leading spaces, space then NUL
	h.str(offUID, 8, "     0 ")      // no NUL at all
	h.str(offGID, 8, "0000000\x00")
	h.str(offSize, 12, "00000001750 ")  // space terminator
	h.str(offMtime, 12, "014524770400") // 12 digits, no terminator
	h[offTypeflag] = tar.TypeReg
	h.str(offLinkname, 100, "\x00linkname garbage after a leading NUL")
	h.str(offMagic, 8, magicUSTAR)
	h.str(offUname, 32, "root\x00xx")
	h.str(offGname, 32, "root")
	h.str(offPrefix, 155, "")
	copy(h[500:], "tail-junk!!!") // the 12 unused bytes of a ustar block
	copy(h[offChksum:offChksum+8], "        ")
	var sum int64
	for _, b := range h {
		sum += int64(b)
	}
	copy(h[offChksum:offChksum+8], fmt.Sprintf("%07o\x00", sum)) // 7 digits + NUL, as BSD tars write
	return member(&h, data)
}

func buildV7(g *gen) []byte {
	var out []byte
	data := g.content(g.size(1, 700))
	h := rawEntry{name: "v7/file", mode: 0o644, uid: 1, gid: 1, size: int64(len(data)),
		mtime: epoch.Unix(), typeflag: 0}.block()
	out = append(out, member(h, data)...)
	h = rawEntry{name: "v7/dir/", mode: 0o755, mtime: epoch.Unix(), typeflag: 0}.block()
	return append(out, h[:]...)
}

// fragment is one stored data range of a sparse file.
type fragment struct{ off, n int64 }

// sparseLayout returns n map entries over a file: n-1 data fragments with
// holes between them, then a zero-length entry at the end of the file,
// which is how GNU tar records a trailing hole.
//
// With aligned set, every data fragment but the last is a whole number of
// blocks, as GNU tar writes them. GNU tar's reader (1.34) needs that: it
// starts each fragment's data at a block boundary, while archive/tar and
// libarchive read the fragments packed end to end. With aligned fragments
// all three agree.
func sparseLayout(g *gen, n int, aligned bool) (frags []fragment, realSize int64) {
	var pos int64
	for i := 0; i < n-1; i++ {
		pos += int64(g.size(1, 8)) * 4096 // hole
		size := int64(g.size(1, 600))
		if aligned && i < n-2 {
			size = int64(g.size(1, 3)) * blockSize
		}
		frags = append(frags, fragment{pos, size})
		pos += size
	}
	pos += int64(g.size(1, 4)) * 4096
	frags = append(frags, fragment{pos, 0})
	return frags, pos
}

// sparseData returns the concatenated stored bytes of frags.
func sparseData(g *gen, frags []fragment) []byte {
	var b []byte
	for _, f := range frags {
		b = append(b, g.content(int(f.n))...)
	}
	return b
}

func buildOldGNUSparse(g *gen, name string, entries int, aligned bool) []byte {
	frags, realSize := sparseLayout(g, entries, aligned)
	data := sparseData(g, frags)
	h := rawEntry{name: name, mode: 0o644, size: int64(len(data)), mtime: epoch.Unix(),
		typeflag: tar.TypeGNUSparse, magic: magicGNU, uname: "root", gname: "root"}.block()
	h.octal(offGNURealSize, 12, realSize)
	for i := 0; i < gnuSparseInHdr && i < len(frags); i++ {
		h.octal(offGNUSparse+24*i, 12, frags[i].off)
		h.octal(offGNUSparse+24*i+12, 12, frags[i].n)
	}
	rest := frags[min(gnuSparseInHdr, len(frags)):]
	if len(rest) > 0 {
		h[offGNUExtended] = 1
	}
	h.setChecksum()
	out := append([]byte{}, h[:]...)
	for len(rest) > 0 {
		var ext header
		n := min(gnuSparseInExt, len(rest))
		for i := 0; i < n; i++ {
			ext.octal(24*i, 12, rest[i].off)
			ext.octal(24*i+12, 12, rest[i].n)
		}
		rest = rest[n:]
		if len(rest) > 0 {
			ext[offGNUExtFlagExt] = 1
		}
		out = append(out, ext[:]...)
	}
	out = append(out, data...)
	return append(out, make([]byte, padLen(int64(len(data))))...)
}

// paxSparseMember builds a PAX-sparse member: an 'x' header with records,
// then a ustar header named hdrName whose size is len(data).
func paxSparseMember(hdrName, records string, data []byte) []byte {
	out := paxMember("sparse/PaxHeaders/"+hdrName[strings.LastIndex(hdrName, "/")+1:], tar.TypeXHeader, records)
	h := rawEntry{name: hdrName, mode: 0o644, size: int64(len(data)), mtime: epoch.Unix(),
		typeflag: tar.TypeReg, magic: magicUSTAR, uname: "root", gname: "root"}.block()
	return append(out, member(h, data)...)
}

func buildPAXSparse00(g *gen) []byte {
	frags, realSize := sparseLayout(g, 5, true)
	kv := []string{
		"GNU.sparse.size", strconv.FormatInt(realSize, 10),
		"GNU.sparse.numblocks", strconv.Itoa(len(frags)),
	}
	for _, f := range frags {
		kv = append(kv, "GNU.sparse.offset", strconv.FormatInt(f.off, 10),
			"GNU.sparse.numbytes", strconv.FormatInt(f.n, 10))
	}
	kv = append(kv, "GNU.sparse.name", "sparse/pax-0.0")
	return paxSparseMember("sparse/GNUSparseFile.0/pax-0.0", paxRecords(kv...), sparseData(g, frags))
}

func buildPAXSparse01(g *gen) []byte {
	frags, realSize := sparseLayout(g, 6, true)
	var m []string
	for _, f := range frags {
		m = append(m, strconv.FormatInt(f.off, 10), strconv.FormatInt(f.n, 10))
	}
	recs := paxRecords(
		"GNU.sparse.size", strconv.FormatInt(realSize, 10),
		"GNU.sparse.numblocks", strconv.Itoa(len(frags)),
		"GNU.sparse.map", strings.Join(m, ","),
		"GNU.sparse.name", "sparse/pax-0.1",
	)
	return paxSparseMember("sparse/GNUSparseFile.0/pax-0.1", recs, sparseData(g, frags))
}

func buildPAXSparse10(g *gen) []byte {
	frags, realSize := sparseLayout(g, 40, true)
	var m bytes.Buffer
	m.WriteString(strconv.Itoa(len(frags)) + "\n")
	for _, f := range frags {
		m.WriteString(strconv.FormatInt(f.off, 10) + "\n" + strconv.FormatInt(f.n, 10) + "\n")
	}
	m.Write(make([]byte, padLen(int64(m.Len()))))
	data := append(m.Bytes(), sparseData(g, frags)...)
	recs := paxRecords(
		"GNU.sparse.major", "1",
		"GNU.sparse.minor", "0",
		"GNU.sparse.name", "sparse/pax-1.0",
		"GNU.sparse.realsize", strconv.FormatInt(realSize, 10),
	)
	return paxSparseMember("sparse/GNUSparseFile.0/pax-1.0", recs, data)
}
