package exefilter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// wholeLayout treats all of an n-byte buffer as code loaded at addr, with
// both target ranges [lo, lo+span).
func wholeLayout(n int, addr, lo, span uint64, forms Forms) Layout {
	return Layout{Forms: forms, Code: []Region{{Off: 0, Size: int64(n), Addr: addr}},
		CodeLo: lo, CodeHi: lo + span, DataLo: lo, DataHi: lo + span}
}

// alphabet is the bytes that start, continue or end an instruction form,
// plus a few others: random strings over it are dense in matches,
// overlapping forms and operands that look like converted ones.
var alphabet = []byte{0xE8, 0xE9, 0x0F, 0x80, 0x85, 0x8F, 0x48, 0x4C, 0x66, 0xF2,
	0x8B, 0x8D, 0x89, 0x05, 0x0D, 0x3D, 0x10, 0xB6, 0x00, 0xFF, 0x01, 0x40}

// gen returns n seeded bytes: uniform if dense is false, else over alphabet.
func gen(seed uint64, n int, dense bool) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		if dense {
			b[i] = alphabet[r.IntN(len(alphabet))]
		} else {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

// checkRoundTrip encodes in under l and checks every path back: Decode,
// NewDecoder through one-byte reads, the streaming NewEncoder, and the
// marshalled Params.
func checkRoundTrip(t *testing.T, in []byte, l Layout) (out []byte, p Params) {
	t.Helper()
	out, p, err := EncodeLayout(in, l)
	if err != nil {
		t.Fatalf("EncodeLayout: %v", err)
	}
	streamed, err := io.ReadAll(NewEncoder(iotest.HalfReader(bytes.NewReader(in)), l))
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	if !bytes.Equal(streamed, out) {
		t.Fatalf("NewEncoder output differs from EncodeLayout's")
	}
	m, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q Params
	if err := q.UnmarshalBinary(m); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	back, err := io.ReadAll(NewDecoder(iotest.OneByteReader(bytes.NewReader(out)), q))
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	if !bytes.Equal(back, in) {
		t.Fatalf("decoded bytes differ from the input")
	}
	return out, p
}

func TestRoundTripRandom(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		dense     bool
		addr, lo  uint64
		span      uint64
		forms     Forms
		wantConv  bool // some bytes must change
		wantExcep bool // some exceptions must be needed
	}{
		{"uniform/all/wide", 1 << 20, false, 0x400000, 0, 1 << 31, x86All, true, true},
		{"uniform/call/narrow", 1 << 20, false, 0x400000, 0x400000, 1 << 28, FormCall, true, true},
		{"dense/all/full", 1 << 18, true, 0, 0, 0xFFFFFFFF, x86All, true, false},
		{"dense/all/high", 1 << 18, true, 0xFFFFFF00, 0xFFFFF000, 1 << 24, x86All, true, true},
		{"dense/rip", 1 << 18, true, 0x1000, 0, 1 << 30, FormRIP, true, true},
		{"dense/jcc+jmp", 1 << 18, true, 0x1000, 0, 1 << 30, FormJcc | FormJmp, true, true},
		{"tiny", 7, true, 0, 0, 1 << 31, x86All, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(4) {
				in := gen(seed, tc.n, tc.dense)
				out, p := checkRoundTrip(t, in, wholeLayout(len(in), tc.addr, tc.lo, tc.span, tc.forms))
				if got := !bytes.Equal(in, out); got != tc.wantConv {
					t.Errorf("seed %d: output differs from input = %v, want %v", seed, got, tc.wantConv)
				}
				if got := len(p.Exceptions) > 0; got != tc.wantExcep && seed == 0 {
					t.Errorf("seed %d: %d exceptions, want some = %v", seed, len(p.Exceptions), tc.wantExcep)
				}
			}
		})
	}
}

