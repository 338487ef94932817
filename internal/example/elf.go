package example

import (
	"fmt"
	"strings"
)

// This file models a compiled program closely enough that its bytes behave
// like a real ELF object under diffing and compression: x86-64-like code
// built from a weighted instruction vocabulary and repeated idioms, calls and
// RIP-relative loads whose displacements depend on the layout, a string
// table, tables of records holding absolute addresses, an .eh_frame-like
// table, a symbol table and section headers that debug/elf can parse.
// A recompile (see recompile) edits the program model and lays it out
// again, so inserted or deleted functions shift addresses everywhere.

type opKind uint8

const (
	kFixed   opKind = iota // just the opcode bytes
	kImm8                  // opcode + 8-bit immediate or displacement
	kImm32                 // opcode + 32-bit immediate
	kCall                  // e8 rel32 to a function
	kStrRef                // lea reg, [rip+rel32] to a string
	kDataRef               // mov reg, [rip+rel32] to a data slot
)

type opcode struct {
	kind   opKind
	b      []byte
	weight int
}

func (o opcode) size() int {
	switch o.kind {
	case kImm8:
		return len(o.b) + 1
	case kImm32, kCall, kStrRef, kDataRef:
		return len(o.b) + 4
	}
	return len(o.b)
}

var opcodes = []opcode{
	{kFixed, []byte{0x48, 0x89, 0xc7}, 30},  // mov rdi, rax
	{kFixed, []byte{0x48, 0x89, 0xde}, 12},  // mov rsi, rbx
	{kFixed, []byte{0x48, 0x89, 0xdf}, 14},  // mov rdi, rbx
	{kFixed, []byte{0x4c, 0x89, 0xe7}, 10},  // mov rdi, r12
	{kFixed, []byte{0x4c, 0x89, 0xee}, 8},   // mov rsi, r13
	{kFixed, []byte{0x31, 0xc0}, 20},        // xor eax, eax
	{kFixed, []byte{0x31, 0xd2}, 8},         // xor edx, edx
	{kFixed, []byte{0x48, 0x85, 0xc0}, 25},  // test rax, rax
	{kFixed, []byte{0x85, 0xc0}, 18},        // test eax, eax
	{kFixed, []byte{0x48, 0x63, 0xd0}, 5},   // movsxd rdx, eax
	{kFixed, []byte{0x0f, 0xb6, 0xc0}, 6},   // movzx eax, al
	{kFixed, []byte{0x48, 0x01, 0xd0}, 8},   // add rax, rdx
	{kFixed, []byte{0x48, 0x29, 0xc2}, 4},   // sub rdx, rax
	{kFixed, []byte{0x48, 0x98}, 4},         // cdqe
	{kFixed, []byte{0x5b}, 3},               // pop rbx
	{kImm8, []byte{0x48, 0x8b, 0x45}, 30},   // mov rax, [rbp+d8]
	{kImm8, []byte{0x48, 0x89, 0x45}, 22},   // mov [rbp+d8], rax
	{kImm8, []byte{0x8b, 0x45}, 14},         // mov eax, [rbp+d8]
	{kImm8, []byte{0x89, 0x45}, 10},         // mov [rbp+d8], eax
	{kImm8, []byte{0x48, 0x8b, 0x43}, 16},   // mov rax, [rbx+d8]
	{kImm8, []byte{0x48, 0x8b, 0x7b}, 10},   // mov rdi, [rbx+d8]
	{kImm8, []byte{0x48, 0x89, 0x43}, 8},    // mov [rbx+d8], rax
	{kImm8, []byte{0x48, 0x8d, 0x7d}, 6},    // lea rdi, [rbp+d8]
	{kImm8, []byte{0x83, 0xf8}, 10},         // cmp eax, i8
	{kImm8, []byte{0x48, 0x83, 0xf8}, 6},    // cmp rax, i8
	{kImm8, []byte{0x48, 0x83, 0xc0}, 6},    // add rax, i8
	{kImm8, []byte{0x74}, 24},               // je rel8
	{kImm8, []byte{0x75}, 18},               // jne rel8
	{kImm8, []byte{0x7e}, 4},                // jle rel8
	{kImm8, []byte{0xeb}, 12},               // jmp rel8
	{kImm32, []byte{0xb8}, 10},              // mov eax, i32
	{kImm32, []byte{0xba}, 8},               // mov edx, i32
	{kImm32, []byte{0xbe}, 8},               // mov esi, i32
	{kImm32, []byte{0x0f, 0x84}, 8},         // je rel32
	{kImm32, []byte{0x0f, 0x85}, 6},         // jne rel32
	{kImm32, []byte{0x48, 0x8b, 0x87}, 4},   // mov rax, [rdi+d32]
	{kCall, []byte{0xe8}, 40},               // call rel32
	{kStrRef, []byte{0x48, 0x8d, 0x3d}, 12}, // lea rdi, [rip+rel32]
	{kStrRef, []byte{0x48, 0x8d, 0x35}, 8},  // lea rsi, [rip+rel32]
	{kDataRef, []byte{0x48, 0x8b, 0x05}, 8}, // mov rax, [rip+rel32]
	{kDataRef, []byte{0x89, 0x05}, 4},       // mov [rip+rel32], eax
}

