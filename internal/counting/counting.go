// Package counting holds the byte-counting writer that the CLI, the
// rollout server and the test generators share (three copies before).
package counting

import "io"

// Writer counts the bytes written through it to W; with W nil it only
// counts (a sized io.Discard).
type Writer struct {
	W io.Writer
	N int64 // bytes written so far
}

// Write writes p to W, counting what W took.
func (c *Writer) Write(p []byte) (int, error) {
	if c.W == nil {
		c.N += int64(len(p))
		return len(p), nil
	}
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}
