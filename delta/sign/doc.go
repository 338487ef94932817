// Package sign signs skiff deltas and verifies their signatures.
//
// A delta's header (delta/FORMAT.md, "Byte grammar") carries a signature
// block: one or more ed25519 signatures, each tagged with the signing key's
// ID, over the domain-separated message
//
//	"skiff-delta-v1\x00" || sha256(Header)
//
// where Header is the stored (compressed) header bytes. The manifest inside
// the header names every blob by its sha256, so a valid signature binds the
// whole delta. This package works on bytes only; delta.Apply calls Verify
// before anything of the delta is decompressed or written.
//
// Keys are PEM files: "PRIVATE KEY" (PKCS#8) and "PUBLIC KEY" (PKIX), as
// openssl genpkey -algorithm ed25519 writes them. A key's ID is the first 16
// hex digits of the sha256 of its PKIX encoding.
package sign