var opTotalWeight = func() int {
	t := 0
	for _, o := range opcodes {
		t += o.weight
	}
	return t
}()

// Indexes of the fixed prologue/epilogue instructions.
var (
	opPushRBP = addOp(kFixed, 0x55)
	opMovRBP  = addOp(kFixed, 0x48, 0x89, 0xe5)
	opPushRBX = addOp(kFixed, 0x53)
	opSubRSP  = addOp(kImm8, 0x48, 0x83, 0xec)
	opAddRSP  = addOp(kImm8, 0x48, 0x83, 0xc4)
	opPopRBP  = addOp(kFixed, 0x5d)
	opRet     = addOp(kFixed, 0xc3)
	opPopRBX  = addOp(kFixed, 0x5b)
)

// addOp appends an opcode with weight 0 (never drawn at random).
func addOp(k opKind, b ...byte) uint16 {
	opcodes = append(opcodes, opcode{kind: k, b: b})
	return uint16(len(opcodes) - 1)
}

type instr struct {
	op  uint16
	imm uint32
	ref int32 // function, string or data-slot id for reference kinds
}

type function struct {
	id   int32
	name string
	body []instr
}

type str struct {
	id int32
	s  string
}

type nameStyle int

const (
	styleC nameStyle = iota
	styleGo
)

type program struct {
	exec    bool
	style   nameStyle
	prefix  string
	funcs   []*function
	strs    []str
	nData   int
	tables  [][]int32 // tables of function pointers (vtables, handler tables)
	comment string
	nextF   int32
	nextS   int32
	idioms  [][]instr
}

// genProgram generates a program of roughly size bytes when encoded.
func genProgram(label string, size int, exec bool, style nameStyle, prefix string) *program {
	r := newRNG("program/" + label)
	p := &program{exec: exec, style: style, prefix: prefix,
		comment: "GCC: (Debian 12.2.0-14) 12.2.0"}
	if style == styleGo {
		p.comment = "Go cmd/compile go1.22.5"
	}
	for range 96 {
		n := r.between(2, 7)
		id := make([]instr, n)
		for i := range id {
			id[i] = randInstr(r)
		}
		p.idioms = append(p.idioms, id)
	}
	// Strings: about 14% of the file.
	for total := 0; total < size*14/100; {
		s := genString(r, p)
		p.strs = append(p.strs, str{id: p.nextS, s: s})
		p.nextS++
		total += len(s) + 1
	}
	p.nData = max(8, size/200)
	// Code: about 62% of the file.
	for total := 0; total < size*62/100; {
		f := p.genFunction(r)
		p.funcs = append(p.funcs, f)
		total += f.size() + 8
	}
	for i, f := range p.funcs {
		p.bindRefs(r, f, i)
	}
	for total := 0; total < size*3/100; {
		t := make([]int32, r.between(3, 14))
		for i := range t {
			t[i] = p.funcs[r.intn(len(p.funcs))].id
		}
		p.tables = append(p.tables, t)
		total += 8 * len(t)
	}
	return p
}

