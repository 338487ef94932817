package layerfs

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-dev/skiff/internal/tartest"
)

// benchLayers returns the layers to benchmark: a seeded random 64 MiB layer,
// and the corpus' largest layer (the Go toolchain) when `make corpus` ran.
func benchLayers(b *testing.B) map[string]string {
	dir := b.TempDir()
	p := filepath.Join(dir, "random64.tar")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if err := tartest.Layer(f, 7, 64<<20); err != nil {
		b.Fatal(err)
	}
	f.Close()
	layers := map[string]string{"random-64MiB": p}
	root := os.Getenv("SKIFF_CORPUS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "skiff", "corpus")
	}
	if tc := filepath.Join(root, "layers", "toolchain", "new.tar"); fileExists(tc) {
		layers["corpus-toolchain"] = tc
	}
	return layers
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func BenchmarkDisassemble(b *testing.B) {
	for name, path := range benchLayers(b) {
		st, _ := os.Stat(path)
		b.Run(name+"/store", func(b *testing.B) {
			store, err := OpenStore(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(st.Size())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				f, _ := os.Open(path)
				zw, _ := CompressSkeleton(io.Discard)
				if _, err := Disassemble(context.Background(), f, store, zw); err != nil {
					b.Fatal(err)
				}
				zw.Close()
				f.Close()
			}
		})
		b.Run(name+"/hash-only", func(b *testing.B) {
			b.SetBytes(st.Size())
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				f, _ := os.Open(path)
				if _, err := Disassemble(context.Background(), f, Discard{}, io.Discard); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

func BenchmarkAssemble(b *testing.B) {
	for name, path := range benchLayers(b) {
		st, _ := os.Stat(path)
		store, err := OpenStore(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		f, _ := os.Open(path)
		var skel bytes.Buffer
		if _, err := Disassemble(context.Background(), f, store, &skel); err != nil {
			b.Fatal(err)
		}
		f.Close()
		b.Run(name, func(b *testing.B) {
			b.SetBytes(st.Size())
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Assemble(context.Background(), bytes.NewReader(skel.Bytes()), store, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
