// Package zsections expands the zlib-compressed sections of ELF files
// (Go binaries' DWARF) so that binary diffs see inside them, exactly
// reversibly.
//
// The Go linker compresses .debug_* sections with compress/zlib at
// BestSpeed (SHF_COMPRESSED with an Elf32/64_Chdr, or ".zdebug_*" with a
// "ZLIB" + big-endian size prefix in older releases). A one-line change
// in a program moves every later byte of those streams, so bsdiff sees
// new literal bytes: for node_exporter 1.7→1.8, about 4.8 MB of its 5.9
// MB patch. Go's deflate output is deterministic (and has not changed
// across Go releases), so the server can check that recompressing a
// section reproduces it and, if so, diff the decompressed bytes instead.
//
//   - Expand (server) finds the compressed sections from the section
//     headers of the bytes it is given, decompresses each, and searches
//     the compress/zlib levels for one that reproduces the zlib stream
//     byte for byte (header and Adler-32 included). Each reproducible
//     stream is replaced in place by its decompressed bytes; the Chdr or
//     ZLIB prefix and everything else stay as they were, in order. It
//     returns the Params (per section: offset in the output, expanded and
//     compressed length, level) and checks its result by running both
//     streams below. Sections that do not reproduce (made by libz through
//     an external linker, e.g. cgo or PIE builds such as the docker CLI,
//     or by objcopy) stay compressed.
//   - NewCompressor (device) turns the expanded file back into the
//     original, recompressing each section at its level.
//   - NewExpander (device) turns the original into the expanded file: the
//     device runs it on the file it has to get the base of the patch.
//
// Both streams hold a 32 KiB buffer and one zlib writer or reader (about
// 1.2 MiB for the writer), whatever the sizes in Params, and check every
// length: a stream or Params that disagree fail with ErrCorrupt, and
// nothing is allocated from a length read from Params.
//
// Composition with exefilter. skiff's bsdiff-x86 encoder applies
// exefilter first and Expand to its output: exefilter rewrites only
// executable sections and symbol tables and keeps the length, so the
// section headers in its output still describe the compressed sections.
// The device undoes them in reverse order: NewCompressor, then
// exefilter.NewDecoder; for the base, exefilter.NewEncoder, then
// NewExpander.
//
// Measured (zstd SpeedBestCompression of skiff's streaming bsdiff, bytes,
// Params of both files included):
//
//	pair                        plain    exefilter   exefilter+zsections
//	node_exporter 1.7.0→1.8.0  5860356   5701621     1586708 (-72.9%)
//	go1.22.0→1.22.1 (6 tools)  1746624   1304908     1304908 (no DWARF)
//
// Go release tools are linked with -w, so they have nothing to expand.
// Expand runs at about 35 MB/s of input (decompression, the level search
// and its own check); NewCompressor at about 200 MB/s and NewExpander at
// about 290 MB/s of expanded output.
package zsections
