// Package example builds skiff's built-in example image pair: two releases
// of a small but realistic application image (example/app:1 and
// example/app:2), generated in memory from a fixed seed, without network.
//
// Each image has three layers, modelled on a typical release:
//
//   - a Debian-like base OS layer, identical in both images: /etc configs,
//     ELF-like shared objects and executables with headers, symbol tables,
//     string tables and code-like byte patterns, docs, symlinks, a hardlink
//     and directories with their modes;
//   - a "runtime" layer that changes a little: two libraries get a point
//     release, libfoo.so.1.2.3 becomes libfoo.so.1.2.4, a package is
//     removed (with whiteouts for files of the base layer) and one is added;
//   - the application layer: a ~6 MB binary whose new version looks like a
//     recompile (addresses shift throughout, functions are inserted and
//     deleted, strings change), changed configs, unchanged and moved assets,
//     a new file, and a file that becomes identical to one in the base layer.
//
// The uncompressed layer tars and the image configs are a pure function of
// this package's code: the PRNG is PCG with a fixed seed, no map is
// iterated, and every timestamp is fixed. Layers are compressed with Go's
// compress/gzip at its default level, like Docker; the compressed blobs, and
// therefore the manifest digests, are as stable as Go's compress/flate
// output, which the golden test pins.
package example
