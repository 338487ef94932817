package gzrecipe

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// goldenRecipes pins encoding version 1 byte for byte: a change here breaks
// every delta already written.
var goldenRecipes = []struct {
	name string
	r    Recipe
	hex  string
	text string
}{
	{
		name: "crane",
		r:    Recipe{Compressor: GoStdlib, Level: 1, Header: Header{XFL: 4, OS: 255}},
		hex:  "010101" + "00" + "0a" + "1f8b0800" + "00000000" + "04ff",
		text: "go-stdlib level=1 mtime=0x0 xfl=4 os=255",
	},
	{
		name: "docker",
		r:    Recipe{Compressor: GoStdlib, Level: 6, Header: Header{OS: 255}},
		hex:  "010106" + "00" + "0a" + "1f8b0800" + "00000000" + "00ff",
		text: "go-stdlib level=6 mtime=0x0 xfl=0 os=255",
	},
	{
		name: "skopeo",
		r:    Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: 1 << 20, Header: Header{ModTime: 0x886e0900, OS: 255}},
		hex:  "010305" + "808040" + "0a" + "1f8b0800" + "00096e88" + "00ff",
		text: "klauspost-pgzip level=5 block=1048576 mtime=0x886e0900 xfl=0 os=255",
	},
	{
		name: "klauspost-huffman",
		r:    Recipe{Compressor: KlauspostGzip, Level: -2, Header: Header{ModTime: 0x886e0900, XFL: 0, OS: 255}},
		hex:  "0102fe" + "00" + "0a" + "1f8b0800" + "00096e88" + "00ff",
		text: "klauspost-gzip level=-2 mtime=0x886e0900 xfl=0 os=255",
	},
	{
		name: "every-header-field",
		r: Recipe{Compressor: GoStdlib, Level: 9, Header: Header{Flags: FlagText | FlagHCRC | FlagExtra | FlagName | FlagComment,
			ModTime: 0x01020304, XFL: 2, OS: 3, Extra: []byte{0xaa, 0xbb}, Name: "a.tar", Comment: "c"}},
		hex:  "010109" + "00" + "18" + "1f8b081f" + "04030201" + "0203" + "0200aabb" + "612e74617200" + "6300" + "b1ad",
		text: `go-stdlib level=9 mtime=0x1020304 xfl=2 os=3 flags=0x03 extra=2 name="a.tar" comment="c"`,
	},
}

func TestRecipeGolden(t *testing.T) {
	for _, tc := range goldenRecipes {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if h := hex.EncodeToString(got); h != tc.hex {
				t.Errorf("MarshalBinary = %s, want %s", h, tc.hex)
			}
			var back Recipe
			if err := back.UnmarshalBinary(got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.r, back); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if s := tc.r.String(); s != tc.text {
				t.Errorf("String = %q, want %q", s, tc.text)
			}
		})
	}
}