func randInstr(r *rng) instr {
	w := r.intn(opTotalWeight)
	op := 0
	for ; op < len(opcodes); op++ {
		if w < opcodes[op].weight {
			break
		}
		w -= opcodes[op].weight
	}
	in := instr{op: uint16(op), ref: -1}
	switch opcodes[op].kind {
	case kImm8:
		// Stack and struct offsets: small multiples of 8.
		if r.chance(0.7) {
			in.imm = uint32(r.skewed(16) * 8)
			if opcodes[op].b[len(opcodes[op].b)-1] == 0x45 || opcodes[op].b[len(opcodes[op].b)-1] == 0x7d {
				in.imm = uint32(256 - 8*(1+r.skewed(16)))
			}
		} else {
			in.imm = uint32(r.intn(256))
		}
	case kImm32:
		switch {
		case r.chance(0.6):
			in.imm = uint32(r.skewed(256))
		case r.chance(0.7):
			in.imm = uint32(r.intn(1 << 16))
		default:
			in.imm = uint32(r.u64())
		}
	}
	return in
}

func (p *program) funcName(r *rng) string {
	if p.style == styleGo {
		pkg := r.pick(words)
		if r.chance(0.5) {
			return fmt.Sprintf("%s/%s.(*%s).%s%s", p.prefix, pkg, capitalize(r.pick(words)), capitalize(r.pick(words)), capitalize(r.pick(words)))
		}
		return fmt.Sprintf("%s/%s.%s%s", p.prefix, pkg, r.pick(words), capitalize(r.pick(words)))
	}
	return p.prefix + "_" + identifier(r, r.between(1, 3))
}

func genString(r *rng, p *program) string {
	switch r.intn(7) {
	case 0:
		return fmt.Sprintf("failed to %s %s: %%s", r.pick(words), r.pick(words))
	case 1:
		return fmt.Sprintf("%s: invalid %s %%d (want %%d)", p.prefix, r.pick(words))
	case 2:
		return "/" + strings.Join([]string{r.pick(words), r.pick(words), r.pick(words)}, "/")
	case 3:
		return identifier(r, r.between(1, 3))
	case 4:
		return strings.ToUpper(identifier(r, r.between(1, 2)))
	default:
		return strings.TrimSuffix(sentence(r), ".")
	}
}

func (p *program) genFunction(r *rng) *function {
	f := &function{id: p.nextF, name: p.funcName(r)}
	p.nextF++
	frame := uint32(8 * r.between(1, 12))
	f.body = append(f.body,
		instr{op: opPushRBP, ref: -1}, instr{op: opMovRBP, ref: -1})
	saves := r.chance(0.5)
	if saves {
		f.body = append(f.body, instr{op: opPushRBX, ref: -1})
	}
	f.body = append(f.body, instr{op: opSubRSP, imm: frame, ref: -1})
	n := r.between(3, 30)
	if r.chance(0.15) {
		n = r.between(30, 400)
	}
	for len(f.body) < n {
		if r.chance(0.45) {
			f.body = append(f.body, p.idioms[r.skewed(len(p.idioms))]...)
		} else {
			f.body = append(f.body, randInstr(r))
		}
	}
	f.body = append(f.body, instr{op: opAddRSP, imm: frame, ref: -1})
	if saves {
		f.body = append(f.body, instr{op: opPopRBX, ref: -1})
	}
	f.body = append(f.body, instr{op: opPopRBP, ref: -1}, instr{op: opRet, ref: -1})
	return f
}

// bindRefs points every reference of f, which sits at index pos, to a
// target: calls go to nearby or popular functions, strings are mostly those
// near the function's position (compilers emit rodata in function order).
func (p *program) bindRefs(r *rng, f *function, pos int) {
	for i := range f.body {
		in := &f.body[i]
		switch opcodes[in.op].kind {
		case kCall:
			if r.chance(0.5) {
				j := min(max(pos+r.between(-20, 20), 0), len(p.funcs)-1)
				in.ref = p.funcs[j].id
			} else {
				in.ref = p.funcs[r.skewed(len(p.funcs))].id
			}
		case kStrRef:
			j := pos * len(p.strs) / max(1, len(p.funcs))
			j = min(max(j+r.between(-40, 40), 0), len(p.strs)-1)
			in.ref = p.strs[j].id
		case kDataRef:
			in.ref = int32(r.intn(p.nData))
		}
	}
}

