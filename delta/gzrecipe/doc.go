// Package gzrecipe finds and replays the recipe that turns an uncompressed
// layer tar into the exact gzip blob a registry serves, so that a rebuilt
// image keeps its manifest digest and not only its diff_ids.
//
// The server calls Find once per target layer with openers for the tar and
// the blob; the Recipe it returns (about 16 bytes with MarshalBinary) goes
// into the delta, and the device calls Recipe.Compress to re-create the
// blob from the rebuilt tar.
//
// A recipe names a deflate implementation at the version this module is
// built with: Go's compress/flate (crane, Docker Engine, go-containerregistry),
// github.com/klauspost/compress/flate as klauspost's gzip uses it, or
// github.com/klauspost/pgzip (containers/image: skopeo, podman, buildah)
// with its block size; a level; and the gzip header copied verbatim. The
// header is written by this package, not by the library, so any MTIME, XFL,
// OS, FEXTRA, FNAME, FCOMMENT or FHCRC is reproduced.
//
// Find orders the candidates from what the blob shows: an MTIME of
// 0x886E0900 is klauspost's unset time, XFL 2 or 4 names level 9 or 1, and
// pgzip's sync-flush markers (00 00 ff ff after every block) give its
// block size as the uncompressed offset at which they occur. A candidate is
// abandoned at the first byte it gets wrong, so a wrong guess usually costs
// one deflate block. When two recipes give the same bytes, the one first
// in this order is returned, so the result is a pure function of the blob
// and the tar — unless a search budget (WithMaxCandidates, WithTimeLimit)
// runs out on a slow machine.
//
// Not reproducible, reported as ErrNoRecipe: zlib (GNU gzip, pigz), zlib-ng,
// ISA-L, hardware deflate, multi-member blobs (eStargz), klauspost's
// stateless level -3, and blobs made with another klauspost/compress
// version than this build's when its output differs (it changed at 1.15.13
// and 1.19 for several levels). Go's compress/flate output has been stable
// across Go releases.
package gzrecipe
