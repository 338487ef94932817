package tartest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/internal/counting"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// entry is what archive/tar reports for one member.
type entry struct {
	Name     string
	Type     byte
	Size     int64
	Linkname string
	Data     []byte
	Hdr      *tar.Header
}

// readAll reads a stream to the end with archive/tar, data included.
func readAll(data []byte) ([]entry, error) {
	tr := tar.NewReader(bytes.NewReader(data))
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return out, err
		}
		out = append(out, entry{Name: h.Name, Type: h.Typeflag, Size: h.Size, Linkname: h.Linkname, Data: b, Hdr: h})
	}
}

func caseMap(t *testing.T, cs []Case) map[string]Case {
	t.Helper()
	m := map[string]Case{}
	for _, c := range cs {
		if _, dup := m[c.Name]; dup {
			t.Fatalf("duplicate case name %q", c.Name)
		}
		if c.Notes == "" {
			t.Errorf("case %q has no notes", c.Name)
		}
		m[c.Name] = c
	}
	return m
}

// TestCasesReadable reads every case to the end with archive/tar and checks
// what each case claims to contain.
func TestCasesReadable(t *testing.T) {
	for seed := int64(1); seed <= 10; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testCasesReadable(t, seed) })
	}
}

func testCasesReadable(t *testing.T, seed int64) {
	cases := caseMap(t, Cases(seed))
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			es, err := readAll(c.Data)
			if err != nil {
				t.Fatalf("archive/tar: %v (after %d entries)", err, len(es))
			}
			if name != "zero-length-stream" && len(c.Data)%blockSize != 0 &&
				name != "data-after-end-marker" {
				t.Errorf("length %d is not a whole number of blocks", len(c.Data))
			}
		})
	}
}

