// Package exefilter is an exactly reversible transform of x86-64, ARM64
// and 32-bit ARM ELF files that makes their binary diffs smaller. It is applied to both files before
// bsdiff: the server diffs T(old) against T(new); the device computes T(old)
// from the file it has (NewEncoder), patches to get T(new), and inverts it
// (NewDecoder) to get new.
//
// When code moves between two builds, every relative operand that crosses
// the move changes, although the instruction and its target did not. The
// transform rewrites such operands as absolute targets (relative + address
// of the next instruction, modulo 2^32), so calls to a function that did
// not move keep their bytes wherever the caller went. In ELF symbol tables
// it replaces each symbol value by its difference from the previous one,
// so symbols that move together keep theirs.
//
// Forms (Forms bits; DefaultForms = call+rip+symtab on x86-64, a64-call+
// a64-page+a64-pair on ARM64, a32-call and t32-call on 32-bit ARM):
//
//   - FormCall: E8 rel32.
//   - FormJmp, FormJcc: E9 rel32, 0F 8x rel32. Measured worse, not default:
//     they are mostly jumps inside one function, which move with it.
//   - FormRIP: [66|F2|F3] [REX] op ModRM(00 xxx 101) disp32 for common
//     opcodes (LEA, MOV, ALU, CMP, TEST, SSE moves, FF /2 /4 ...); the
//     "absolute" value is the disp32 plus the address after it.
//   - FormSymtab: .symtab and .dynsym value fields, delta-coded.
//
// Only the executable sections (SHF_EXECINSTR, or PF_X segments when there
// are no section headers) are scanned, and an operand is converted only
// when its target falls in the code (branches) or the loaded image (RIP).
// Anything that is not x86-64, ARM64 or 32-bit ARM ELF is left unchanged.
//
// ARM (Machine, arm.go). The ARM forms rewrite a PC-relative field as
// (field + PC term) modulo its width, a bijection that leaves the bits
// identifying the instruction alone, so they are exact for any input and
// need no Exceptions: ARM64 BL and B (imm26), ADRP (page) and ADR, B.cond,
// CBZ/CBNZ, TBZ/TBNZ and LDR literal; A32 BL/BLX and B (imm24); Thumb-2
// BL/BLX pairs. Analyze picks A32 or Thumb-2 for a 32-bit ARM file by
// counting the calls of each kind in its code. Symbol tables are
// delta-coded as for x86-64 (16-byte entries for ELF32). Measured on
// node_exporter 1.7.0→1.8.0 (whole deltas, bytes):
//
//	forms (default in bold)          arm64      armv7
//	none (zsections only)          1231080    1146626
//	a64-call / a32-call            1122757    1084181
//	a64-call+a64-page              1103868          -
//	**a64-call+a64-page+a64-pair** 1089175          -
//	+a64-adr+a64-literal           1106368          -
//	+a64-jump+a64-cond / +a32-jump 1185703    1143087
//
// Like x86 jumps, ARM B and conditional branches mostly stay inside a
// function and made the deltas bigger. a64-pair cost 41 bytes on the
// goarm64 pair (6964 → 7005) and 273 on the debarm64up upgrade (534202 →
// 534475) and saved 14.7 KB on node_exporter: in the default.
//
// Exactness. The inverse walks the same positions as the forward scan (the
// opcode tables are chosen so that a match never reads a rewritten byte;
// see scanner), but cannot always tell whether an operand was converted:
// it assumes "converted" exactly when the value lies in the target range.
// Encode records the positions where that guess is wrong as Exceptions
// (a few to a few dozen per binary, 30-130 bytes with the Layout) and
// checks its own output by decoding it; a mismatch returns ErrNotExact.
// The symbol table transform is a bijection and needs none.
//
// Memory. Encode holds the file. NewEncoder and NewDecoder stream with a
// 64 KiB buffer plus the exception list, whatever the file size.
//
// What the server ships per file: Params (Layout + Exceptions of new, with
// MarshalBinary) and the Layout of old, or the device computes the latter
// with Analyze from its old file (it reads only headers). The transformed
// old is read sequentially; a bsdiff patcher that needs random access to it
// needs it written to a temporary file first.
//
// Measured (zstd SpeedBestCompression of skiff's streaming bsdiff, bytes;
// with the filter, the size includes both files' marshalled Params):
//
//	pair (changed ELF files)     plain  call  call+rip  call+rip+symtab
//	go1.22.0→1.22.1 (7 tools)  1094762  -2.3%  -13.5%  -28.3%
//	Debian bookworm (3 files)   177246 -10.8%  -18.2%  -17.9%
//	node_exporter 1.7→1.8      5860356  -1.0%   -1.5%   -2.7%
//
// node_exporter's patch is dominated by its zlib-compressed DWARF sections
// (about 4.8 MB of bsdiff extra bytes), which no operand transform reaches.
// Jmp or jcc conversion made every pair bigger (up to +23%). Files whose
// patch is only a few KB grow by the ~35 bytes of Params; a caller should
// keep the smaller of the filtered and the plain patch.
package exefilter
