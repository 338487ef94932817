package delta

import (
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
)

// The container format is package delta/format; these are its types,
// errors and names under the names callers of Diff and Apply use.
type (
	Manifest     = format.Manifest
	Header       = format.Header
	Trust        = format.Trust
	Stream       = format.Stream
	Base         = format.Base
	Target       = format.Target
	Distribution = format.Distribution
	BlobLayer    = format.BlobLayer
	Limits       = format.Limits
	Layer        = format.Layer
	Blob         = format.Blob
	Op           = format.Op
	GzipOp       = format.GzipOp
)

// Sentinel errors (format's).
var (
	ErrBadDelta     = format.ErrBadDelta
	ErrBaseMismatch = format.ErrBaseMismatch
	ErrCorrupt      = format.ErrCorrupt
	ErrLimit        = format.ErrLimit
)

// Encoder, codec and coder names (format's).
const (
	EncZstd      = format.EncZstd
	EncZstdDict  = format.EncZstdDict
	EncBsdiff    = format.EncBsdiff
	EncBsdiffX86 = format.EncBsdiffX86
	CodecZstd    = format.CodecZstd
	CodecBrotli  = format.CodecBrotli
	CoderZstd    = format.CoderZstd
	CoderBrotli  = format.CoderBrotli
)

// resolvedOp is an op of the delta being applied with what apply learns
// of it from the target skeletons; the wire type stays as read.
type resolvedOp struct {
	Op
	Target     digest.Digest // the payload it makes ("" while made)
	Size       int64         // the payload's size
	BaseDigest digest.Digest // its base payload, if any
	// made: the target skeleton has a Made record for the payload (a lean
	// skeleton, version 5): Target is empty until the op has made it.
	made  bool
	index int // the op's index in Manifest.Ops
}

// target names the payload op makes in messages.
func (op resolvedOp) target() string {
	if op.made {
		return fmt.Sprintf("op %d's payload", op.index)
	}
	return string(op.Target)
}
