package main

import (
	"errors"
	"strings"

	"github.com/skiff-dev/skiff/layerfs"
)

// usageError marks errors in how skiff was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	// A reference that does not parse (unknown transport, missing path,
	// malformed tag) is how skiff was called, not a failure of the work.
	if errors.Is(err, layerfs.ErrBadReference) {
		return 2
	}
	// cobra's own flag and argument errors.
	msg := err.Error()
	for _, p := range []string{"unknown flag", "unknown command", "unknown shorthand", "accepts ", "requires at least", "invalid argument", "flag needs an argument", "required flag"} {
		if strings.Contains(msg, p) {
			return 2
		}
	}
	return 1
}
