// Package delta writes (Diff) and applies (Apply) skiff deltas; the byte
// format is FORMAT.md beside this file, its container (manifest, header,
// signatures, validation) package delta/format.
//
// The nouns, as FORMAT.md defines them:
//
//   - payload: the content of one tar entry, addressed by its sha256; a
//     target payload the base already has costs nothing.
//   - skeleton: everything of a layer tar that is not payload
//     (layerfs/SKELETON.md); each rebuilt layer's is carried as a skeleton
//     delta against a base layer's, lean in manifest version 5 (sizes,
//     padding and the digests the device works out left out).
//   - op: how one new target payload is made — plain content (zstd),
//     zstd with its base file as dictionary (zstd-dict), bsdiff, or bsdiff
//     after the x86-64 ELF transforms (bsdiff-x86) — and, for a GNU gzip
//     file, from its decompressed content (a gzip op).
//   - blob: a run of the body, declared with its size and sha256: a
//     skeleton, a solid stream, a zstd-dict group, or (versions 1-2) the
//     pack of plain contents or one patch.
//   - stream: one compressed byte stream of many ops' residues, similar
//     files adjacent; columnar in version 5 (each kind of number in a
//     region of its own).
//
// Diff is plan (which payloads are new, against which base: plan.go),
// encode (each op's smallest form: choose.go, encode.go, solid.go) and
// write (the blobs and header: write.go, skeleton.go, columns.go); Apply
// reads the header, the skeletons, then the streams and op blobs
// (apply.go, apply_solid.go), and rebuilds and checks every layer.
package delta
