package flock

import (
	"context"
	"os"
)

// File locks the file at path (created if missing) with Lock and returns
// the function that releases it.
func File(ctx context.Context, path string, waiting func()) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return hold(ctx, f, waiting)
}

// Dir locks the directory dir itself with Lock and returns the function
// that releases it.
func Dir(ctx context.Context, dir string, waiting func()) (release func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	return hold(ctx, f, waiting)
}

func hold(ctx context.Context, f *os.File, waiting func()) (func(), error) {
	if err := Lock(ctx, f, waiting); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unlock(f) }, nil
}
