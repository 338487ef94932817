// Package bench measures skiff against the usual alternatives: corpus
// generation from real software (package corpus), baselines, and the report
// (table, JSON, chart).
//
// A benchmark runs a list of [Method]s over a list of [Pair]s (base image,
// target image). [Run] opens both images of every pair first, so a bad
// reference fails before anything is measured, then for each pair extracts
// the uncompressed tars of the changed layers (target layers whose diff_id
// is not in the base; the old counterpart of a changed layer is the base
// layer at the same index, or an empty tar) and runs every method on it.
//
// Every method reports the bytes a device would download ("on the wire"),
// the time and peak memory of making the patch and of applying it, and
// whether the rebuilt layers were checked to be exact (the sha256 of each
// rebuilt layer tar equals the target's diff_id). External tools, and skiff
// itself, run as child processes, and their peak memory is the maximum
// resident set size the kernel reports when they exit (wait4 rusage), so
// the numbers are comparable. A method whose tool is not installed is
// reported as such, never dropped.
//
// [DefaultMethods] registers, in table order:
//
//	skiff-4          skiff diff --level 4 (the default) and skiff apply
//	skiff-5          skiff diff --level 5 (smallest delta) and skiff apply
//	pull-gzip        docker pull: the changed layers as the registry stores them
//	                 (the image's compressed blobs, or compress/gzip at its
//	                 default level where the image holds them uncompressed,
//	                 which is what docker push writes)
//	pull-zstd19      the same layers compressed with zstd -19
//	zstd-patch-from  zstd -19 --long=31 --patch-from=OLD per changed layer tar
//	bsdiff           bsdiff/bspatch per changed layer tar
//	xdelta3          xdelta3 -9 -S djw -B <old size> per changed layer tar
//	rdiff-zstd       librsync rdiff signature + delta, then zstd -19 of the
//	                 delta; the signature (which the device computes and
//	                 uploads) is reported as extra bytes
//	file-dedupe      file-level dedupe only: every target file whose content
//	                 is not in the base, each compressed on its own (klauspost
//	                 zstd at its best level), as a zstd:chunked partial pull
//	                 fetches them; the tar itself is not rebuilt
//	tar-diff         containers/tar-diff v0.1.2 (-compression-level 19) per
//	                 changed layer, applied with tar-patch to the extracted
//	                 old layer
//
// `make bench-deps` installs the Debian tools (zstd, bsdiff, xdelta3, rdiff)
// and builds tar-diff and tar-patch into ./bin.
package bench
