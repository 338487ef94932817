package exefilter

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// armWords is n little-endian words of ARM64, A32 and T32 branch and
// address forms with random fields, mixed with random words.
func armWords(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 11))
	pats := []struct{ fixed, mask uint32 }{
		{0x94000000, 0x03FFFFFF}, // BL
		{0x14000000, 0x03FFFFFF}, // B
		{0x90000000, 0x60FFFFFF}, // ADRP
		{0x10000000, 0x60FFFFFF}, // ADR
		{0x54000000, 0x00FFFFEF}, // B.cond
		{0x34000000, 0x81FFFFFF}, // CBZ/CBNZ
		{0x36000000, 0x81FFFFFF}, // TBZ/TBNZ
		{0x18000000, 0xC4FFFFFF}, // LDR literal
		{0x0B000000, 0xF0FFFFFF}, // A32 BL
		{0x0A000000, 0xE0FFFFFF}, // A32 B
		{0xFA000000, 0x01FFFFFF}, // A32 BLX
		{0xF800F000, 0x37FF07FF}, // T32 BL pair (h1 low, h2 high)
		{0, 0xFFFFFFFF},          // anything
	}
	b := make([]byte, 4*n)
	for i := range n {
		p := pats[r.IntN(len(pats))]
		binary.LittleEndian.PutUint32(b[4*i:], p.fixed|r.Uint32()&p.mask)
	}
	return b
}

// armLayout covers all of in as one code region at addr.
func armLayout(m elf.Machine, forms Forms, addr uint64, size int) Layout {
	return Layout{Machine: m, Forms: forms, Code: []Region{{Off: 0, Size: int64(size), Addr: addr}}}
}

func TestARMRoundTrip(t *testing.T) {
	mA64, _ := machineForms(MachineARM64)
	mA32, _ := machineForms(MachineARM)
	for _, tc := range []struct {
		name  string
		m     elf.Machine
		forms Forms
		addr  uint64
		in    []byte
	}{
		{"a64/all/patterns", MachineARM64, mA64, 0x400000, armWords(1, 1<<16)},
		{"a64/default/patterns", MachineARM64, DefaultForms & mA64, 0x10000, armWords(2, 1<<16)},
		{"a64/all/random", MachineARM64, mA64, 0xFFFFF000, gen(3, 1<<18, false)},
		{"a64/unaligned start", MachineARM64, mA64, 0x10002, armWords(4, 4096)},
		{"a64/odd length", MachineARM64, mA64, 0x10000, armWords(5, 4096)[:16381]},
		{"a32/arm", MachineARM, FormA32Call | FormA32Jump, 0x10000, armWords(6, 1<<16)},
		{"a32/thumb", MachineARM, FormT32Call, 0x10000, armWords(7, 1<<16)},
		{"a32/thumb/odd address", MachineARM, mA32, 0x10001, armWords(8, 4096)},
		{"a32/all/random", MachineARM, mA32, 0x8000, gen(9, 1<<18, false)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, p := checkRoundTrip(t, tc.in, armLayout(tc.m, tc.forms, tc.addr, len(tc.in)))
			if len(p.Exceptions) != 0 {
				t.Errorf("%d exceptions: the ARM forms need none", len(p.Exceptions))
			}
			if bytes.Equal(out, tc.in) {
				t.Error("nothing converted")
			}
		})
	}
}

