// Package layerfs opens container images by reference and takes their
// layers apart into a skeleton and content-addressed file payloads.
//
// A layer tar is split into two streams:
//
//   - the skeleton: every byte that is not file content (tar headers, PAX
//     and GNU long-name records, padding, end-of-archive blocks, trailing
//     bytes), in order, with a reference (size and sha256) wherever a file's
//     content stood;
//   - the payloads: the content of every regular file, stored once per
//     sha256 in a [Store].
//
// [Assemble] streams the skeleton and the payloads back into the original
// tar, byte for byte, and checks its sha256 (the layer's diff_id) on the way.
// The skeleton format is specified in SKELETON.md beside this file.
//
// Image references follow the transports users know from skopeo:
// docker-archive:PATH[:TAG], oci:DIR[:REF], oci-archive:PATH[:REF],
// docker://HOST/REPO:TAG and docker-daemon:NAME:TAG.
package layerfs
