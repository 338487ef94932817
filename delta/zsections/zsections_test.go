package zsections

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
	kzlib "github.com/klauspost/compress/zlib"

	"github.com/skiff-dev/skiff/delta/exefilter"
)

// roundTrip checks everything a caller relies on for one Expand result:
// both streams invert it (with awkward read sizes too), Params survive
// marshalling, and the expanded sections match their declared sizes.
func roundTrip(t *testing.T, in, out []byte, p Params) {
	t.Helper()
	for name, r := range map[string]io.Reader{
		"compressor":         NewCompressor(bytes.NewReader(out), p),
		"compressor/onebyte": iotest.OneByteReader(NewCompressor(iotest.HalfReader(bytes.NewReader(out)), p)),
		"expander":           NewExpander(bytes.NewReader(in), p),
		"expander/onebyte":   iotest.OneByteReader(NewExpander(iotest.DataErrReader(bytes.NewReader(in)), p)),
	} {
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := in
		if strings.HasPrefix(name, "expander") {
			want = out
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes differ from the expected %d", name, len(got), len(want))
		}
	}
	if int64(len(out))-int64(len(in)) != p.Growth() {
		t.Fatalf("output grew by %d, Params say %d", len(out)-len(in), p.Growth())
	}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var q Params
	if err := q.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, q); diff != "" {
		t.Fatalf("Params after marshalling (-want +got):\n%s", diff)
	}
}

// composed checks skiff's order: exefilter, then Expand on its output;
// the device undoes them in reverse order.
func composed(t *testing.T, in []byte) (expanded bool) {
	t.Helper()
	t1, p1, err := exefilter.Encode(in, exefilter.DefaultForms)
	if err != nil {
		t.Fatal(err)
	}
	e, p2, ok, err := Expand(t1)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return false
	}
	roundTrip(t, t1, e, p2)
	got, err := io.ReadAll(exefilter.NewDecoder(NewCompressor(bytes.NewReader(e), p2), p1))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, in) {
		t.Fatalf("decoding in reverse order: %d bytes differ from the %d-byte original", len(got), len(in))
	}
	// The base path: the device filters and expands the file it has.
	base, err := io.ReadAll(NewExpander(exefilter.NewEncoder(bytes.NewReader(in), p1.Layout), p2))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(base, e) {
		t.Fatalf("exefilter.NewEncoder then NewExpander: %d bytes differ from Expand's %d", len(base), len(e))
	}
	return true
}

