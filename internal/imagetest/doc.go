// Package imagetest builds tiny, deterministic layer tars and images for
// tests: LayerTar writes regular files into a PAX tar with fixed mode and
// modification time, Image stacks such tars into a linux/amd64 image,
// Noise makes seeded incompressible file contents, and Ref parses a
// reference to a plain-HTTP test registry. The same inputs always give the
// same bytes and digests, so tests built on them can pin golden files
// (delta/testdata/golden).
//
// For tars that exercise the corners of the tar format, use
// internal/tartest; for a realistic image pair, internal/example.
package imagetest
