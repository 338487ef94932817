package gzrecipe

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Compressor names. Each names one deflate implementation at the version
// this module builds with (go.mod): the Go toolchain's compress/flate,
// github.com/klauspost/compress/flate (as used by its gzip package) and
// github.com/klauspost/pgzip (over the same klauspost flate).
const (
	GoStdlib       = "go-stdlib"
	KlauspostGzip  = "klauspost-gzip"
	KlauspostPgzip = "klauspost-pgzip"
)

// Bounds on the pgzip block size a recipe may ask for. pgzip itself
// refuses blocks of 16 KiB or less; the upper bound caps device memory
// (Compress holds a few blocks at a time).
const (
	MinBlockSize     = 16<<10 + 1
	MaxBlockSize     = 64 << 20
	DefaultBlockSize = 1 << 20 // pgzip's default
)

// encodingVersion is the first byte of MarshalBinary's output.
const encodingVersion = 1

// ErrBadRecipe means a recipe is invalid or its encoding is malformed.
var ErrBadRecipe = errors.New("gzrecipe: bad recipe")

// Recipe says how to turn an uncompressed tar into an exact gzip blob: the
// blob is Header, then the deflate stream Compressor makes at Level (with
// BlockSize for pgzip), then the CRC-32 and length of the tar.
type Recipe struct {
	Compressor string // GoStdlib, KlauspostGzip or KlauspostPgzip
	Level      int    // -2 (Huffman only), 0 (store), 1..9; Find records -1 as its alias (6 for GoStdlib, 5 for the klauspost ones)
	BlockSize  int    // bytes of input per pgzip block (KlauspostPgzip only, else 0)
	Header     Header // the gzip header, written verbatim
}

var (
	_ encoding.BinaryMarshaler   = Recipe{}
	_ encoding.BinaryUnmarshaler = (*Recipe)(nil)
	_ fmt.Stringer               = Recipe{}
)

var compressorIDs = map[string]byte{GoStdlib: 1, KlauspostGzip: 2, KlauspostPgzip: 3}

func compressorName(id byte) (string, bool) {
	for n, i := range compressorIDs {
		if i == id {
			return n, true
		}
	}
	return "", false
}

// Validate reports whether Compress can replay r.
func (r Recipe) Validate() error {
	if _, ok := compressorIDs[r.Compressor]; !ok {
		return fmt.Errorf("%w: unknown compressor %q", ErrBadRecipe, r.Compressor)
	}
	if r.Level < -2 || r.Level > 9 {
		// Level -3 is klauspost's stateless mode, whose output depends on
		// the write sizes, so it cannot be replayed.
		return fmt.Errorf("%w: level %d outside -2..9", ErrBadRecipe, r.Level)
	}
	if r.Compressor == KlauspostPgzip {
		if r.BlockSize < MinBlockSize || r.BlockSize > MaxBlockSize {
			return fmt.Errorf("%w: pgzip block size %d outside %d..%d", ErrBadRecipe, r.BlockSize, MinBlockSize, MaxBlockSize)
		}
	} else if r.BlockSize != 0 {
		return fmt.Errorf("%w: block size %d set for %s", ErrBadRecipe, r.BlockSize, r.Compressor)
	}
	if err := r.Header.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecipe, err)
	}
	return nil
}

// MarshalBinary encodes r (version 1):
//
//	Recipe     = Version(u8 = 1) || Compressor(u8) || Level(i8) ||
//	             BlockSize(uvarint) || HeaderLen(uvarint) || Header(HeaderLen bytes)
//	Compressor = 1 go-stdlib | 2 klauspost-gzip | 3 klauspost-pgzip
//	Header     = the gzip member header verbatim (magic, FLG, MTIME little
//	             endian, XFL, OS, optional FEXTRA/FNAME/FCOMMENT/FHCRC)
//
// A typical recipe is 15 to 17 bytes. The encoding is deterministic.
func (r Recipe) MarshalBinary() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b := []byte{encodingVersion, compressorIDs[r.Compressor], byte(int8(r.Level))}
	b = binary.AppendUvarint(b, uint64(r.BlockSize))
	b = binary.AppendUvarint(b, uint64(r.Header.Len()))
	return r.Header.AppendBinary(b)
}

// UnmarshalBinary decodes what MarshalBinary wrote, rejecting unknown
// versions, invalid fields, non-minimal lengths and trailing bytes.
func (r *Recipe) UnmarshalBinary(data []byte) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadRecipe, fmt.Sprintf(format, a...))
	}
	if len(data) < 3 {
		return bad("encoding of %d bytes is too short", len(data))
	}
	if data[0] != encodingVersion {
		return bad("unknown encoding version %d", data[0])
	}
	name, ok := compressorName(data[1])
	if !ok {
		return bad("unknown compressor id %d", data[1])
	}
	out := Recipe{Compressor: name, Level: int(int8(data[2]))}
	rest := data[3:]
	uvarint := func(what string, max uint64) (uint64, error) {
		v, n := binary.Uvarint(rest)
		if n <= 0 {
			return 0, bad("truncated or overlong %s", what)
		}
		if n != len(binary.AppendUvarint(nil, v)) {
			return 0, bad("non-minimal %s", what)
		}
		if v > max {
			return 0, bad("%s %d exceeds %d", what, v, max)
		}
		rest = rest[n:]
		return v, nil
	}
	bs, err := uvarint("block size", MaxBlockSize)
	if err != nil {
		return err
	}
	out.BlockSize = int(bs)
	hl, err := uvarint("header length", MaxHeaderLen)
	if err != nil {
		return err
	}
	if uint64(len(rest)) != hl {
		return bad("header length %d, but %d bytes follow", hl, len(rest))
	}
	br := bytes.NewReader(rest)
	if out.Header, err = ReadHeader(br); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRecipe, err)
	}
	if br.Len() != 0 {
		return bad("%d bytes after the gzip header", br.Len())
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*r = out
	return nil
}

// String is a one-line human-readable form, e.g.
// "klauspost-pgzip level=5 block=1048576 mtime=0x886e0900 xfl=0 os=255".
func (r Recipe) String() string {
	var sb strings.Builder
	sb.WriteString(r.Compressor)
	sb.WriteString(" level=" + strconv.Itoa(r.Level))
	if r.BlockSize != 0 {
		sb.WriteString(" block=" + strconv.Itoa(r.BlockSize))
	}
	h := r.Header
	fmt.Fprintf(&sb, " mtime=%#x xfl=%d os=%d", h.ModTime, h.XFL, h.OS)
	if f := h.Flags &^ (FlagExtra | FlagName | FlagComment); f != 0 {
		fmt.Fprintf(&sb, " flags=%#02x", f)
	}
	if h.Flags&FlagExtra != 0 {
		fmt.Fprintf(&sb, " extra=%d", len(h.Extra))
	}
	if h.Flags&FlagName != 0 {
		fmt.Fprintf(&sb, " name=%q", h.Name)
	}
	if h.Flags&FlagComment != 0 {
		fmt.Fprintf(&sb, " comment=%q", h.Comment)
	}
	return sb.String()
}
