package delta

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// TestBrotliWindow: the window read from a stream's first bits is the one
// its writer used, for every window a stream may have.
func TestBrotliWindow(t *testing.T) {
	for lg := 10; lg <= 24; lg++ {
		var buf bytes.Buffer
		w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: 5, LGWin: lg})
		w.Write(bytes.Repeat([]byte("window "), 100))
		w.Close()
		if got := brotliWindow(buf.Bytes()); got != 1<<lg {
			t.Errorf("lgwin %d: read window %d, want %d", lg, got, 1<<lg)
		}
	}
}

// TestCompressStream: each codec's stream decodes to the raw bytes within
// the window it declares, and the smaller one is kept.
func TestCompressStream(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	text := bytes.Repeat([]byte("solid streams share context across files; "), 3000)
	noise := make([]byte, 50000)
	for i := range noise {
		noise[i] = byte(rng.IntN(256))
	}
	cases := []struct {
		name   string
		raw    []byte
		brotli bool
	}{
		{"text, both codecs", text, true},
		{"noise, both codecs", noise, true},
		{"text, zstd only", text, false},
		{"one byte", []byte{7}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(dir, "raw")
			if err := os.WriteFile(raw, c.raw, 0o644); err != nil {
				t.Fatal(err)
			}
			cs, err := compressStream(context.Background(), raw, int64(len(c.raw)), zstd.SpeedBestCompression, c.brotli, dir)
			if err != nil {
				t.Fatal(err)
			}
			if !c.brotli && cs.codec != CodecZstd {
				t.Fatalf("codec %s with brotli off", cs.codec)
			}
			if cs.window > maxStreamWindow {
				t.Fatalf("window %d over %d", cs.window, maxStreamWindow)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 2 {
				t.Fatalf("left %d files, want the raw one and the winner", len(entries))
			}
			blob, err := os.ReadFile(cs.path)
			if err != nil || int64(len(blob)) != cs.size {
				t.Fatalf("winner %d bytes, reported %d (%v)", len(blob), cs.size, err)
			}
			r, done, err := openStream(bytes.NewReader(blob), Stream{Codec: cs.codec, Window: cs.window}, maxStreamWindow)
			if err != nil {
				t.Fatal(err)
			}
			defer done()
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, c.raw) {
				t.Fatalf("decoded %d bytes (%v), want the %d raw ones", len(got), err, len(c.raw))
			}
		})
	}
}
