package transport

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors. They are wrapped with context and matched with errors.Is.
var (
	// ErrDigest: downloaded bytes do not hash to the expected digest.
	ErrDigest = errors.New("digest mismatch")
	// ErrSize: a download is longer or shorter than its declared size.
	ErrSize = errors.New("size mismatch")
	// ErrStalled: a server sent no byte (headers or body) for
	// FetchOptions.StallTimeout; Fetch cuts the request and resumes.
	ErrStalled = errors.New("download stalled")
	// ErrNotDelta: a registry artifact is not a skiff delta (wrong
	// artifactType, media types, or layers that disagree with the delta's
	// own header).
	ErrNotDelta = errors.New("not a skiff delta artifact")
	// ErrBadDeltaFile: the file given to Push is not a well-formed delta.
	ErrBadDeltaFile = errors.New("not a well-formed delta file")
)

// StatusError is an HTTP answer Fetch could not use.
type StatusError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %s", e.URL, e.Status)
}

// Temporary reports whether trying again later may succeed (timeouts,
// rate limits, server errors).
func (e *StatusError) Temporary() bool {
	switch e.StatusCode {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