// TestARMEncodings pins the transform of known instructions: the field
// holds the absolute target (in its unit) modulo its width.
func TestARMEncodings(t *testing.T) {
	mA64, _ := machineForms(MachineARM64)
	for _, tc := range []struct {
		name     string
		m        elf.Machine
		forms    Forms
		addr     uint64
		in, want []byte
	}{
		// bl 0x2000 at 0x1000: imm26 0x400 + 0x1000/4 = 0x800.
		{"a64 bl", MachineARM64, mA64, 0x1000, le32(0x94000400), le32(0x94000800)},
		// bl back to 0 at 0x1000: imm26 -0x400 + 0x400 = 0.
		{"a64 bl backwards", MachineARM64, mA64, 0x1000, le32(0x97FFFC00), le32(0x94000000)},
		// adrp x0, 0x20000 at 0x10000: 0x10 pages + 0x10 = 0x20 (immhi 8).
		{"a64 adrp", MachineARM64, mA64 &^ FormA64Pair, 0x10000, le32(0x90000080), le32(0x90000100)},
		// The same with FormA64Pair: the page in bits 0-20, Rd (0) above.
		{"a64 adrp pair", MachineARM64, mA64, 0x10000, le32(0x90000080), le32(0x90000020)},
		// adrp x3 then add x3, x3, #0x123: Rd 3 to bits 21-23; imm12 to
		// bits 0-11, Rn and Rd (3, 3) to bits 12-21.
		{"a64 adrp add pair", MachineARM64, mA64, 0x10000, cat(le32(0x90000083), le32(0x91048C63)), cat(le32(0x90600020), le32(0x91063123))},
		// ldr x1, [x3, #0x10] (imm12 2, scaled) after the adrp.
		{"a64 adrp ldr pair", MachineARM64, mA64, 0x10000, cat(le32(0x90000083), le32(0xF9400861)), cat(le32(0x90600020), le32(0xF9461002))},
		// An add not right after an adrp stays.
		{"a64 add alone", MachineARM64, mA64, 0x10000, cat(le32(0xD503201F), le32(0x91048C63)), cat(le32(0xD503201F), le32(0x91048C63))},
		// adr x1, .+5 at 0x100: 5 + 0x100 = 0x105 (immlo 1, immhi 0x41).
		{"a64 adr", MachineARM64, mA64, 0x100, le32(0x30000021), le32(0x30000821)},
		// b.ne .+8 at 0x40: imm19 2 + 0x10 = 0x12.
		{"a64 b.cond", MachineARM64, mA64, 0x40, le32(0x54000041), le32(0x54000241)},
		// ldr x2, .+16 at 0x40: imm19 4 + 0x10 = 0x14.
		{"a64 ldr literal", MachineARM64, mA64, 0x40, le32(0x58000082), le32(0x58000282)},
		{"a64 b.cond form off", MachineARM64, FormA64Call, 0x40, le32(0x54000041), le32(0x54000041)},
		// bl 0x9000 at 0x8000 (A32): (0x9000-0x8008)/4 = 0x3FE + 0x8008/4 = 0x2400.
		{"a32 bl", MachineARM, FormA32Call, 0x8000, le32(0xEB0003FE), le32(0xEB002400)},
		{"a32 b not a call", MachineARM, FormA32Call, 0x8000, le32(0xEA0003FE), le32(0xEA0003FE)},
		// Thumb bl 0x9000 at 0x8000: (0x9000-0x8004)/2 = 0x7FE + 0x4002 = 0x4800 (0x9000/2).
		{"t32 bl", MachineARM, FormT32Call, 0x8000, le16s(0xF000, 0xFFFE), le16s(0xF009, 0xF800)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _ := checkRoundTrip(t, tc.in, armLayout(tc.m, tc.forms, tc.addr, len(tc.in)))
			if !bytes.Equal(out, tc.want) {
				t.Fatalf("got % x, want % x", out, tc.want)
			}
		})
	}
}

// TestARMMovedCode: the same function at two addresses, calling the same
// targets and addressing the same data, transforms to the same bytes.
func TestARMMovedCode(t *testing.T) {
	fn := func(at uint32) []byte {
		var b []byte
		for k := range uint32(64) {
			pc := at + 8*k
			callee := 0x100000 + 0x40*(k%7)
			data := uint32(0x800000 + 0x1000*(k%5))
			b = append(b, le32(0x94000000|((callee-pc)/4)&0x03FFFFFF)...)
			pages := (data>>12 - (pc+4)>>12) & 0x1FFFFF
			b = append(b, le32(0x90000000|(pages&3)<<29|(pages>>2)<<5)...)
		}
		return b
	}
	a, b := fn(0x40000), fn(0x47000)
	if bytes.Equal(a, b) {
		t.Fatal("the two copies should differ before the transform")
	}
	mA64, _ := machineForms(MachineARM64)
	ta, _ := checkRoundTrip(t, a, armLayout(MachineARM64, mA64, 0x40000, len(a)))
	tb, _ := checkRoundTrip(t, b, armLayout(MachineARM64, mA64, 0x47000, len(b)))
	if !bytes.Equal(ta, tb) {
		t.Fatal("moved code should transform to the same bytes")
	}
}

func le32(w uint32) []byte { return binary.LittleEndian.AppendUint32(nil, w) }

func le16s(hs ...uint16) []byte {
	var b []byte
	for _, h := range hs {
		b = binary.LittleEndian.AppendUint16(b, h)
	}
	return b
}

