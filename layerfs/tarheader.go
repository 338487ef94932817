package layerfs

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	blockSize = 512
	// maxMetaSize caps PAX data and GNU long names, as Go's archive/tar does.
	maxMetaSize = 1 << 20
	// maxGroupSize caps one entry's header group (metadata blocks, main
	// header, sparse extension blocks).
	maxGroupSize = 8 << 20
)

// Tar type flags skiff cares about.
const (
	typeReg      = '0'
	typeRegA     = '\x00'
	typeLink     = '1'
	typeSymlink  = '2'
	typeChar     = '3'
	typeBlock    = '4'
	typeDir      = '5'
	typeFifo     = '6'
	typeCont     = '7'
	typePAX      = 'x'
	typePAXGlob  = 'g'
	typeLongName = 'L'
	typeLongLink = 'K'
	typeGNUSpars = 'S'
)

// Entry is one tar member as an engine sees it, parsed from its header group.
type Entry struct {
	Name     string // path, after PAX and GNU long-name records
	Linkname string // hard or symbolic link target
	Type     byte   // tar typeflag
	Mode     int64
	UID, GID int64
	ModTime  time.Time
	// Size is the file's logical size (for sparse entries the expanded size).
	Size int64
	// DataSize is the length of the data area in the archive (the payload).
	DataSize int64
	// Sparse is set for old GNU 'S' entries and PAX GNU.sparse.* entries;
	// their payload is the archive's stored form, not the file content.
	Sparse bool
	// Xattrs holds PAX SCHILY.xattr.* records.
	Xattrs map[string]string
}

// IsRegular reports whether the entry is a regular file (its payload is the
// file's content unless Sparse).
func (e *Entry) IsRegular() bool {
	return e.Type == typeReg || e.Type == typeRegA || e.Type == typeCont || e.Type == typeGNUSpars
}

// isMetaType reports whether a header of this type describes the next header.
func isMetaType(t byte) bool {
	return t == typePAX || t == typeLongName || t == typeLongLink
}

// isHeaderOnlyType reports whether entries of this type have no data area,
// whatever their size field says (archive/tar's rule).
func isHeaderOnlyType(t byte) bool {
	switch t {
	case typeLink, typeSymlink, typeChar, typeBlock, typeDir, typeFifo:
		return true
	}
	return false
}

