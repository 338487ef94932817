package sign

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. They are wrapped with context and matched with errors.Is.
var (
	// ErrUnsigned: the delta carries no signature.
	ErrUnsigned = errors.New("delta is not signed")
	// ErrBadSignature: the signature block is malformed, or a signature by
	// a trusted key does not verify (the delta was altered after signing,
	// or the block belongs to another delta).
	ErrBadSignature = errors.New("bad delta signature")
	// ErrUntrustedKey: no signature is by a trusted key (or no key is
	// trusted at all).
	ErrUntrustedKey = errors.New("delta not signed by a trusted key")
	// ErrKey: a key file is unreadable or not an ed25519 key.
	ErrKey = errors.New("bad signing key")
)

// Domain prefixes the signed message; the "v1" is the signature scheme's
// version (delta/FORMAT.md, "Signature block").
const Domain = "skiff-delta-v1\x00"

// Format limits (delta/FORMAT.md).
const (
	// Version is the signature block version this package writes and reads.
	Version = 1
	// MaxEntries is the most signatures one block may hold.
	MaxEntries = 32
	// IDSize is the size of a key ID in a block, in bytes (16 hex digits).
	IDSize = 8
	// entrySize is one entry: key ID and ed25519 signature.
	entrySize = IDSize + ed25519.SignatureSize
)

// KeyID identifies a public key: the first 8 bytes of the sha256 of its
// PKIX (SubjectPublicKeyInfo) encoding, written as 16 hex digits.
type KeyID [IDSize]byte

// String returns the ID as 16 lower-case hex digits.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// IDOf returns the key ID of pub.
func IDOf(pub ed25519.PublicKey) KeyID {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil { // only for a key of the wrong length
		der = pub
	}
	s := sha256.Sum256(der)
	var id KeyID
	copy(id[:], s[:IDSize])
	return id
}

// Entry is one signature of a block.
type Entry struct {
	KeyID     KeyID
	Signature [ed25519.SignatureSize]byte
}

// Block is a parsed signature block.
type Block struct {
	Entries []Entry
}

// Message is what a signature covers: Domain followed by the sha256 of the
// stored header bytes.
func Message(headerRaw []byte) []byte {
	s := sha256.Sum256(headerRaw)
	return append([]byte(Domain), s[:]...)
}

// Parse parses a signature block (delta/FORMAT.md): exactly
// Version(u8) || Count(u8) || Count × (KeyID(8) || Signature(64)), with
// 1 ≤ Count ≤ MaxEntries, no key ID twice and nothing after the last entry.
// An empty block is ErrUnsigned; anything else that does not follow the
// grammar is ErrBadSignature.
func Parse(b []byte) (*Block, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSignature, fmt.Sprintf(format, args...))
	}
	if len(b) == 0 {
		return nil, ErrUnsigned
	}
	if len(b) < 2 {
		return nil, bad("signature block of %d bytes is truncated", len(b))
	}
	if b[0] != Version {
		return nil, bad("signature block version %d, this skiff reads %d", b[0], Version)
	}
	n := int(b[1])
	if n < 1 || n > MaxEntries {
		return nil, bad("%d signatures in the block (1 to %d allowed)", n, MaxEntries)
	}
	if want := 2 + n*entrySize; len(b) != want {
		return nil, bad("signature block of %d bytes, %d signatures need %d", len(b), n, want)
	}
	blk := &Block{Entries: make([]Entry, n)}
	seen := make(map[KeyID]bool, n)
	for i := range blk.Entries {
		e := &blk.Entries[i]
		p := b[2+i*entrySize:]
		copy(e.KeyID[:], p[:IDSize])
		copy(e.Signature[:], p[IDSize:entrySize])
		if seen[e.KeyID] {
			return nil, bad("key %s signs twice", e.KeyID)
		}
		seen[e.KeyID] = true
	}
	return blk, nil
}

// MarshalBinary encodes the block; it refuses blocks Parse would refuse.
func (b *Block) MarshalBinary() ([]byte, error) {
	if len(b.Entries) < 1 || len(b.Entries) > MaxEntries {
		return nil, fmt.Errorf("%w: %d signatures (1 to %d allowed)", ErrBadSignature, len(b.Entries), MaxEntries)
	}
	out := make([]byte, 2, 2+len(b.Entries)*entrySize)
	out[0], out[1] = Version, byte(len(b.Entries))
	seen := map[KeyID]bool{}
	for _, e := range b.Entries {
		if seen[e.KeyID] {
			return nil, fmt.Errorf("%w: key %s signs twice", ErrBadSignature, e.KeyID)
		}
		seen[e.KeyID] = true
		out = append(out, e.KeyID[:]...)
		out = append(out, e.Signature[:]...)
	}
	return out, nil
}

