// Package ctxio makes readers and writers that stop when a context is
// done, for copies through code that takes no context (io.Copy,
// tarball.Write).
package ctxio

import (
	"context"
	"io"
)

// Reader returns a reader of r whose reads fail with ctx's error once ctx
// is done, so a long copy stops when it is cancelled.
func Reader(ctx context.Context, r io.Reader) io.Reader { return reader{ctx: ctx, r: r} }

type reader struct {
	ctx context.Context
	r   io.Reader
}

func (c reader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Writer returns a writer to w whose writes fail with ctx's error once
// ctx is done.
func Writer(ctx context.Context, w io.Writer) io.Writer { return writer{ctx: ctx, w: w} }

type writer struct {
	ctx context.Context
	w   io.Writer
}

func (c writer) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