func TestRoundTripAdversarial(t *testing.T) {
	rep := func(n int, pat ...byte) []byte { return bytes.Repeat(pat, n) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"all E8", rep(4096, 0xE8)},
		{"all E9", rep(4096, 0xE9)},
		{"E8 FF FF FF FF", rep(1000, 0xE8, 0xFF, 0xFF, 0xFF, 0xFF)},
		{"E8 00 00 00 00", rep(1000, 0xE8, 0, 0, 0, 0)},
		{"E8 then E8 inside operand", rep(1000, 0xE8, 0x00, 0xE8, 0x00, 0x00)},
		{"0F 85 chains", rep(1000, 0x0F, 0x85, 0x0F, 0x85)},
		{"48 8D 05 chains", rep(1000, 0x48, 0x8D, 0x05)},
		{"prefix soup", rep(1000, 0x66, 0x48, 0x0F, 0xB6, 0x05, 0xE8)},
		{"all zero", make([]byte, 4096)},
		{"all FF", rep(4096, 0xFF)},
	}
	ranges := []struct{ addr, lo, span uint64 }{
		{0, 0, 0xFFFFFFFF}, {0x400000, 0, 1 << 31}, {0xFFFFFFF0, 0xFFFFF000, 1 << 20}, {0, 0xFFFFFFF0, 0x20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range ranges {
				for f := Forms(1); f <= x86All; f++ {
					checkRoundTrip(t, tc.in, wholeLayout(len(tc.in), r.addr, r.lo, r.span, f))
				}
			}
		})
	}
}

// TestRegions checks scanning confined to regions: bytes outside them
// never change, even where they hold convertible forms.
func TestRegions(t *testing.T) {
	in := gen(3, 1<<16, true)
	l := Layout{Forms: x86All, Code: []Region{{Off: 100, Size: 1000, Addr: 0x1000}, {Off: 5000, Size: 7, Addr: 0x9000}, {Off: 6000, Size: 24*50 + 5, Symtab: true}, {Off: 9000, Size: 40000, Addr: 0x20000}},
		CodeLo: 0, CodeHi: 1 << 31, DataLo: 0, DataHi: 1 << 31}
	out, _ := checkRoundTrip(t, in, l)
	inside := func(i int) bool {
		for _, r := range l.Code {
			if int64(i) >= r.Off && int64(i) < r.end() {
				return true
			}
		}
		return false
	}
	changed := 0
	for i := range in {
		if in[i] != out[i] {
			if !inside(i) {
				t.Fatalf("byte %d outside the code regions changed", i)
			}
			changed++
		}
	}
	if changed == 0 {
		t.Fatal("nothing inside the regions changed")
	}
}

// elfFiles returns ELF files under the roots, up to limit bytes in total.
func elfFiles(t *testing.T, limit int64, roots ...string) []string {
	var files []string
	var total int64
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || total >= limit {
				return filepath.SkipDir
			}
			if !d.Type().IsRegular() {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			defer f.Close()
			var magic [4]byte
			if _, err := io.ReadFull(f, magic[:]); err != nil || string(magic[:]) != "\x7fELF" {
				return nil
			}
			if fi, err := f.Stat(); err == nil && total+fi.Size() <= limit {
				files = append(files, p)
				total += fi.Size()
			}
			return nil
		})
	}
	return files
}

// TestRoundTripRealELF round-trips every ELF file found under /usr/bin and
// /usr/lib (up to 300 MB, 40 MB with -short) with all forms.
func TestRoundTripRealELF(t *testing.T) {
	limit := int64(300 << 20)
	if testing.Short() {
		limit = 40 << 20
	}
	files := elfFiles(t, limit, "/usr/bin", "/usr/lib")
	if len(files) < 5 {
		t.Skipf("only %d ELF files found", len(files))
	}
	var filtered, excs int
	for _, f := range files {
		in, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		l := Analyze(bytes.NewReader(in), int64(len(in)), x86All)
		if len(l.Code) > 0 {
			filtered++
		}
		out, p, err := EncodeLayout(in, l)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		excs += len(p.Exceptions)
		var back bytes.Buffer
		if err := Decode(&back, bytes.NewReader(out), p); err != nil || !bytes.Equal(back.Bytes(), in) {
			t.Fatalf("%s: round trip failed (err %v)", f, err)
		}
	}
	t.Logf("%d ELF files, %d with x86-64 code filtered, %d exceptions", len(files), filtered, excs)
	if runtime.GOARCH == "amd64" && filtered == 0 {
		t.Fatal("no file was recognized as x86-64 ELF")
	}
}