// goBuild cross-builds a small Go program for goarch (with env, e.g.
// GOARM=7) and returns the binary.
func goBuild(t *testing.T, goarch string, env ...string) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a Go program")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH")
	}
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\t\"strings\"\n)\n\nfunc main() {\n\tfmt.Println(strings.Repeat(os.Args[0], len(os.Args)))\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module armtest\n\ngo 1.22\n"), 0o644)
	cmd := exec.CommandContext(context.Background(), goBin, "build", "-o", "prog", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"GOOS=linux", "GOARCH=" + goarch, "CGO_ENABLED=0"}, env...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build for %s: %v\n%s", goarch, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "prog"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAnalyzeARMGoBinary: real ARM64 and ARMv7 Go binaries get their
// machine's forms, convert, and round-trip exactly with no exceptions.
func TestAnalyzeARMGoBinary(t *testing.T) {
	for _, tc := range []struct {
		goarch string
		env    []string
		m      elf.Machine
		not    Forms // forms Analyze leaves out
	}{
		{"arm64", nil, MachineARM64, 0},
		{"arm", []string{"GOARM=7"}, MachineARM, FormT32Call}, // Go writes ARM code, not Thumb
	} {
		t.Run(tc.goarch, func(t *testing.T) {
			in := goBuild(t, tc.goarch, tc.env...)
			l := Analyze(bytes.NewReader(in), int64(len(in)), DefaultForms)
			mf, _ := machineForms(tc.m)
			if want := DefaultForms & mf &^ tc.not; l.Machine != tc.m || l.Forms != want || len(l.Code) == 0 {
				t.Fatalf("layout %+v: want machine %v with forms %v", l, tc.m, want)
			}
			out, p := checkRoundTrip(t, in, l)
			changed := 0
			for i := 0; i+4 <= len(in); i += 4 {
				if !bytes.Equal(in[i:i+4], out[i:i+4]) {
					changed++
				}
			}
			if changed < len(in)/4/50 || len(p.Exceptions) != 0 {
				t.Fatalf("%d of %d words changed, %d exceptions", changed, len(in)/4, len(p.Exceptions))
			}
			t.Logf("%d bytes, %d words changed (%.1f%%), forms %v", len(in), changed, 100*float64(changed)/float64(len(in)/4), l.Forms)
		})
	}
}

// TestParamsMarshalARM: ARM Params take version 2, which names the
// machine, and read back; forms of another machine are refused.
func TestParamsMarshalARM(t *testing.T) {
	p := Params{Layout: Layout{Machine: MachineARM64, Forms: FormA64Call | FormA64Page | FormSymtab,
		Code: []Region{{Off: 0x10000, Size: 0x200000, Addr: 0x410000}, {Off: 0x400000, Size: 24 * 10, Symtab: true}}}}
	b, err := p.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != paramsVersionM {
		t.Fatalf("version %d, want %d", b[0], paramsVersionM)
	}
	var q Params
	if err := q.UnmarshalBinary(b); err != nil || q.Layout.Machine != p.Layout.Machine || q.Layout.Forms != p.Layout.Forms || len(q.Layout.Code) != 2 {
		t.Fatalf("read back %+v, %v", q, err)
	}
	for name, l := range map[string]Layout{
		"x86 forms on arm64":   {Machine: MachineARM64, Forms: FormCall},
		"arm64 forms on x86":   {Forms: FormA64Call},
		"unknown machine":      {Machine: elf.EM_MIPS, Forms: FormSymtab},
		"thumb forms on arm64": {Machine: MachineARM64, Forms: FormT32Call},
	} {
		if _, err := (Params{Layout: l}).MarshalBinary(); err == nil {
			t.Errorf("%s: marshalled", name)
		}
	}
	for name, in := range map[string][]byte{
		"machine 0 in version 2": {paramsVersionM, 0, 1, 0, 0, 0, 0, 0, 0},
	} {
		var q Params
		if err := q.UnmarshalBinary(in); err == nil {
			t.Errorf("%s: read", name)
		}
	}
}

// TestParamsMarshalARMBytes pins the version 2 header and refuses a
// machine's Params that name another machine's forms.
func TestParamsMarshalARMBytes(t *testing.T) {
	p := Params{Layout: Layout{Machine: MachineARM64, Forms: FormA64Call | FormA64Page | FormSymtab}}
	b, _ := p.MarshalBinary()
	if !bytes.HasPrefix(b, []byte{paramsVersionM, 0xB7, 0x01, 0xB0, 0x01}) {
		t.Fatalf("arm64 params % x: want version 2, uvarint machine 183, uvarint forms 0xB0", b)
	}
	var q Params
	in := append([]byte{paramsVersionM, 0xB7, 0x01, byte(FormCall)}, b[5:]...)
	if err := q.UnmarshalBinary(in); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("x86 forms on arm64: %v, want ErrCorrupt", err)
	}
}

func cat(b ...[]byte) []byte { return bytes.Join(b, nil) }