// KeyIDs lists the IDs of the block's signers, in block order.
func (b *Block) KeyIDs() []KeyID {
	ids := make([]KeyID, len(b.Entries))
	for i, e := range b.Entries {
		ids[i] = e.KeyID
	}
	return ids
}

// Sign returns a signature block over headerRaw by every signer. Each
// signer's public key must be ed25519 (an ed25519.PrivateKey, or a
// crypto.Signer backed by a device holding one).
func Sign(headerRaw []byte, signers ...crypto.Signer) ([]byte, error) {
	return Append(nil, headerRaw, false, signers...)
}

// Append adds signatures by signers over headerRaw to the existing block
// (empty: none). A signer whose key already signed the block replaces its
// entry; with replace, the existing entries are all dropped. The existing
// entries are kept as they are, not verified.
func Append(existing, headerRaw []byte, replace bool, signers ...crypto.Signer) ([]byte, error) {
	if len(signers) == 0 {
		return nil, fmt.Errorf("%w: no signing key", ErrKey)
	}
	blk := &Block{}
	if len(existing) > 0 && !replace {
		old, err := Parse(existing)
		if err != nil {
			return nil, fmt.Errorf("existing signatures: %w", err)
		}
		blk = old
	}
	msg := Message(headerRaw)
	for _, s := range signers {
		pub, ok := s.Public().(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: a %T signer; skiff signs with ed25519", ErrKey, s.Public())
		}
		sig, err := s.Sign(nil, msg, crypto.Hash(0))
		if err != nil {
			return nil, fmt.Errorf("%w: signing with %s: %v", ErrKey, IDOf(pub), err)
		}
		if !ed25519.Verify(pub, msg, sig) {
			return nil, fmt.Errorf("%w: key %s made a signature that does not verify", ErrKey, IDOf(pub))
		}
		e := Entry{KeyID: IDOf(pub)}
		copy(e.Signature[:], sig)
		blk.put(e)
	}
	return blk.MarshalBinary()
}

func (b *Block) put(e Entry) {
	for i := range b.Entries {
		if b.Entries[i].KeyID == e.KeyID {
			b.Entries[i] = e
			return
		}
	}
	b.Entries = append(b.Entries, e)
}

// Verify checks the signature block sigBlock over headerRaw against the
// trusted keys and returns the ID of the first trusted key whose signature
// verifies. Signatures by keys not trusted are ignored. Errors wrap
// ErrUnsigned (empty block), ErrBadSignature (malformed block, or every
// signature by a trusted key fails) or ErrUntrustedKey (no signature by a
// trusted key, or no trusted keys).
func Verify(sigBlock, headerRaw []byte, trusted []ed25519.PublicKey) (KeyID, error) {
	blk, err := Parse(sigBlock)
	if err != nil {
		return KeyID{}, err
	}
	if len(trusted) == 0 {
		return KeyID{}, fmt.Errorf("%w: signed by %s, but no public keys are trusted", ErrUntrustedKey, idList(blk.KeyIDs()))
	}
	byID := make(map[KeyID]ed25519.PublicKey, len(trusted))
	var trustedIDs []KeyID
	for _, k := range trusted {
		if len(k) != ed25519.PublicKeySize {
			return KeyID{}, fmt.Errorf("%w: a trusted public key of %d bytes", ErrKey, len(k))
		}
		id := IDOf(k)
		byID[id] = k
		trustedIDs = append(trustedIDs, id)
	}
	msg := Message(headerRaw)
	var failed []KeyID
	for _, e := range blk.Entries {
		k, ok := byID[e.KeyID]
		if !ok {
			continue
		}
		if ed25519.Verify(k, msg, e.Signature[:]) {
			return e.KeyID, nil
		}
		failed = append(failed, e.KeyID)
	}
	if len(failed) > 0 {
		return KeyID{}, fmt.Errorf("%w: the signature by trusted key %s does not match this delta's header (altered after signing, or taken from another delta)",
			ErrBadSignature, idList(failed))
	}
	return KeyID{}, fmt.Errorf("%w: signed by %s, trusted: %s", ErrUntrustedKey, idList(blk.KeyIDs()), idList(trustedIDs))
}

func idList(ids []KeyID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ", ")
}