func TestUnmarshalBinaryRejects(t *testing.T) {
	valid := "010106000a1f8b08000000000000ff"
	cases := []struct {
		name, hex, message string
	}{
		{"empty", "", "too short"},
		{"version-0", "000106000a1f8b08000000000000ff", "unknown encoding version 0"},
		{"version-2", "020106000a1f8b08000000000000ff", "unknown encoding version 2"},
		{"compressor-0", "010006000a1f8b08000000000000ff", "unknown compressor id 0"},
		{"compressor-4", "010406000a1f8b08000000000000ff", "unknown compressor id 4"},
		{"level-10", "01010a000a1f8b08000000000000ff", "level 10"},
		{"level-stateless", "0102fd000a1f8b08000000000000ff", "level -3"},
		{"block-for-go", "010106808040" + "0a1f8b08000000000000ff", "block size 1048576 set for go-stdlib"},
		{"pgzip-no-block", "010305000a1f8b08000000000000ff", "pgzip block size 0"},
		{"block-huge", "01030580808080100a1f8b08000000000000ff", "exceeds"},
		{"non-minimal-varint", "0101068000" + "0a1f8b08000000000000ff", "non-minimal block size"},
		{"truncated-varint", "01010680", "truncated"},
		{"header-short", "010106000b1f8b08000000000000ff", "header length 11, but 10 bytes follow"},
		{"header-long", "01010600091f8b08000000000000ff", "header length 9, but 10 bytes follow"},
		{"header-trailing", "010106000b1f8b08000000000000ff00", "1 bytes after the gzip header"},
		{"not-gzip", "010106000a1f8c08000000000000ff", "not gzip"},
		{"reserved-flag", "010106000a1f8b08200000000000ff", "reserved"},
		{"name-unterminated", "010106000c1f8b08080000000000ff6161", "unexpected EOF"},
		{"bad-hcrc", "010106000c1f8b08020000000000ff0000", "header CRC"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			if err != nil {
				t.Fatal(err)
			}
			r := Recipe{Compressor: "untouched"}
			err = r.UnmarshalBinary(b)
			if !errors.Is(err, ErrBadRecipe) {
				t.Fatalf("UnmarshalBinary error = %v, want ErrBadRecipe", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
			if r.Compressor != "untouched" {
				t.Errorf("UnmarshalBinary changed the recipe on error: %v", r)
			}
		})
	}
	b, _ := hex.DecodeString(valid)
	var r Recipe
	if err := r.UnmarshalBinary(b); err != nil {
		t.Fatalf("valid encoding rejected: %v", err)
	}
}

func TestMarshalBinaryRejects(t *testing.T) {
	cases := []struct {
		name string
		r    Recipe
		want error
	}{
		{"zero", Recipe{}, ErrBadRecipe},
		{"name-without-flag", Recipe{Compressor: GoStdlib, Header: Header{Name: "x"}}, ErrBadHeader},
		{"extra-without-flag", Recipe{Compressor: GoStdlib, Header: Header{Extra: []byte{1}}}, ErrBadHeader},
		{"nul-in-name", Recipe{Compressor: GoStdlib, Header: Header{Flags: FlagName, Name: "a\x00b"}}, ErrBadHeader},
		{"long-comment", Recipe{Compressor: GoStdlib, Header: Header{Flags: FlagComment, Comment: strings.Repeat("c", MaxCommentLen+1)}}, ErrBadHeader},
		{"reserved-flag", Recipe{Compressor: GoStdlib, Header: Header{Flags: 0x40}}, ErrBadHeader},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.r.MarshalBinary(); !errors.Is(err, tc.want) || !errors.Is(err, ErrBadRecipe) {
				t.Fatalf("MarshalBinary error = %v, want %v and ErrBadRecipe", err, tc.want)
			}
		})
	}
}

// FuzzUnmarshalBinary: whatever decodes must encode back to the same bytes.
func FuzzUnmarshalBinary(f *testing.F) {
	for _, tc := range goldenRecipes {
		b, _ := hex.DecodeString(tc.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Recipe
		if err := r.UnmarshalBinary(data); err != nil {
			return
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded recipe %v does not encode: %v", r, err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding %x gives %x", data, again)
		}
	})
}

// FuzzReadHeader: a header that parses must encode back to the bytes read.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"))
	f.Add([]byte("\x1f\x8b\x08\x1e\x00\x00\x00\x00\x00\x03\x01\x00zname\x00comment\x00\x12\x34rest"))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bytes.NewReader(data)
		h, err := ReadHeader(br)
		if err != nil {
			return
		}
		consumed := data[:len(data)-br.Len()]
		enc, err := h.AppendBinary(nil)
		if err != nil {
			t.Fatalf("parsed header %+v does not encode: %v", h, err)
		}
		if !bytes.Equal(enc, consumed) {
			t.Fatalf("header %x encodes to %x", consumed, enc)
		}
		if h.Len() != len(enc) {
			t.Fatalf("Len = %d, encoding has %d bytes", h.Len(), len(enc))
		}
	})
}

// Every header Compress writes must read back with compress/gzip (which
// checks FHCRC) and give the same fields and content.
func TestCompressHeaderReadable(t *testing.T) {
	data := layerTar(t, 10, 100_000)
	for _, tc := range goldenRecipes {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tc.r.Compress(context.Background(), bytes.NewReader(data), &buf); err != nil {
				t.Fatal(err)
			}
			zr, err := gzip.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatal("content differs")
			}
			h := tc.r.Header
			if zr.Name != h.Name || zr.Comment != h.Comment || !bytes.Equal(zr.Extra, h.Extra) || zr.OS != h.OS {
				t.Errorf("compress/gzip read name %q comment %q extra %x os %d, want %q %q %x %d",
					zr.Name, zr.Comment, zr.Extra, zr.OS, h.Name, h.Comment, h.Extra, h.OS)
			}
		})
	}
}