// TestCaseContents pins what archive/tar sees in the cases whose point is a
// particular header form, so a generator bug cannot silently weaken a case.
func TestCaseContents(t *testing.T) {
	cases := caseMap(t, Cases(7))
	read := func(t *testing.T, name string) []entry {
		t.Helper()
		c, ok := cases[name]
		if !ok {
			t.Fatalf("no case %q", name)
		}
		es, err := readAll(c.Data)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	// rawHas reports whether the stream holds the bytes s.
	rawHas := func(name, s string) bool { return bytes.Contains(cases[name].Data, []byte(s)) }

	t.Run("pax-headers", func(t *testing.T) {
		es := read(t, "pax-headers")
		if len(es[1].Name) != 300 {
			t.Errorf("long name is %d bytes, want 300", len(es[1].Name))
		}
		if es[2].Hdr.Uid != 3000000 || es[2].Hdr.Gid != 4000001 {
			t.Errorf("uid/gid = %d/%d", es[2].Hdr.Uid, es[2].Hdr.Gid)
		}
		if got := es[3].Hdr.PAXRecords["SKIFF.note"]; got != "spaces, = signs and\na newline" {
			t.Errorf("SKIFF.note = %q", got)
		}
		if es[4].Hdr.Format != tar.FormatPAX || len(es[4].Linkname) <= 100 {
			t.Errorf("long symlink: format %v, target %d bytes", es[4].Hdr.Format, len(es[4].Linkname))
		}
	})
	t.Run("pax-overrides", func(t *testing.T) {
		es := read(t, "pax-overrides")
		if es[0].Name != "pax-override/real-name-from-pax" || es[0].Size != 700 || len(es[0].Data) != 700 ||
			es[0].Hdr.Uid != 1234 {
			t.Errorf("got %q size %d data %d uid %d", es[0].Name, es[0].Size, len(es[0].Data), es[0].Hdr.Uid)
		}
	})
	t.Run("gnu-long-names", func(t *testing.T) {
		es := read(t, "gnu-long-names")
		if !rawHas("gnu-long-names", "././@LongLink") || len(es) != 3 {
			t.Fatalf("%d entries, LongLink present %v", len(es), rawHas("gnu-long-names", "././@LongLink"))
		}
		for _, i := range []int{0, 2} {
			if len(es[i].Name) <= 100 || es[i].Hdr.Format != tar.FormatGNU {
				t.Errorf("entry %d: name %d bytes, format %v", i, len(es[i].Name), es[i].Hdr.Format)
			}
		}
		if len(es[1].Linkname) != 200 || len(es[2].Linkname) != 150 {
			t.Errorf("link targets %d and %d bytes", len(es[1].Linkname), len(es[2].Linkname))
		}
	})
	t.Run("ustar-prefix", func(t *testing.T) {
		es := read(t, "ustar-prefix")
		raw := cases["ustar-prefix"].Data
		if es[0].Hdr.Format != tar.FormatUSTAR || len(es[0].Name) <= 100 || raw[offPrefix] == 0 {
			t.Errorf("prefix entry: format %v, name %d bytes", es[0].Hdr.Format, len(es[0].Name))
		}
		if len(es[1].Name) != 100 || len(es[2].Linkname) != 100 {
			t.Errorf("full fields: %d, %d", len(es[1].Name), len(es[2].Linkname))
		}
	})
	t.Run("types", func(t *testing.T) {
		want := map[string][]byte{
			"hardlinks":                {tar.TypeDir, tar.TypeReg, tar.TypeLink, tar.TypeDir, tar.TypeLink, tar.TypeLink, tar.TypeReg},
			"symlinks":                 {tar.TypeDir, '2', '2', '2', '2', '2', '2'},
			"devices":                  {tar.TypeDir, '3', '3', '4', '4', '3'},
			"fifos":                    {'6', '6'},
			"directories":              {'5', '5', '5', '5', '5', '5'},
			"header-only-nonzero-size": {'5', '6'},
			"v7-header":                {tar.TypeReg, tar.TypeDir}, // archive/tar maps V7 '\x00' + '/' to a dir
		}
		for name, types := range want {
			var got []byte
			for _, e := range read(t, name) {
				got = append(got, e.Type)
			}
			if diff := cmp.Diff(types, got); diff != "" {
				t.Errorf("%s types (-want +got):\n%s", name, diff)
			}
		}
		es := read(t, "devices")
		if es[5].Hdr.Devmajor != 259 || es[5].Hdr.Devminor != 1048575 {
			t.Errorf("big-minor = %d,%d", es[5].Hdr.Devmajor, es[5].Hdr.Devminor)
		}
	})
	t.Run("xattrs", func(t *testing.T) {
		es := read(t, "xattrs")
		if got := es[1].Hdr.PAXRecords["SCHILY.xattr.security.capability"]; got != capNetBindService {
			t.Errorf("capability = %x", got)
		}
		if got := es[3].Hdr.PAXRecords["SCHILY.xattr.trusted.overlay.opaque"]; got != "y" {
			t.Errorf("opaque = %q", got)
		}
	})
	t.Run("whiteouts", func(t *testing.T) {
		var n int
		for _, e := range read(t, "whiteouts") {
			if strings.Contains(e.Name, ".wh.") {
				n++
			}
		}
		if n != 4 || !rawHas("whiteouts", "app/cache/.wh..wh..opq") {
			t.Errorf("%d whiteouts", n)
		}
	})
	t.Run("non-utf8-names", func(t *testing.T) {
		es := read(t, "non-utf8-names")
		if es[1].Name != "raw/caf\xe9-latin1.txt" || len(es[3].Name) != 154 || es[4].Linkname != "target-\xc3\x28-invalid" {
			t.Errorf("names %q %d %q", es[1].Name, len(es[3].Name), es[4].Linkname)
		}
		if !rawHas("non-utf8-names", "raw/caf\xe9") {
			t.Error("raw Latin-1 name not in stream")
		}
	})
	t.Run("subsecond-mtimes", func(t *testing.T) {
		es := read(t, "subsecond-mtimes")
		if es[1].Hdr.ModTime.Nanosecond() != 123456789 || es[2].Hdr.ModTime.UnixNano() != -500000000 ||
			es[3].Hdr.ModTime.Year() != 2300 {
			t.Errorf("mtimes %v %v %v", es[1].Hdr.ModTime, es[2].Hdr.ModTime, es[3].Hdr.ModTime)
		}
	})
	t.Run("pax-global-header", func(t *testing.T) {
		var globals int
		for _, e := range read(t, "pax-global-header") {
			if e.Type == tar.TypeXGlobalHeader {
				globals++
			}
		}
		if globals != 2 {
			t.Errorf("%d global headers, want 2", globals)
		}
	})
	t.Run("duplicate-paths", func(t *testing.T) {
		es := read(t, "duplicate-paths")
		if es[1].Name != es[3].Name || bytes.Equal(es[1].Data, es[3].Data) {
			t.Error("duplicates are not same-name, different-content")
		}
	})
	t.Run("sizes", func(t *testing.T) {
		for _, e := range read(t, "empty-files") {
			if e.Size != 0 {
				t.Errorf("%s: size %d", e.Name, e.Size)
			}
		}
		var got []int64
		for _, e := range read(t, "block-multiple-sizes") {
			got = append(got, e.Size)
		}
		if diff := cmp.Diff([]int64{512, 1, 1024, 511, 4096, 513}, got); diff != "" {
			t.Errorf("sizes (-want +got):\n%s", diff)
		}
	})
	t.Run("base256-fields", func(t *testing.T) {
		es := read(t, "base256-fields")
		raw := cases["base256-fields"].Data
		if raw[offSize] != 0x80 || raw[offUID] != 0x80 {
			t.Errorf("size/uid fields not base-256: %x %x", raw[offSize], raw[offUID])
		}
		if es[0].Size != 1000 || es[0].Hdr.Uid != 1000 || es[1].Hdr.Uid != 1<<40 || es[2].Hdr.ModTime.Unix() != -1000 {
			t.Errorf("size %d uid %d uid %d mtime %d", es[0].Size, es[0].Hdr.Uid, es[1].Hdr.Uid, es[2].Hdr.ModTime.Unix())
		}
	})
	t.Run("nonzero-padding", func(t *testing.T) {
		raw := cases["nonzero-padding"].Data
		if bytes.Count(raw[blockSize+100:2*blockSize], []byte{0}) > 20 || !rawHas("nonzero-padding", "PADDING!") {
			t.Error("padding is (mostly) zero")
		}
		if es := read(t, "nonzero-padding"); len(es) != 2 || len(es[1].Data) != 1000 {
			t.Errorf("read %d entries", len(es))
		}
	})
	t.Run("header-field-variants", func(t *testing.T) {
		es := read(t, "header-field-variants")
		h := es[0].Hdr
		if h.Name != "fields/variants" || h.Mode != 0o644 || h.Size != 1000 || h.ModTime.Unix() != 1700000000 ||
			h.Linkname != "" || h.Uname != "root" {
			t.Errorf("got %+v", h)
		}
	})
	t.Run("sparse", func(t *testing.T) {
		for _, name := range []string{"sparse-oldgnu", "sparse-oldgnu-extended", "sparse-oldgnu-unaligned", "sparse-pax-0.0", "sparse-pax-0.1", "sparse-pax-1.0"} {
			es := read(t, name)
			e := es[len(es)-1]
			if int64(len(e.Data)) != e.Size || e.Size < 4096 {
				t.Errorf("%s: read %d of %d bytes", name, len(e.Data), e.Size)
			}
			if !strings.HasPrefix(e.Name, "sparse/") || strings.Contains(e.Name, "GNUSparseFile") {
				t.Errorf("%s: name %q", name, e.Name)
			}
			if n := len(e.Data) - bytes.Count(e.Data, []byte{0}); n == 0 || n > len(e.Data)/4 {
				t.Errorf("%s: %d non-hole bytes of %d", name, n, len(e.Data))
			}
		}
		raw := cases["sparse-oldgnu-extended"].Data
		if raw[offGNUExtended] != 1 || raw[blockSize+offGNUExtFlagExt] != 1 || raw[2*blockSize+offGNUExtFlagExt] != 0 {
			t.Error("extended sparse case does not have exactly two extension blocks")
		}
		if raw := cases["sparse-oldgnu"].Data; raw[offGNUExtended] != 0 {
			t.Error("small sparse case has an extension block")
		}
		if !rawHas("sparse-pax-1.0", "GNU.sparse.major=1") || !rawHas("sparse-pax-0.1", "GNU.sparse.map=") ||
			!rawHas("sparse-pax-0.0", "GNU.sparse.offset=") {
			t.Error("PAX sparse records missing")
		}
	})
	t.Run("endings", func(t *testing.T) {
		if n := len(cases["empty-layer"].Data); n != 1024 {
			t.Errorf("empty-layer is %d bytes", n)
		}
		if n := len(cases["zero-length-stream"].Data); n != 0 {
			t.Errorf("zero-length-stream is %d bytes", n)
		}
		for _, name := range []string{"gnu-record-padding", "kitchen-sink"} {
			if n := len(cases[name].Data); n%10240 != 0 {
				t.Errorf("%s is %d bytes, not whole 10 KiB records", name, n)
			}
		}
		for _, name := range []string{"no-end-marker", "no-end-marker-unpadded"} {
			d := cases[name].Data
			if bytes.Equal(d[len(d)-blockSize:], make([]byte, blockSize)) {
				t.Errorf("%s ends in a zero block", name)
			}
		}
		d := cases["single-zero-block"].Data
		if !bytes.Equal(d[len(d)-blockSize:], make([]byte, blockSize)) ||
			bytes.Equal(d[len(d)-2*blockSize:len(d)-blockSize], make([]byte, blockSize)) {
			t.Error("single-zero-block does not end in exactly one zero block")
		}
		if es := read(t, "data-after-end-marker"); len(es) != 1 {
			t.Errorf("data-after-end-marker: %d entries before the marker, want 1", len(es))
		}
	})
}

// TestKitchenSinkHasEveryCase checks that the kitchen sink holds the members
// of every member case, byte for byte and in order.
func TestKitchenSinkHasEveryCase(t *testing.T) {
	cases := caseMap(t, Cases(3))
	sink := cases["kitchen-sink"].Data
	pos := 0
	for _, mc := range memberCases {
		m := cases[mc.name].Data
		m = m[:len(m)-2*blockSize]
		i := bytes.Index(sink[pos:], m)
		if i != 0 {
			t.Fatalf("%s: members found at offset %d from %d, want right there", mc.name, i, pos)
		}
		pos += len(m)
	}
	if !bytes.Equal(sink[pos:pos+2*blockSize], endMarker()) {
		t.Error("kitchen sink has no end marker after its members")
	}
}

func TestCasesDeterministic(t *testing.T) {
	a, b, c := Cases(1), Cases(1), Cases(2)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("Cases(1) differs between calls (-first +second):\n%s", diff)
	}
	am, cm := caseMap(t, a), caseMap(t, c)
	if bytes.Equal(am["kitchen-sink"].Data, cm["kitchen-sink"].Data) {
		t.Error("seeds 1 and 2 give the same kitchen sink")
	}
	if diff := cmp.Diff(Malformed(5), Malformed(5)); diff != "" {
		t.Fatalf("Malformed(5) differs between calls:\n%s", diff)
	}
}

