package layerfs

import "errors"

// Sentinel errors of the skeleton code. They are wrapped with context (the
// offset, the digest) and are matched with errors.Is.
var (
	// ErrMalformedTar: the layer is not a tar an engine would extract (bad
	// header checksum, truncated, unparsable size or PAX record). Callers
	// carry such a layer whole.
	ErrMalformedTar = errors.New("malformed tar")
	// ErrBadSkeleton: a skeleton stream does not follow SKELETON.md.
	ErrBadSkeleton = errors.New("bad skeleton")
	// ErrDigestMismatch: bytes do not hash to the digest they were declared with.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrPayloadNotFound: a payload the skeleton refers to is not in the store.
	ErrPayloadNotFound = errors.New("payload not found")
	// ErrPlatformMismatch: the image is for another platform than the one
	// asked for (WithPlatform).
	ErrPlatformMismatch = errors.New("image platform mismatch")
)
