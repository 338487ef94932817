package gzrecipe

import (
	"archive/tar"
	"bytes"
	stdgzip "compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os/exec"
	"sync"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/pgzip"

	"github.com/skiff-dev/skiff/internal/tartest"
)

// opener serves b as a re-openable stream.
func opener(b []byte) Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}

var tarCache sync.Map // [2]int64{seed, size} -> []byte

// layerTar returns a deterministic tartest layer of about size bytes.
func layerTar(t testing.TB, seed, size int64) []byte {
	t.Helper()
	key := [2]int64{seed, size}
	if b, ok := tarCache.Load(key); ok {
		return b.([]byte)
	}
	var buf bytes.Buffer
	if err := tartest.Layer(&buf, seed, size); err != nil {
		t.Fatal(err)
	}
	tarCache.Store(key, buf.Bytes())
	return buf.Bytes()
}

// gzHeader is the header a producer is asked to write through its
// library's own API.
type gzHeader struct {
	name, comment string
	extra         []byte
	mtime         time.Time
	os            byte
}

// Producers: the real library writers, used as the image tools use them.

func goGzip(t testing.TB, data []byte, level int, h gzHeader) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := stdgzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Header = stdgzip.Header{Name: h.name, Comment: h.comment, Extra: h.extra, ModTime: h.mtime, OS: h.os}
	writeClose(t, zw, data)
	return buf.Bytes()
}

func kpGzip(t testing.TB, data []byte, level int, h gzHeader) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := kgzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	zw.Header = kgzip.Header{Name: h.name, Comment: h.comment, Extra: h.extra, ModTime: h.mtime, OS: h.os}
	writeClose(t, zw, data)
	return buf.Bytes()
}

func pgz(t testing.TB, data []byte, level, blockSize int, h gzHeader) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := pgzip.NewWriterLevel(&buf, level)
	if err != nil {
		t.Fatal(err)
	}
	if blockSize != 0 {
		if err := zw.SetConcurrency(blockSize, 4); err != nil {
			t.Fatal(err)
		}
	}
	zw.Header = pgzip.Header{Name: h.name, Comment: h.comment, Extra: h.extra, ModTime: h.mtime, OS: h.os}
	writeClose(t, zw, data)
	return buf.Bytes()
}

func writeClose(t testing.TB, w io.WriteCloser, data []byte) {
	t.Helper()
	// Odd write sizes: the output must not depend on them.
	for len(data) > 0 {
		n := min(len(data), 100003)
		if _, err := w.Write(data[:n]); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// gnuGzip runs GNU gzip (zlib's deflate) with args on data.
func gnuGzip(t testing.TB, data []byte, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath("gzip")
	if err != nil {
		t.Skip("GNU gzip not installed")
	}
	cmd := exec.Command(path, append(args, "-c")...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withHeader replaces blob's header with h's encoding.
func withHeader(t testing.TB, blob []byte, h Header) []byte {
	t.Helper()
	old, err := ReadHeader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return append(out, blob[old.Len():]...)
}

// tarWriterClose writes an empty tar: just the end-of-archive marker.
func tarWriterClose(w io.Writer) error { return tar.NewWriter(w).Close() }

type hashWriter struct {
	h hash.Hash
	n int64
}

func newHashWriter() *hashWriter { return &hashWriter{h: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.h.Write(p)
}

func (w *hashWriter) hex() string { return hex.EncodeToString(w.h.Sum(nil)) }
