//go:build !unix

package flock

import (
	"context"
	"os"
)

// Lock does nothing where there is no flock: concurrent holders are not
// excluded.
func Lock(ctx context.Context, f *os.File, waiting func()) error { return ctx.Err() }

func unlock(f *os.File) { f.Close() }
