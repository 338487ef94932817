// Package bsdiff computes and applies bsdiff deltas between two versions of
// a file. It is skiff's own implementation of Colin Percival's algorithm:
// a linear-time suffix array (SA-IS) over the old file, the classic
// approximate-match scan over the new file, and a streaming patcher.
//
// A delta is a sequence of control triples (Add, Copy, Seek) and two byte
// streams: diff (new minus old, bytewise, for the approximately matching
// regions) and extra (new bytes taken literally). Two containers exist:
//
//   - BSDIFF40 files (WritePatch, Patch): the 32-byte header and three
//     bzip2 blocks of bsdiff 4.3, interoperable with Debian's
//     bsdiff/bspatch and other BSDIFF40 implementations.
//   - Raw streams (DiffStreams, PatchStreams): ctrl in a compact varint
//     encoding (uvarint(Add) || uvarint(Copy) || varint(Seek) per triple,
//     encoding/binary varints), diff and extra uncompressed, for callers
//     that store them in their own container with another compressor.
//
// Memory. The differ holds old and new plus 4 bytes per old byte (the
// suffix array) and small tables; construction of the suffix array needs
// one bit per old byte per level and rarely (when the reduced alphabet does
// not fit in the array's free part) transient bucket space of at most 2
// bytes per old byte. Measured on a 20 MB Go binary: 125 MB live heap, 215
// MB peak RSS (bsdiff 4.3: 180 MB); on 5-6 MB binaries, 43-69 MB. The patcher
// streams: it reads old by random access, writes new sequentially and holds
// only small buffers (plus the bzip2 decoders for BSDIFF40), checking every
// declared length before it is used. Files must be smaller than
// MaxInputSize (2 GiB) to be diffed.
//
// Errors: ErrCorruptPatch for any malformed or hostile patch, ErrTooLarge
// for inputs or declared sizes over a limit; both are wrapped with a
// description of the problem.
package bsdiff
