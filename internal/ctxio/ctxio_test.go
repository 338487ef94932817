package ctxio

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReader(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := Reader(ctx, strings.NewReader("abcdef"))
	b := make([]byte, 3)
	if n, err := r.Read(b); n != 3 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	cancel()
	if _, err := io.ReadAll(r); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v, want context.Canceled", err)
	}
}

func TestWriter(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var b strings.Builder
	w := Writer(ctx, &b)
	if _, err := io.WriteString(w, "abc"); err != nil || b.String() != "abc" {
		t.Fatalf("write: %v, %q", err, b.String())
	}
	cancel()
	if _, err := io.WriteString(w, "def"); !errors.Is(err, context.Canceled) || b.String() != "abc" {
		t.Fatalf("after cancel: %v, %q", err, b.String())
	}
}
