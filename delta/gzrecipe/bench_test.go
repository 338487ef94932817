package gzrecipe

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-dev/skiff/internal/tartest"
)

// benchFiles writes a ~100 MB tartest layer and blobs of it to dir: made by
// Go's BestSpeed (found first), by pgzip at its default (found first after
// reading the markers), and by GNU gzip (no recipe: every candidate fails,
// then the final check decompresses the blob).
func benchFiles(b *testing.B) (tar string, blobs map[string]string) {
	b.Helper()
	dir := b.TempDir()
	tar = filepath.Join(dir, "layer.tar")
	f, err := os.Create(tar)
	if err != nil {
		b.Fatal(err)
	}
	if err := tartest.Layer(f, 100, 100<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(tar)
	if err != nil {
		b.Fatal(err)
	}
	blobs = map[string]string{}
	write := func(name string, blob []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, blob, 0o644); err != nil {
			b.Fatal(err)
		}
		blobs[name] = p
	}
	write("go-1-first", goGzip(b, data, 1, gzHeader{os: 255}))
	write("pgzip-default-first", pgz(b, data, -1, 0, gzHeader{os: 255}))
	write("go-huffman-late", goGzip(b, data, -2, gzHeader{os: 255}))
	write("gnu-gzip-none", gnuGzip(b, data, "-6", "-n"))
	return tar, blobs
}

func fileOpener(p string) Opener {
	return func() (io.ReadCloser, error) { return os.Open(p) }
}

func BenchmarkFind(b *testing.B) {
	tar, blobs := benchFiles(b)
	st, err := os.Stat(tar)
	if err != nil {
		b.Fatal(err)
	}
	for _, name := range []string{"go-1-first", "pgzip-default-first", "go-huffman-late", "gnu-gzip-none"} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(st.Size())
			b.ReportAllocs()
			tried := 0
			for b.Loop() {
				tried = 0
				_, err := Find(context.Background(), fileOpener(tar), fileOpener(blobs[name]), WithAttempts(func(Attempt) { tried++ }))
				if (err != nil) != (name == "gnu-gzip-none") {
					b.Fatalf("Find: %v", err)
				}
			}
			b.ReportMetric(float64(tried), "candidates")
		})
	}
}