func TestSynthetic(t *testing.T) {
	le, be := binary.LittleEndian, binary.BigEndian
	raw := func(seed uint64) []byte { return text(seed, 40000+int(seed)*7000) }
	comp := func(is64 bool, bo order, level int, seed uint64) elfSection {
		r := raw(seed)
		return elfSection{name: ".debug_x", flags: shfCompressed, data: append(chdr(is64, bo, len(r)), zlibAt(t, level, r)...)}
	}
	// klauspost's zlib makes valid streams that Go's cannot reproduce.
	var kb bytes.Buffer
	kw, _ := kzlib.NewWriterLevel(&kb, 1)
	kw.Write(raw(50))
	kw.Close()
	if bytes.Equal(kb.Bytes(), zlibAt(t, 1, raw(50))) {
		t.Fatal("klauspost and Go zlib agree; the foreign-stream case tests nothing")
	}
	foreign := elfSection{name: ".debug_f", flags: shfCompressed, data: append(chdr(true, le, len(raw(50))), kb.Bytes()...)}
	zdebug := elfSection{name: ".zdebug_info", data: append(binary.BigEndian.AppendUint64([]byte("ZLIB"), uint64(len(raw(60)))), zlibAt(t, 1, raw(60))...)}
	trailing := comp(true, le, 1, 70)
	trailing.data = append(trailing.data, "padding"...)
	lying := comp(true, le, 1, 80)
	binary.LittleEndian.PutUint64(lying.data[8:], uint64(len(raw(80))+1))
	truncated := comp(true, le, 1, 90)
	truncated.data = truncated.data[:len(truncated.data)-10]
	plain := elfSection{name: ".debug_plain", data: raw(3)}
	empty := elfSection{name: ".debug_e", flags: shfCompressed, data: append(chdr(true, le, 0), zlibAt(t, 1, nil)...)}

	var all64 []elfSection
	var levels []int
	for l := minLevel; l <= maxLevel; l++ {
		all64 = append(all64, comp(true, le, l, uint64(l+3)))
		levels = append(levels, l)
	}
	tests := []struct {
		name  string
		is64  bool
		bo    order
		secs  []elfSection
		count int // sections expected to expand
	}{
		{"64LE every level", true, le, all64, len(all64)},
		{"32LE", false, le, []elfSection{plain, comp(false, le, 1, 1), comp(false, le, 9, 2)}, 2},
		{"64BE", true, be, []elfSection{comp(true, be, 1, 1), plain}, 1},
		{"32BE", false, be, []elfSection{comp(false, be, 6, 1)}, 1},
		{"zdebug", true, le, []elfSection{plain, zdebug}, 1},
		{"foreign stays", true, le, []elfSection{comp(true, le, 1, 1), foreign, comp(true, le, 1, 2)}, 2},
		{"trailing bytes kept", true, le, []elfSection{trailing}, 1},
		{"wrong declared size", true, le, []elfSection{lying, comp(true, le, 1, 4)}, 1},
		{"truncated stream", true, le, []elfSection{truncated}, 0},
		{"empty section", true, le, []elfSection{empty}, 1},
		{"nothing compressed", true, le, []elfSection{plain}, 0},
		{"only foreign", true, le, []elfSection{foreign}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := buildELF(tc.is64, tc.bo, tc.secs)
			keep := bytes.Clone(in)
			out, p, ok, err := Expand(in)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(in, keep) {
				t.Fatal("Expand modified its input")
			}
			if ok != (tc.count > 0) || len(p.Sections) != tc.count {
				t.Fatalf("ok=%v with %d sections, want %d", ok, len(p.Sections), tc.count)
			}
			if !ok {
				if out != nil {
					t.Fatal("ok=false with output")
				}
				return
			}
			roundTrip(t, in, out, p)
			if tc.name == "64LE every level" {
				var got []int
				for _, s := range p.Sections {
					got = append(got, s.Level)
				}
				// Levels with identical output may be found in place
				// of each other; only the header group must match.
				for i := range got {
					if levelsFor(zlibAt(t, got[i], nil)[1])[0] != levelsFor(zlibAt(t, levels[i], nil)[1])[0] {
						t.Fatalf("section %d: level %d found for a level-%d stream", i, got[i], levels[i])
					}
				}
			}
		})
	}
}

func TestNotELF(t *testing.T) {
	elf := buildELF(true, binary.LittleEndian, []elfSection{{name: ".debug_x", flags: shfCompressed,
		data: append(chdr(true, binary.LittleEndian, 5000), zlibAt(t, 1, text(1, 5000))...)}})
	badShoff := bytes.Clone(elf)
	binary.LittleEndian.PutUint64(badShoff[0x28:], 1<<62)
	hugeShnum := bytes.Clone(elf)
	binary.LittleEndian.PutUint16(hugeShnum[0x3c:], 0xfff0)
	for name, in := range map[string][]byte{
		"empty":         nil,
		"text":          text(1, 10000),
		"magic only":    []byte("\x7fELF"),
		"header only":   elf[:64],
		"truncated":     elf[:len(elf)-30],
		"bad shoff":     badShoff,
		"huge shnum":    hugeShnum,
		"bad class":     append([]byte("\x7fELF\x07\x01"), make([]byte, 100)...),
		"zlib, not ELF": zlibAt(t, 1, text(2, 10000)),
	} {
		t.Run(name, func(t *testing.T) {
			out, p, ok, err := Expand(in)
			if err != nil || ok || out != nil || len(p.Sections) != 0 {
				t.Fatalf("got ok=%v err=%v, %d bytes, %d sections; want nothing", ok, err, len(out), len(p.Sections))
			}
		})
	}
}

// TestGoBuilt builds small Go programs with the linker's DWARF
// compression on and off, for 64- and 32-bit targets.
func TestGoBuilt(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if testing.Short() {
		t.Skip("builds Go programs")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\", 42) }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644)
	for _, tc := range []struct {
		goarch, flags string
		want          bool
	}{
		{"amd64", "-compressdwarf=true", true},
		{"386", "-compressdwarf=true", true},
		{"arm64", "-compressdwarf=true", true},
		{"amd64", "-compressdwarf=false", false},
		{"amd64", "-s -w", false},
	} {
		t.Run(tc.goarch+tc.flags, func(t *testing.T) {
			bin := filepath.Join(dir, "hello-"+tc.goarch)
			cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags="+tc.flags, "-o", bin, ".")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "GOARCH="+tc.goarch, "GOOS=linux", "CGO_ENABLED=0", "GOFLAGS=-mod=mod")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, b)
			}
			in, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			out, p, ok, err := Expand(in)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Fatalf("ok=%v, want %v", ok, tc.want)
			}
			if ok {
				if len(p.Sections) < 4 {
					t.Fatalf("only %d sections expanded: %+v", len(p.Sections), p)
				}
				roundTrip(t, in, out, p)
				composed(t, in)
			}
		})
	}
}

