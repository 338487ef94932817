// Package tartest generates tar streams that exercise every corner of the
// tar format a container layer may contain, for testing code that must take
// a layer tar apart and put it back together byte for byte (layerfs).
//
// Four sources of test input are offered:
//
//   - Cases returns named, hand-checked tricky streams: PAX, GNU and ustar
//     long names, links, devices, xattrs, whiteouts, non-UTF-8 names,
//     sparse files in every GNU encoding, base-256 numbers, non-zero
//     padding, odd stream endings, and one "kitchen-sink" stream mixing them
//     all. Where archive/tar cannot write a case, the header bytes are built
//     by hand with correct checksums.
//   - Malformed returns broken streams that a reader must reject with an
//     error (or reproduce exactly), and must never panic on.
//   - Layer writes a random but realistic layer of a requested size.
//   - Fixtures returns the tars made by real tools (GNU tar, bsdtar,
//     busybox) that live in layerfs/testdata/tars.
//
// Everything is deterministic for a given seed: the same seed yields the same
// bytes, so failures can be reproduced and golden digests pinned.
//
// The package depends only on the standard library and must not import
// layerfs, the package it is used to test.
package tartest