func TestAnalyzeNotELF(t *testing.T) {
	tests := map[string][]byte{
		"empty":     nil,
		"text":      []byte("hello, world\n"),
		"elf magic": []byte("\x7fELF\x02\x01\x01garbage"),
		"random":    gen(1, 4096, false),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			out, p, err := Encode(in, x86All)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, in) || len(p.Layout.Code) != 0 || len(p.Exceptions) != 0 {
				t.Fatalf("not the identity: layout %+v, %d exceptions", p.Layout, len(p.Exceptions))
			}
		})
	}
}

func TestAnalyzeGoBinary(t *testing.T) {
	exe, err := os.Executable() // the test binary: an x86-64 ELF on amd64 Linux
	if err != nil {
		t.Skip(err)
	}
	in, err := os.ReadFile(exe)
	if err != nil || runtime.GOARCH != "amd64" || runtime.GOOS != "linux" {
		t.Skip("not linux/amd64")
	}
	l := Analyze(bytes.NewReader(in), int64(len(in)), DefaultForms)
	// .text, and with external linking (cgo) also .plt, .init and the
	// like, plus the symbol table.
	var text int64
	for _, r := range l.Code {
		if !r.Symtab {
			text = max(text, r.Size)
		}
	}
	if text < 1<<20 || l.Machine != 0 || l.Forms != DefaultForms&x86All || l.CodeLo >= l.CodeHi || l.DataLo > l.CodeLo || l.DataHi < l.CodeHi {
		t.Fatalf("unexpected layout %+v", l)
	}
	out, p := checkRoundTrip(t, in, l)
	if bytes.Equal(out, in) {
		t.Fatal("nothing converted in a Go binary")
	}
	t.Logf("%d bytes, %d exceptions", len(in), len(p.Exceptions))
}

func TestParamsMarshal(t *testing.T) {
	p := Params{
		Layout: Layout{Forms: x86All, Code: []Region{{Off: 64, Size: 100, Addr: 0x400040}, {Off: 4096, Size: 1 << 20, Addr: 0x401000}, {Off: 2 << 20, Size: 48, Symtab: true}},
			CodeLo: 0x401000, CodeHi: 0x501000, DataLo: 0x400000, DataHi: 0x900000},
		Exceptions: Exceptions{0, 5, 6, 1 << 40},
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q Params
	if err := q.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(p, q); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	var empty Params
	if b, err := (Params{}).MarshalBinary(); err != nil || empty.UnmarshalBinary(b) != nil {
		t.Fatalf("empty params: %v", err)
	}

	bad := map[string][]byte{
		"empty":         {},
		"version":       append([]byte{9}, b[1:]...),
		"truncated":     b[:len(b)-1],
		"trailing":      append(bytes.Clone(b), 0),
		"unknown forms": append([]byte{1, 0x80}, b[2:]...),
		"huge count":    {1, 1, 0xFF, 0xFF, 0x03},
		"zero size":     {1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0},
		"wide range":    {1, 1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0, 0},
	}
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			var q Params
			if err := q.UnmarshalBinary(in); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	if _, err := (Params{Exceptions: Exceptions{3, 3}}).MarshalBinary(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("repeated exception: got %v, want ErrCorrupt", err)
	}
}

// TestDecodeBadExceptions: exceptions that do not fall on an operand the
// decoder looks at are reported, not silently ignored.
func TestDecodeBadExceptions(t *testing.T) {
	in := append([]byte{0x90, 0x90, 0xE8, 1, 0, 0, 0}, make([]byte, 20)...)
	l := wholeLayout(len(in), 0, 0, 1<<20, FormCall)
	out, p, err := EncodeLayout(in, l)
	if err != nil || len(p.Exceptions) != 0 {
		t.Fatalf("setup: %v, %v", err, p.Exceptions)
	}
	tests := map[string]Exceptions{
		"not at an operand": {1},
		"past the end":      {1000},
		"unsorted":          {2, 1},
	}
	for name, exc := range tests {
		t.Run(name, func(t *testing.T) {
			err := Decode(io.Discard, bytes.NewReader(out), Params{Layout: l, Exceptions: exc})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
		})
	}
	// A valid flip decodes without error but differently: the check that
	// lets Encode catch a wrong exception list.
	var back bytes.Buffer
	if err := Decode(&back, bytes.NewReader(out), Params{Layout: l, Exceptions: Exceptions{2}}); err != nil || bytes.Equal(back.Bytes(), in) {
		t.Fatalf("flipped decode: err %v, equal %v", err, bytes.Equal(back.Bytes(), in))
	}
}

// codeReader yields n deterministic code-like bytes without holding them.
type codeReader struct {
	r *rand.Rand
	n int64
}

func (c *codeReader) Read(p []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), c.n)]
	for i := range p {
		p[i] = alphabet[c.r.IntN(len(alphabet))]
	}
	c.n -= int64(len(p))
	return len(p), nil
}

