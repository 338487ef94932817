package gzrecipe

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Gzip header flag bits (RFC 1952, section 2.3.1).
const (
	FlagText    = 0x01 // FTEXT
	FlagHCRC    = 0x02 // FHCRC: a CRC16 of the header follows it
	FlagExtra   = 0x04 // FEXTRA
	FlagName    = 0x08 // FNAME
	FlagComment = 0x10 // FCOMMENT

	flagReserved = 0xe0
)

// Limits on the variable header fields. The format has none for the name
// and comment; these bound what Find accepts and what a recipe may carry.
const (
	MaxNameLen    = 1024
	MaxCommentLen = 1024
	MaxExtraLen   = 0xffff
	// MaxHeaderLen is the longest header a recipe can describe.
	MaxHeaderLen = 10 + 2 + MaxExtraLen + MaxNameLen + 1 + MaxCommentLen + 1 + 2
)

// ErrBadHeader means a gzip header is malformed or outside the limits above.
var ErrBadHeader = errors.New("gzrecipe: bad gzip header")

// Header is the gzip member header exactly as it appears in a blob. Its
// encoding (AppendBinary) is a pure function of these fields, so writing it
// reproduces the original header byte for byte, including an FHCRC.
type Header struct {
	Flags   byte   // FLG byte as found: FlagText|FlagHCRC|FlagExtra|FlagName|FlagComment; reserved bits must be 0
	ModTime uint32 // MTIME as stored (Go stdlib writes 0, klauspost 0x886E0900 when unset)
	XFL     byte   // extra flags as stored (2 slowest, 4 fastest, 0 otherwise by convention)
	OS      byte   // 255 unknown (Go libraries), 3 Unix (GNU gzip)
	Extra   []byte // FEXTRA payload; used only when Flags&FlagExtra
	Name    string // FNAME raw bytes without the NUL; used only when Flags&FlagName
	Comment string // FCOMMENT raw bytes without the NUL; used only when Flags&FlagComment
}

// validate checks the fields against the format and the limits.
func (h Header) validate() error {
	if h.Flags&flagReserved != 0 {
		return fmt.Errorf("%w: reserved flag bits %#02x set", ErrBadHeader, h.Flags&flagReserved)
	}
	if h.Flags&FlagExtra == 0 && len(h.Extra) > 0 {
		return fmt.Errorf("%w: extra field without FEXTRA flag", ErrBadHeader)
	}
	if len(h.Extra) > MaxExtraLen {
		return fmt.Errorf("%w: extra field of %d bytes exceeds %d", ErrBadHeader, len(h.Extra), MaxExtraLen)
	}
	if err := checkString("name", h.Name, h.Flags&FlagName != 0, MaxNameLen); err != nil {
		return err
	}
	return checkString("comment", h.Comment, h.Flags&FlagComment != 0, MaxCommentLen)
}

func checkString(what, s string, flagged bool, max int) error {
	if !flagged && s != "" {
		return fmt.Errorf("%w: %s %q without its flag", ErrBadHeader, what, s)
	}
	if len(s) > max {
		return fmt.Errorf("%w: %s of %d bytes exceeds %d", ErrBadHeader, what, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return fmt.Errorf("%w: %s contains a NUL byte at %d", ErrBadHeader, what, i)
		}
	}
	return nil
}

// AppendBinary appends the exact header bytes to b.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	if err := h.validate(); err != nil {
		return b, err
	}
	start := len(b)
	b = append(b, 0x1f, 0x8b, 8, h.Flags)
	b = binary.LittleEndian.AppendUint32(b, h.ModTime)
	b = append(b, h.XFL, h.OS)
	if h.Flags&FlagExtra != 0 {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h.Extra)))
		b = append(b, h.Extra...)
	}
	if h.Flags&FlagName != 0 {
		b = append(append(b, h.Name...), 0)
	}
	if h.Flags&FlagComment != 0 {
		b = append(append(b, h.Comment...), 0)
	}
	if h.Flags&FlagHCRC != 0 {
		b = binary.LittleEndian.AppendUint16(b, uint16(crc32.ChecksumIEEE(b[start:])))
	}
	return b, nil
}

// ReadHeader reads one gzip member header from r, consuming exactly its
// bytes when r is an io.ByteReader (wrap it in a bufio.Reader otherwise and
// keep reading from that). It rejects what AppendBinary could not write back
// identically: reserved flags, a wrong header CRC, over-long fields.
func ReadHeader(r io.Reader) (Header, error) {
	br, ok := r.(io.ByteReader)
	if !ok {
		br = bufio.NewReader(r)
	}
	var raw []byte // the bytes read so far, for FHCRC
	read := func(n int) ([]byte, error) {
		for i := 0; i < n; i++ {
			c, err := br.ReadByte()
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return nil, fmt.Errorf("%w: at byte %d: %w", ErrBadHeader, len(raw), err)
			}
			raw = append(raw, c)
		}
		return raw[len(raw)-n:], nil
	}
	readString := func(what string, max int) (string, error) {
		begin := len(raw)
		for {
			b, err := read(1)
			if err != nil {
				return "", err
			}
			if b[0] == 0 {
				return string(raw[begin : len(raw)-1]), nil
			}
			if len(raw)-begin > max {
				return "", fmt.Errorf("%w: %s longer than %d bytes", ErrBadHeader, what, max)
			}
		}
	}
	var h Header
	fixed, err := read(10)
	if err != nil {
		return h, err
	}
	if fixed[0] != 0x1f || fixed[1] != 0x8b {
		return h, fmt.Errorf("%w: magic %02x %02x is not gzip", ErrBadHeader, fixed[0], fixed[1])
	}
	if fixed[2] != 8 {
		return h, fmt.Errorf("%w: compression method %d is not deflate", ErrBadHeader, fixed[2])
	}
	h.Flags = fixed[3]
	h.ModTime = binary.LittleEndian.Uint32(fixed[4:8])
	h.XFL, h.OS = fixed[8], fixed[9]
	if h.Flags&flagReserved != 0 {
		return h, fmt.Errorf("%w: reserved flag bits %#02x set", ErrBadHeader, h.Flags&flagReserved)
	}
	if h.Flags&FlagExtra != 0 {
		n, err := read(2)
		if err != nil {
			return h, err
		}
		x, err := read(int(binary.LittleEndian.Uint16(n)))
		if err != nil {
			return h, err
		}
		if len(x) > 0 {
			h.Extra = append([]byte{}, x...)
		}
	}
	if h.Flags&FlagName != 0 {
		if h.Name, err = readString("name", MaxNameLen); err != nil {
			return h, err
		}
	}
	if h.Flags&FlagComment != 0 {
		if h.Comment, err = readString("comment", MaxCommentLen); err != nil {
			return h, err
		}
	}
	if h.Flags&FlagHCRC != 0 {
		want := uint16(crc32.ChecksumIEEE(raw))
		c, err := read(2)
		if err != nil {
			return h, err
		}
		if got := binary.LittleEndian.Uint16(c); got != want {
			return h, fmt.Errorf("%w: header CRC %#04x, computed %#04x", ErrBadHeader, got, want)
		}
	}
	return h, nil
}

// Len is the encoded length of the header in bytes.
func (h Header) Len() int {
	n := 10
	if h.Flags&FlagExtra != 0 {
		n += 2 + len(h.Extra)
	}
	if h.Flags&FlagName != 0 {
		n += len(h.Name) + 1
	}
	if h.Flags&FlagComment != 0 {
		n += len(h.Comment) + 1
	}
	if h.Flags&FlagHCRC != 0 {
		n += 2
	}
	return n
}
