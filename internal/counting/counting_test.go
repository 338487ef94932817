package counting

import (
	"bytes"
	"io"
	"testing"
)

func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	c := &Writer{W: &buf}
	io.WriteString(c, "hello, ")
	io.WriteString(c, "world")
	if c.N != 12 || buf.String() != "hello, world" {
		t.Errorf("counted %d, wrote %q", c.N, buf.String())
	}
	var d Writer
	io.Copy(&d, bytes.NewReader(make([]byte, 1000)))
	if d.N != 1000 {
		t.Errorf("discarding writer counted %d, want 1000", d.N)
	}
}