func isZeroBlock(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkChecksum verifies a header block's checksum (unsigned or signed sum,
// as historic tars used either).
func checkChecksum(b []byte) error {
	want, err := parseNumeric(b[148:156])
	if err != nil {
		return fmt.Errorf("checksum field: %w", err)
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	if want != unsigned && want != signed {
		return fmt.Errorf("header checksum is %d, header sums to %d", want, unsigned)
	}
	return nil
}

// parseNumeric parses a tar numeric field: octal ASCII padded with spaces or
// NULs, or base-256 (two's complement, so it may be negative) when the high
// bit of the first byte is set.
func parseNumeric(b []byte) (int64, error) {
	if len(b) > 0 && b[0]&0x80 != 0 {
		neg := b[0]&0x40 != 0
		var x uint64
		for i, c := range b {
			if neg {
				c ^= 0xff // two's complement: invert, add one at the end
			}
			if i == 0 {
				c &= 0x7f
			}
			if x>>56 != 0 {
				return 0, fmt.Errorf("base-256 number overflows 64 bits")
			}
			x = x<<8 | uint64(c)
		}
		if x >= 1<<63 {
			return 0, fmt.Errorf("base-256 number overflows 64 bits")
		}
		if neg {
			return -int64(x) - 1, nil
		}
		return int64(x), nil
	}
	s := strings.Trim(string(b), " \x00")
	if s == "" {
		return 0, nil
	}
	x, err := strconv.ParseUint(s, 8, 63)
	if err != nil {
		return 0, fmt.Errorf("bad octal number %q", s)
	}
	return int64(x), nil
}

// parseSize parses a size field, which must not be negative.
func parseSize(b []byte) (int64, error) {
	n, err := parseNumeric(b)
	if err == nil && n < 0 {
		err = fmt.Errorf("negative size %d", n)
	}
	return n, err
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// parsePAX parses PAX extended header records ("%d %s=%s\n").
func parsePAX(data []byte) (map[string]string, error) {
	recs := make(map[string]string)
	for len(data) > 0 {
		// Data is padded with NULs to the block; archive/tar stops at them too.
		if data[0] == 0 {
			break
		}
		sp := bytes.IndexByte(data, ' ')
		if sp <= 0 || sp > 20 {
			return nil, fmt.Errorf("PAX record without a length")
		}
		n, err := strconv.ParseUint(string(data[:sp]), 10, 31)
		if err != nil || int(n) <= sp+1 || int(n) > len(data) {
			return nil, fmt.Errorf("PAX record with bad length %q", data[:sp])
		}
		rec := data[sp+1 : n]
		data = data[n:]
		if len(rec) == 0 || rec[len(rec)-1] != '\n' {
			return nil, fmt.Errorf("PAX record not ended by a newline")
		}
		rec = rec[:len(rec)-1]
		eq := bytes.IndexByte(rec, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("PAX record without a key")
		}
		recs[string(rec[:eq])] = string(rec[eq+1:])
	}
	return recs, nil
}

// metaDataLen returns the length, padding included, of the data that follows
// a metadata header (PAX x/g, GNU L/K) inside a header group.
func metaDataLen(hdr []byte) (size, padded int64, err error) {
	size, err = parseSize(hdr[124:136])
	if err != nil {
		return 0, 0, fmt.Errorf("size field: %w", err)
	}
	if size > maxMetaSize {
		return 0, 0, fmt.Errorf("metadata record of %d bytes exceeds %d", size, maxMetaSize)
	}
	return size, roundBlock(size), nil
}

func roundBlock(n int64) int64 { return (n + blockSize - 1) &^ (blockSize - 1) }

// gnuSparseExtended reports whether an old GNU sparse header (or an
// extension block) is followed by another extension block.
func gnuSparseExtended(hdr []byte, ext bool) bool {
	if ext {
		return hdr[504] != 0
	}
	return hdr[482] != 0
}

// parseGroup parses a complete header group (a multiple of 512 bytes, as
// produced by the scanner) into an Entry.
func parseGroup(g []byte) (Entry, error) {
	var e Entry
	var pax map[string]string
	var longName, longLink string
	hasLongName, hasLongLink := false, false
	for len(g) >= blockSize {
		hdr := g[:blockSize]
		g = g[blockSize:]
		if err := checkChecksum(hdr); err != nil {
			return e, err
		}
		t := hdr[156]
		if isMetaType(t) || t == typePAXGlob {
			size, padded, err := metaDataLen(hdr)
			if err != nil {
				return e, err
			}
			if int64(len(g)) < padded {
				return e, fmt.Errorf("header group ends inside a %q record", t)
			}
			data := g[:size]
			g = g[padded:]
			switch t {
			case typePAX, typePAXGlob:
				recs, err := parsePAX(data)
				if err != nil {
					return e, err
				}
				if t == typePAXGlob {
					e.Type = t
					e.Name = cString(hdr[0:100])
					e.Xattrs = paxXattrs(recs)
					if len(g) != 0 {
						return e, fmt.Errorf("global PAX header followed by more headers in one group")
					}
					return e, nil
				}
				if pax == nil {
					pax = recs
				} else {
					for k, v := range recs {
						pax[k] = v
					}
				}
			case typeLongName:
				longName, hasLongName = cString(data), true
			case typeLongLink:
				longLink, hasLongLink = cString(data), true
			}
			continue
		}
		// The main header.
		if err := parseMain(&e, hdr); err != nil {
			return e, err
		}
		if t == typeGNUSpars {
			ext := gnuSparseExtended(hdr, false)
			for ext {
				if len(g) < blockSize {
					return e, fmt.Errorf("sparse header group ends before its extension blocks")
				}
				ext = gnuSparseExtended(g[:blockSize], true)
				g = g[blockSize:]
			}
		}
		if len(g) != 0 {
			return e, fmt.Errorf("%d bytes after the main header of a header group", len(g))
		}
		if hasLongName {
			e.Name = longName
		}
		if hasLongLink {
			e.Linkname = longLink
		}
		if err := applyPAX(&e, pax); err != nil {
			return e, err
		}
		if e.Type == typeRegA { // legacy archives mark directories by a trailing slash
			if strings.HasSuffix(e.Name, "/") {
				e.Type = typeDir
			} else {
				e.Type = typeReg
			}
		}
		if !e.Sparse {
			e.Size = e.DataSize // what the header declares
		}
		if isHeaderOnlyType(e.Type) {
			e.DataSize = 0 // archive/tar reads no data for these, whatever the size says
		}
		return e, nil
	}
	return e, fmt.Errorf("header group has no main header")
}

func parseMain(e *Entry, hdr []byte) error {
	var err error
	field := func(name string, b []byte) int64 {
		if err != nil {
			return 0
		}
		v, ferr := parseNumeric(b)
		if ferr != nil {
			err = fmt.Errorf("%s field: %w", name, ferr)
		}
		return v
	}
	e.Type = hdr[156]
	e.Mode = field("mode", hdr[100:108])
	e.UID = field("uid", hdr[108:116])
	e.GID = field("gid", hdr[116:124])
	e.DataSize = field("size", hdr[124:136])
	if err == nil && e.DataSize < 0 {
		err = fmt.Errorf("negative size %d", e.DataSize)
	}
	e.ModTime = time.Unix(field("mtime", hdr[136:148]), 0).UTC()
	if err != nil {
		return err
	}
	name := cString(hdr[0:100])
	e.Linkname = cString(hdr[157:257])
	magic := string(hdr[257:263])
	switch {
	case magic == "ustar\x00": // POSIX ustar: prefix field
		if prefix := cString(hdr[345:500]); prefix != "" {
			name = prefix + "/" + name
		}
	case magic == "ustar " && e.Type == typeGNUSpars: // GNU: real size of a sparse file
		e.Sparse = true
		real, rerr := parseSize(hdr[483:495])
		if rerr != nil {
			return fmt.Errorf("sparse real size field: %w", rerr)
		}
		e.Size = real
	}
	e.Name = name
	return nil
}

func paxXattrs(recs map[string]string) map[string]string {
	var x map[string]string
	for k, v := range recs {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if x == nil {
				x = make(map[string]string)
			}
			x[name] = v
		}
	}
	return x
}

func applyPAX(e *Entry, recs map[string]string) error {
	if recs == nil {
		return nil
	}
	num := func(k string) (int64, bool, error) {
		v, ok := recs[k]
		if !ok {
			return 0, false, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, true, fmt.Errorf("PAX %s=%q is not a size", k, v)
		}
		return n, true, nil
	}
	if v, ok := recs["path"]; ok {
		e.Name = v
	}
	if v, ok := recs["linkpath"]; ok {
		e.Linkname = v
	}
	if n, ok, err := num("size"); err != nil {
		return err
	} else if ok {
		e.DataSize = n
	}
	for _, k := range []string{"uid", "gid"} {
		if n, ok, err := num(k); err != nil {
			return err
		} else if ok && k == "uid" {
			e.UID = n
		} else if ok {
			e.GID = n
		}
	}
	if v, ok := recs["mtime"]; ok {
		if t, err := parsePAXTime(v); err == nil {
			e.ModTime = t
		}
	}
	e.Xattrs = paxXattrs(recs)
	for k := range recs {
		if strings.HasPrefix(k, "GNU.sparse.") {
			e.Sparse = true
		}
	}
	if e.Sparse {
		for _, k := range []string{"GNU.sparse.realsize", "GNU.sparse.size"} {
			if n, ok, err := num(k); err != nil {
				return err
			} else if ok {
				e.Size = n
				break
			}
		}
		if name, ok := recs["GNU.sparse.name"]; ok {
			e.Name = name
		}
	}
	return nil
}

// parsePAXTime parses "seconds[.fraction]".
func parsePAXTime(s string) (time.Time, error) {
	secs, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	var nsec int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		nsec, err = strconv.ParseInt(frac, 10, 64)
		if err != nil {
			return time.Time{}, err
		}
	}
	return time.Unix(sec, nsec).UTC(), nil
}