// TestDecoderMemoryBounded decodes 10 MB and 100 MB streams and checks the
// allocations do not grow with the length.
func TestDecoderMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes 110 MB")
	}
	l := wholeLayout(1<<40, 0x400000, 0, 1<<31, x86All)
	alloc := func(n int64) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		src := &codeReader{r: rand.New(rand.NewPCG(1, 2)), n: n}
		if err := Decode(io.Discard, src, Params{Layout: l}); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	small, large := alloc(10<<20), alloc(100<<20)
	t.Logf("allocated %d bytes for 10 MB, %d for 100 MB", small, large)
	if large > 1<<20 || large > 2*small+64<<10 {
		t.Fatalf("decoder allocations grow with input: %d bytes for 10 MB, %d for 100 MB", small, large)
	}
}

func BenchmarkEncode(b *testing.B) { benchFilter(b, false) }
func BenchmarkDecode(b *testing.B) { benchFilter(b, true) }

func benchFilter(b *testing.B, decode bool) {
	exe, err := os.Executable()
	if err != nil {
		b.Skip(err)
	}
	in, err := os.ReadFile(exe)
	if err != nil {
		b.Skip(err)
	}
	for _, f := range []Forms{FormCall, DefaultForms & x86All, x86All} {
		b.Run(f.String(), func(b *testing.B) {
			out, p, err := Encode(in, f)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if decode {
					err = Decode(io.Discard, bytes.NewReader(out), p)
				} else {
					_, _, err = Encode(in, f)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestSymtabShift: two symbol tables whose values differ by a constant from
// some entry on transform to tables that differ only at that entry.
func TestSymtabShift(t *testing.T) {
	const n = 100
	table := func(shiftFrom int, d uint64) []byte {
		b := make([]byte, n*symSize)
		v := uint64(0x401000)
		for k := range n {
			v += uint64(16 + k%7*8)
			val := v
			if k >= shiftFrom {
				val += d
			}
			b[k*symSize] = byte(k) // name offset
			binary.LittleEndian.PutUint64(b[k*symSize+symValue:], val)
		}
		return b
	}
	l := Layout{Forms: FormSymtab, Code: []Region{{Off: 0, Size: n * symSize, Symtab: true}}}
	a, _ := checkRoundTrip(t, table(n, 0), l)
	b, _ := checkRoundTrip(t, table(40, 0x230), l)
	for k := range n {
		same := bytes.Equal(a[k*symSize:(k+1)*symSize], b[k*symSize:(k+1)*symSize])
		if same != (k != 40) {
			t.Errorf("entry %d: equal after transform = %v", k, same)
		}
	}
}

// x86All are the forms an x86-64 Layout may hold.
const x86All = formX86 | FormSymtab