// TestKitchenSinkGolden pins the kitchen sink for seed 1. Run with -update
// after an intended change to a case.
func TestKitchenSinkGolden(t *testing.T) {
	sink := caseMap(t, Cases(1))["kitchen-sink"].Data
	sum := sha256.Sum256(sink)
	got := hex.EncodeToString(sum[:]) + "\n"
	golden := filepath.Join("testdata", "kitchen-sink-seed1.sha256")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("kitchen-sink sha256 = %s, golden %s (run with -update if the change is intended)", got, want)
	}
}

// TestMalformedRejected checks that archive/tar fails on the malformed
// cases with the error their notes name; for two of them it reports a clean
// end of archive instead (a nil want), which the notes say too.
func TestMalformedRejected(t *testing.T) {
	want := map[string]error{
		"bad-checksum":         tar.ErrHeader,
		"truncated-file-data":  io.ErrUnexpectedEOF,
		"truncated-in-padding": nil, // archive/tar reports a clean io.EOF at the next Next

		"truncated-mid-header":   io.ErrUnexpectedEOF,
		"pax-bad-length":         tar.ErrHeader,
		"pax-short-length":       tar.ErrHeader,
		"pax-size-not-number":    tar.ErrHeader,
		"pax-header-too-big":     io.ErrUnexpectedEOF,
		"absurd-size-octal":      io.ErrUnexpectedEOF,
		"absurd-size-base256":    io.ErrUnexpectedEOF,
		"negative-size":          tar.ErrHeader,
		"size-not-octal":         tar.ErrHeader,
		"sparse-overlapping-map": tar.ErrHeader,
		"sparse-truncated-ext":   io.ErrUnexpectedEOF,
		"longname-then-eof":      nil, // archive/tar drops the dangling 'L' and reports io.EOF
	}
	ms := caseMap(t, Malformed(1))
	if len(ms) != len(want) {
		t.Errorf("%d malformed cases, the table knows %d", len(ms), len(want))
	}
	for name, c := range ms {
		t.Run(name, func(t *testing.T) {
			es, err := readAll(c.Data)
			if w := want[name]; (w == nil && err != nil) || !errors.Is(err, w) {
				t.Fatalf("archive/tar error = %v, want %v", err, want[name])
			}
			wantEntries := 1 // the valid first member
			if name == "truncated-in-padding" {
				wantEntries = 2 // its data is whole; only the padding is cut
			}
			if len(es) != wantEntries {
				t.Errorf("%d good entries before the error, want %d", len(es), wantEntries)
			}
		})
	}
}