// localELFs lists ELF executables on this machine worth trying: the Go
// toolchain's and those in the usual bin directories.
func localELFs(t *testing.T) []string {
	var dirs []string
	dirs = append(dirs, filepath.Join(runtime.GOROOT(), "bin"))
	m, _ := filepath.Glob(filepath.Join(runtime.GOROOT(), "pkg", "tool", "*"))
	dirs = append(dirs, m...)
	g, _ := filepath.Glob("/usr/lib/go*/bin")
	dirs = append(dirs, g...)
	dirs = append(dirs, "/usr/local/bin", "/usr/bin", "/usr/sbin", os.ExpandEnv("$HOME/go/bin"))
	var files []string
	if self, err := os.Executable(); err == nil {
		files = append(files, self) // a Go binary, with DWARF unless stripped
	}
	for _, d := range dirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() || fi.Size() < 64 || fi.Size() > 300<<20 {
				continue
			}
			f, err := os.Open(p)
			if err != nil {
				continue
			}
			var magic [4]byte
			io.ReadFull(f, magic[:])
			f.Close()
			if string(magic[:]) == "\x7fELF" {
				files = append(files, p)
			}
		}
	}
	return files
}

// TestLocalBinaries round-trips every ELF executable found on the
// machine; any that Expand touches must come back exactly.
func TestLocalBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("reads every local binary")
	}
	var tried, expanded int
	for _, f := range localELFs(t) {
		in, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		tried++
		out, p, ok, err := Expand(in)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if ok {
			expanded++
			t.Run(filepath.Base(f), func(t *testing.T) { roundTrip(t, in, out, p) })
		}
	}
	t.Logf("%d ELF files, %d with reproducible compressed sections", tried, expanded)
}

// corpusFile reads one member of a corpus layer tar, or skips.
func corpusFile(t testing.TB, layer, name string) []byte {
	t.Helper()
	home, _ := os.UserHomeDir()
	f, err := os.Open(filepath.Join(home, ".cache/skiff/corpus/layers", layer))
	if err != nil {
		t.Skipf("corpus not present: %v", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Skipf("%s not in %s: %v", name, layer, err)
		}
		if h.Name == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestCorpus round-trips the real binaries of the measured pairs, alone
// and composed with exefilter.
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("reads the corpus")
	}
	for _, tc := range []struct {
		layer, name string
		want        bool // Go release tools carry no DWARF
	}{
		{"app/old.tar", "usr/local/bin/node_exporter", true},
		{"app/new.tar", "usr/local/bin/node_exporter", true},
		{"toolchain/new.tar", "usr/local/go/pkg/tool/linux_amd64/compile", false},
		{"toolchain/new.tar", "usr/local/go/bin/go", false},
	} {
		t.Run(tc.layer+"/"+filepath.Base(tc.name), func(t *testing.T) {
			in := corpusFile(t, tc.layer, tc.name)
			out, p, ok, err := Expand(in)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.want {
				t.Fatalf("ok=%v, want %v", ok, tc.want)
			}
			if ok {
				roundTrip(t, in, out, p)
			}
			if composed(t, in) != tc.want {
				t.Fatalf("composed with exefilter: expanded=%v, want %v", !tc.want, tc.want)
			}
		})
	}
}

// validPair returns a small expanded stream and its Params.
func validPair(t testing.TB) (in, out []byte, p Params) {
	in = buildELF(true, binary.LittleEndian, []elfSection{
		{name: ".debug_a", flags: shfCompressed, data: append(chdr(true, binary.LittleEndian, 3000), zlibAt(t, 1, text(1, 3000))...)},
		{name: ".debug_b", flags: shfCompressed, data: append(chdr(true, binary.LittleEndian, 2000), zlibAt(t, 6, text(2, 2000))...)},
	})
	out, p, ok, err := Expand(in)
	if err != nil || !ok {
		t.Fatalf("Expand: ok=%v err=%v", ok, err)
	}
	return in, out, p
}