func (f *function) size() int {
	n := 0
	for _, in := range f.body {
		n += opcodes[in.op].size()
	}
	return n
}

// recompile describes how a new build of a program differs from the old.
type recompile struct {
	delFuncs, addFuncs, editFuncs float64
	editStrs, addStrs             float64
	comment                       string            // new .comment, if not empty
	replace                       map[string]string // exact strings to replace (looked up, never iterated)
}

// mutate returns a new program; p is not modified.
func (p *program) mutate(label string, m recompile) *program {
	r := newRNG("recompile/" + label)
	q := *p
	q.funcs = nil
	q.strs = nil
	q.tables = nil
	deleted := map[int32]bool{}
	for _, f := range p.funcs {
		switch {
		case r.chance(m.delFuncs):
			deleted[f.id] = true
		case r.chance(m.editFuncs):
			q.funcs = append(q.funcs, editFunction(r, &q, f))
		default:
			q.funcs = append(q.funcs, f)
		}
		if r.chance(m.addFuncs) {
			nf := q.genFunction(r)
			q.funcs = append(q.funcs, nf)
		}
	}
	for _, s := range p.strs {
		if v, ok := m.replace[s.s]; ok {
			s.s = v
		} else if r.chance(m.editStrs) {
			ws := strings.Fields(s.s)
			ws[r.intn(len(ws))] = r.pick(words)
			s.s = strings.Join(ws, " ")
		}
		q.strs = append(q.strs, s)
		if r.chance(m.addStrs) {
			q.strs = append(q.strs, str{id: q.nextS, s: genString(r, &q)})
			q.nextS++
		}
	}
	// Bind the references of new code, and move calls away from deleted
	// functions (their callers changed too).
	for i, f := range q.funcs {
		if f.id >= p.nextF {
			q.bindRefs(r, f, i)
			continue
		}
		stale := false
		for _, in := range f.body {
			if opcodes[in.op].kind == kCall && deleted[in.ref] {
				stale = true
				break
			}
		}
		if stale {
			g := &function{id: f.id, name: f.name, body: append([]instr(nil), f.body...)}
			for j := range g.body {
				if opcodes[g.body[j].op].kind == kCall && deleted[g.body[j].ref] {
					g.body[j].ref = q.funcs[r.skewed(len(q.funcs))].id
				}
			}
			q.funcs[i] = g
		}
	}
	for _, t := range p.tables {
		nt := append([]int32(nil), t...)
		for i := range nt {
			if deleted[nt[i]] {
				nt[i] = q.funcs[r.intn(len(q.funcs))].id
			}
		}
		q.tables = append(q.tables, nt)
	}
	if m.comment != "" {
		q.comment = m.comment
	}
	return &q
}

// editFunction returns a changed copy of f: a few instructions inserted,
// deleted or given new immediates, as a source change plus register
// allocation would do. Prologue and epilogue stay.
func editFunction(r *rng, p *program, f *function) *function {
	g := &function{id: f.id, name: f.name, body: append([]instr(nil), f.body...)}
	for range r.between(1, 4) {
		lo, hi := 4, len(g.body)-3
		if hi <= lo {
			break
		}
		at := r.between(lo, hi)
		switch r.intn(3) {
		case 0:
			var ins []instr
			for range r.between(1, 8) {
				in := randInstr(r)
				ins = append(ins, in)
			}
			g.body = append(g.body[:at], append(ins, g.body[at:]...)...)
			// New references need targets.
			for i := at; i < at+len(ins); i++ {
				switch opcodes[g.body[i].op].kind {
				case kCall:
					g.body[i].ref = p.funcs[r.skewed(len(p.funcs))].id
				case kStrRef:
					g.body[i].ref = int32(r.intn(int(p.nextS)))
				case kDataRef:
					g.body[i].ref = int32(r.intn(p.nData))
				}
			}
		case 1:
			n := min(r.between(1, 5), hi-at)
			g.body = append(g.body[:at], g.body[at+n:]...)
		default:
			if opcodes[g.body[at].op].kind == kImm8 || opcodes[g.body[at].op].kind == kImm32 {
				g.body[at].imm = randInstr(r).imm
			}
		}
	}
	return g
}