func TestLayer(t *testing.T) {
	for _, size := range []int64{8 << 10, 100 << 10, 1 << 20, 16 << 20} {
		t.Run(fmt.Sprintf("%dKiB", size>>10), func(t *testing.T) {
			var a, b bytes.Buffer
			if err := Layer(&a, 42, size); err != nil {
				t.Fatal(err)
			}
			if err := Layer(&b, 42, size); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a.Bytes(), b.Bytes()) {
				t.Fatal("same seed, different layers")
			}
			got := int64(a.Len())
			if got < size*9/10 || got > size*11/10 {
				t.Errorf("layer is %d bytes, want %d ± 10%%", got, size)
			}
			es, err := readAll(a.Bytes())
			if err != nil {
				t.Fatalf("archive/tar: %v", err)
			}
			counts := map[byte]int{}
			seen := map[string]bool{}
			var maxSize int64
			for _, e := range es {
				counts[e.Type]++
				if seen[e.Name] {
					t.Errorf("duplicate path %q", e.Name)
				}
				if e.Type == tar.TypeLink && !seen[e.Linkname] {
					t.Errorf("hardlink %q to %q, which comes later or never", e.Name, e.Linkname)
				}
				seen[e.Name] = true
				maxSize = max(maxSize, e.Size)
			}
			if maxSize > max(size/5, 4096) {
				t.Errorf("largest file %d bytes, over maxFile", maxSize)
			}
			if size >= 16<<20 {
				var long, whiteouts int
				for _, e := range es {
					if len(e.Name) > 100 {
						long++
					}
					if strings.Contains(e.Name, "/.wh.") {
						whiteouts++
					}
				}
				if long == 0 || whiteouts == 0 {
					t.Errorf("%d names over 100 bytes and %d whiteouts, want some of each", long, whiteouts)
				}
			}
			if size >= 1<<20 {
				for _, typ := range []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink} {
					if counts[typ] == 0 {
						t.Errorf("no entries of type %q (counts %v)", typ, counts)
					}
				}
				var z bytes.Buffer
				zw := gzip.NewWriter(&z)
				zw.Write(a.Bytes())
				zw.Close()
				if ratio := float64(z.Len()) / float64(got); ratio < 0.2 || ratio > 0.9 {
					t.Errorf("gzip ratio %.2f: want a mix of compressible and incompressible content", ratio)
				}
			}
		})
	}
	t.Run("size within 10% for many seeds", func(t *testing.T) {
		for seed := int64(0); seed < 40; seed++ {
			for _, size := range []int64{8 << 10, 13 << 10, 50 << 10, 300 << 10} {
				var cw counting.Writer
				if err := Layer(&cw, seed, size); err != nil {
					t.Fatal(err)
				}
				if cw.N < size*9/10 || cw.N > size*11/10 {
					t.Errorf("seed %d: layer is %d bytes, want %d ± 10%%", seed, cw.N, size)
				}
			}
		}
	})
	t.Run("seeds differ", func(t *testing.T) {
		var a, b bytes.Buffer
		if err := Layer(&a, 1, 64<<10); err != nil {
			t.Fatal(err)
		}
		if err := Layer(&b, 2, 64<<10); err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Error("seeds 1 and 2 give the same layer")
		}
	})
	t.Run("tiny and bad sizes", func(t *testing.T) {
		var a bytes.Buffer
		if err := Layer(&a, 1, 0); err != nil || a.Len() != 1024 {
			t.Errorf("size 0: %d bytes, err %v", a.Len(), err)
		}
		if err := Layer(io.Discard, 1, -1); !errors.Is(err, ErrBadSize) {
			t.Errorf("size -1: err %v, want ErrBadSize", err)
		}
	})
	t.Run("write error", func(t *testing.T) {
		if err := Layer(failWriter{}, 1, 64<<10); err == nil {
			t.Error("no error from a failing writer")
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestFixtures(t *testing.T) {
	fs, err := Fixtures()
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) < len(fixtureNotes)-8 { // bsdtar/busybox fixtures may be absent
		t.Errorf("only %d fixtures", len(fs))
	}
	m := caseMap(t, fs)
	for _, name := range []string{"gnu-sparse-gnu.tar", "gnu-sparse-oldgnu.tar", "gnu-sparse-pax-0.1.tar",
		"gnu-sparse-pax-1.0.tar", "gnu-longnames-gnu.tar", "gnu-longnames-posix.tar", "gnu-longnames-ustar.tar",
		"gnu-hardlinks-gnu.tar", "gnu-v7.tar"} {
		if _, ok := m[name]; !ok {
			t.Errorf("required fixture %s missing", name)
		}
	}
	dir, err := fixtureDir()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fs {
		t.Run(c.Name, func(t *testing.T) {
			if !bytes.Contains(readme, []byte("`"+c.Name+"`")) {
				t.Error("fixture is not described in README.md")
			}
			if _, ok := fixtureNotes[c.Name]; !ok {
				t.Error("fixture has no entry in fixtureNotes")
			}
			if len(c.Data) >= 64<<10 {
				t.Errorf("fixture is %d bytes, want < 64 KiB", len(c.Data))
			}
			es, err := readAll(c.Data)
			if err != nil {
				t.Fatalf("archive/tar: %v", err)
			}
			if len(es) == 0 {
				t.Error("no entries")
			}
			if strings.Contains(c.Name, "sparse") {
				var sparse int
				for _, e := range es {
					if strings.HasPrefix(e.Name, "sparse/") && e.Size >= 256<<10 && int64(len(e.Data)) == e.Size {
						sparse++
					}
				}
				if sparse != 3 {
					t.Errorf("%d sparse files read back whole, want 3", sparse)
				}
			}
		})
	}
}
