package format

import "errors"

// Sentinel errors. They are wrapped with context and matched with errors.Is.
var (
	// ErrBadDelta: the delta does not follow FORMAT.md.
	ErrBadDelta = errors.New("bad delta")
	// ErrBaseMismatch: the delta was made for another base image.
	ErrBaseMismatch = errors.New("delta is for another base image")
	// ErrCorrupt: bytes do not hash to the digest the delta declares.
	ErrCorrupt = errors.New("corrupt delta content")
	// ErrLimit: a declared size is beyond what this reader allows.
	ErrLimit = errors.New("delta exceeds a limit")
)
