package example

import (
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// Fixed timestamps of the two releases.
var (
	tBase = time.Date(2024, 6, 10, 8, 0, 0, 0, time.UTC)
	tRun1 = time.Date(2024, 6, 28, 14, 2, 11, 0, time.UTC)
	tRun2 = time.Date(2024, 9, 3, 9, 41, 52, 0, time.UTC)
	tApp1 = time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	tApp2 = time.Date(2024, 9, 15, 12, 0, 0, 0, time.UTC)
)

const libDir = "usr/lib/x86_64-linux-gnu"

// elfFile generates a library (exec false) or executable.
func elfFile(label string, size int, exec bool, prefix string) []byte {
	return genProgram(label, size, exec, styleC, prefix).encode()
}

// pointRelease is the recompile of a library for a point release: small
// edits spread through the file.
func pointRelease(label string, size int, prefix, comment string) (old, new []byte) {
	p := genProgram(label, size, false, styleC, prefix)
	q := p.mutate(label, recompile{delFuncs: 0.002, addFuncs: 0.004, editFuncs: 0.015, editStrs: 0.01, addStrs: 0.003, comment: comment})
	return p.encode(), q.encode()
}

type debPkg struct {
	name, version, arch string
	size                int // installed size in KiB
	desc                string
}

func dpkgStatus(pkgs []debPkg) []byte {
	var b strings.Builder
	for _, p := range pkgs {
		r := newRNG("dpkg/" + p.name)
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: %s\nSection: %s\n", p.name, r.pick([]string{"required", "important", "optional"}), r.pick([]string{"libs", "utils", "admin", "shells", "base"}))
		fmt.Fprintf(&b, "Installed-Size: %d\nMaintainer: Debian %s Maintainers <pkg-%s@lists.debian.org>\nArchitecture: %s\n", p.size, capitalize(r.pick(words)), p.name, p.arch)
		fmt.Fprintf(&b, "Version: %s\nDepends: libc6 (>= 2.34)\n", p.version)
		fmt.Fprintf(&b, "Description: %s\n%s", p.desc, paragraph(r, " ", 76))
		b.WriteString("\n")
	}
	return []byte(b.String())
}

func licenseText(name string) string {
	r := newRNG("license/" + name)
	var b strings.Builder
	fmt.Fprintf(&b, "                    %s\n\n", strings.ToUpper(name))
	for i := range r.between(25, 45) {
		fmt.Fprintf(&b, "  %d. ", i)
		b.WriteString(paragraph(r, "  ", 74))
		b.WriteString("\n")
	}
	return b.String()
}

var licenses = []string{"GPL-2", "GPL-3", "LGPL-2.1", "Apache-2.0", "BSD-3-clause"}

func copyrightFile(pkg string) []byte {
	r := newRNG("copyright/" + pkg)
	lic := licenses[r.intn(len(licenses))]
	var b strings.Builder
	fmt.Fprintf(&b, "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: %s\n\n", pkg)
	fmt.Fprintf(&b, "Files: *\nCopyright: %d-%d %s %s\nLicense: %s\n\n", r.between(1990, 2010), r.between(2015, 2023), capitalize(r.pick(words)), capitalize(r.pick(words)), lic)
	if r.chance(0.4) {
		fmt.Fprintf(&b, "License: %s\n%s", lic, licenseText(lic))
	} else {
		fmt.Fprintf(&b, "License: %s\n On Debian systems, the full text of the %s license can be found in\n /usr/share/common-licenses/%s.\n", lic, lic, lic)
	}
	return []byte(b.String())
}

func changelog(pkg, version string, entries int) []byte {
	r := newRNG("changelog/" + pkg + "/" + version)
	var b strings.Builder
	for i := range entries {
		fmt.Fprintf(&b, "%s (%s) bookworm; urgency=medium\n\n", pkg, version)
		for range r.between(1, 4) {
			b.WriteString(paragraph(r, "  * ", 76))
		}
		fmt.Fprintf(&b, "\n -- Debian Maintainer <maint@debian.org>  %s\n\n", tBase.AddDate(0, -i*2, 0).Format(time.RFC1123Z))
		version = fmt.Sprintf("%s~%d", version, i)
	}
	return []byte(b.String())
}

func certificate(i int) string {
	r := newRNG(fmt.Sprintf("cert/%d", i))
	der := make([]byte, r.between(800, 1500))
	r.fill(der)
	copy(der, []byte{0x30, 0x82, byte(len(der) >> 8), byte(len(der)), 0x30, 0x82})
	enc := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	b.WriteString("-----BEGIN CERTIFICATE-----\n")
	for len(enc) > 64 {
		b.WriteString(enc[:64] + "\n")
		enc = enc[64:]
	}
	b.WriteString(enc + "\n-----END CERTIFICATE-----\n")
	return b.String()
}

func certBundle(ids []int) []byte {
	var b strings.Builder
	for _, i := range ids {
		b.WriteString(certificate(i))
	}
	return []byte(b.String())
}

func seq(lo, hi int) []int {
	var s []int
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}

// png returns a PNG-structured file (signature, IHDR, IDAT of
// incompressible bytes, IEND) with valid chunk CRCs.
func png(label string, size int) []byte {
	r := newRNG("png/" + label)
	chunk := func(b []byte, typ string, data []byte) []byte {
		b = be32(b, uint32(len(data)))
		c := append([]byte(typ), data...)
		b = append(b, c...)
		return be32(b, crc32.ChecksumIEEE(c))
	}
	out := []byte("\x89PNG\r\n\x1a\n")
	ihdr := be32(be32(nil, uint32(r.between(32, 1024))), uint32(r.between(32, 1024)))
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	out = chunk(out, "IHDR", ihdr)
	idat := make([]byte, size)
	r.fill(idat)
	out = chunk(out, "IDAT", idat)
	return chunk(out, "IEND", nil)
}

func be32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func opaque(label, magic string, size int) []byte {
	b := make([]byte, size)
	newRNG("opaque/" + label).fill(b)
	copy(b, magic)
	return b
}

// Executable returns a generated x86-64 ELF executable of about size
// bytes, the same for the same label: for tests that need a real-looking
// program (code with calls and RIP-relative operands, symbol tables).
func Executable(label string, size int) []byte { return elfFile(label, size, true, "") }
