package bsdiff

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// benchPair is an old/new pair for benchmarks.
type benchPair struct {
	name     string
	old, new []byte
}

// benchPairs returns seeded pairs plus, when the corpus built by `make
// corpus` is present ($SKIFF_CORPUS, default ~/.cache/skiff/corpus), the
// Go linker from two toolchain versions.
func benchPairs(b *testing.B) []benchPair {
	r := newRand(42)
	old := binaryLike(r, 4<<20)
	pairs := []benchPair{{"seeded-4MiB", old, edit(r, old, 400)}}
	root := os.Getenv("SKIFF_CORPUS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "skiff", "corpus")
	}
	const member = "usr/local/go/pkg/tool/linux_amd64/link"
	dir := filepath.Join(root, "layers", "toolchain")
	o, err1 := tarMember(filepath.Join(dir, "old.tar"), member)
	n, err2 := tarMember(filepath.Join(dir, "new.tar"), member)
	if err1 == nil && err2 == nil {
		pairs = append(pairs, benchPair{"go-link-1.22.0-1.22.1", o, n})
	} else {
		b.Logf("corpus pair unavailable (%v, %v): seeded data only", err1, err2)
	}
	return pairs
}

// tarMember reads one regular file from a tar archive.
func tarMember(path, name string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			if err == io.EOF {
				return nil, errors.New(name + " not in " + path)
			}
			return nil, err
		}
		if h.Name == name {
			return io.ReadAll(tr)
		}
	}
}

func BenchmarkSuffixArray(b *testing.B) {
	for _, p := range benchPairs(b) {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(p.old)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := SuffixArray(context.Background(), p.old); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDiff(b *testing.B) {
	for _, p := range benchPairs(b) {
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(p.new)))
			b.ReportAllocs()
			var size int
			for b.Loop() {
				var buf bytes.Buffer
				if err := WritePatch(context.Background(), p.old, p.new, &buf); err != nil {
					b.Fatal(err)
				}
				size = buf.Len()
			}
			b.ReportMetric(100*float64(size)/float64(len(p.new)), "pct")
		})
	}
}

func BenchmarkPatch(b *testing.B) {
	for _, p := range benchPairs(b) {
		var patch bytes.Buffer
		if err := WritePatch(context.Background(), p.old, p.new, &patch); err != nil {
			b.Fatal(err)
		}
		ctrl, diff, extra, err := DiffStreams(context.Background(), p.old, p.new)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(p.name+"/BSDIFF40", func(b *testing.B) {
			b.SetBytes(int64(len(p.new)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Patch(context.Background(), bytes.NewReader(p.old), int64(len(p.old)), bytes.NewReader(patch.Bytes()), io.Discard); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(p.name+"/streams", func(b *testing.B) {
			b.SetBytes(int64(len(p.new)))
			b.ReportAllocs()
			for b.Loop() {
				err := PatchStreams(context.Background(), bytes.NewReader(p.old), int64(len(p.old)), int64(len(p.new)),
					bytes.NewReader(ctrl), bytes.NewReader(diff), bytes.NewReader(extra), io.Discard)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