func TestHostile(t *testing.T) {
	in, out, p := validPair(t)
	s0, s1 := p.Sections[0], p.Sections[1]
	with := func(f func(s []Section)) Params {
		s := []Section{s0, s1}
		f(s)
		return Params{Sections: s}
	}
	tests := []struct {
		name   string
		p      Params
		stream []byte // expanded stream (compressor); nil: out
		orig   []byte // original (expander); nil: in
		only   string // "c" or "e": the case concerns only that direction
	}{
		{"overlap", with(func(s []Section) { s[1].Off = s[0].Off + 1 }), nil, nil, ""},
		{"negative size", with(func(s []Section) { s[0].Size = -1 }), nil, nil, ""},
		{"zero zsize", with(func(s []Section) { s[0].ZSize = 0 }), nil, nil, ""},
		{"level 10", with(func(s []Section) { s[0].Level = 10 }), nil, nil, ""},
		{"level -3", with(func(s []Section) { s[0].Level = -3 }), nil, nil, ""},
		{"huge size", with(func(s []Section) { s[1].Size = maxLen }), nil, nil, ""},
		{"huge offset", with(func(s []Section) { s[1].Off = maxLen - 10 }), nil, nil, ""},
		{"zsize short", with(func(s []Section) { s[0].ZSize-- }), nil, nil, ""},
		{"zsize long", with(func(s []Section) { s[0].ZSize++ }), nil, nil, ""},
		{"size short", with(func(s []Section) { s[0].Size-- }), nil, nil, ""},
		{"size long", with(func(s []Section) { s[0].Size++ }), nil, nil, ""},
		{"wrong level", with(func(s []Section) { s[0].Level = 9 }), nil, nil, "c"},
		{"shifted", with(func(s []Section) { s[0].Off++ }), nil, nil, ""},
		{"stream ends before", p, out[:s0.Off-5], in[:s0.Off-5], ""},
		{"stream ends inside", p, out[:s1.Off+100], in[:s1.Off-s0.Size+s0.ZSize+20], ""},
		{"compressed stream corrupt", p, nil, func() []byte { b := bytes.Clone(in); b[s0.Off+50] ^= 0xff; return b }(), "e"},
		{"compressed stream shifted", p, nil, append([]byte{0}, in...), "e"},
		{"expanded stream shifted", p, append([]byte{0}, out...), nil, "c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream, orig := tc.stream, tc.orig
			if stream == nil {
				stream = out
			}
			if orig == nil {
				orig = in
			}
			if tc.only != "e" {
				got, err := io.ReadAll(NewCompressor(bytes.NewReader(stream), tc.p))
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("compressor: err=%v (%d bytes), want ErrCorrupt", err, len(got))
				}
			}
			if tc.only != "c" {
				got, err := io.ReadAll(NewExpander(bytes.NewReader(orig), tc.p))
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("expander: err=%v (%d bytes), want ErrCorrupt", err, len(got))
				}
			}
		})
	}
}

func TestUnmarshalHostile(t *testing.T) {
	_, _, p := validPair(t)
	good, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	over := append([]byte{paramsVersion}, binary.AppendUvarint(nil, 1<<40)...)
	tests := map[string][]byte{
		"empty":        nil,
		"version":      append([]byte{2}, good[1:]...),
		"huge count":   over,
		"count>bytes":  {paramsVersion, 3, 0, 1, 1, 3},
		"truncated":    good[:len(good)-1],
		"trailing":     append(bytes.Clone(good), 0),
		"overlong":     {paramsVersion, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
		"level byte":   {paramsVersion, 1, 0, 1, 1, 12},
		"zero zsize":   {paramsVersion, 1, 0, 1, 0, 3},
		"size > max":   append([]byte{paramsVersion, 1, 0}, append(binary.AppendUvarint(nil, maxLen+1), 1, 3)...),
		"offset > max": append([]byte{paramsVersion, 2, 0, 1, 1, 3}, append(binary.AppendUvarint(nil, maxLen), 1, 1, 3)...),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			var q Params
			if err := q.UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err=%v, want ErrCorrupt", err)
			}
		})
	}
	var q Params
	if err := q.UnmarshalBinary(good); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, q); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	var zero Params
	b, _ := zero.MarshalBinary()
	if err := q.UnmarshalBinary(b); err != nil || len(q.Sections) != 0 {
		t.Fatalf("zero Params: %v %+v", err, q)
	}
}
