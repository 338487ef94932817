// Package format is the skiff delta container format of FORMAT.md (one
// directory up), section for section: the manifest types and their
// validation (Manifest.Validate), the header with its signature block
// (WriteHeader, ReadHeader, WriteFrame), the trust check that runs before
// a manifest is decompressed (Trust, ReadVerifiedHeader), re-signing
// (Resign) and the sentinel errors.
//
// It knows the body's layout (which blob is what) but none of its codecs:
// readers of headers — transport, the fleet server, inspect — depend on it
// alone, not on bsdiff, brotli or the ELF transforms that package delta
// uses to write and apply the body.
package format
