package delta

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/delta/format"
)

// TestBombsBounded: deltas whose blobs decompress far beyond what they
// declare, or whose declared limits are absurd, are refused with a clear
// error, and the heap stays bounded while they are read.
func TestBombsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 256 MiB decompression bomb")
	}
	base, target := tinyPair(t)
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	h, err := format.ReadHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	pack := -1
	for _, op := range h.Manifest.Ops {
		if op.Encoder == EncZstd {
			pack = op.Blob
		}
	}
	if pack < 0 {
		t.Fatal("the tiny pair has no pack")
	}
	// 256 MiB of zeros in one zstd frame with the window the delta declares.
	var bomb bytes.Buffer
	enc, err := newEncoder(&bomb, 1, h.Manifest.Limits.MaxWindow, nil)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range 256 {
		enc.Write(zeros)
	}
	enc.Close()
	t.Logf("bomb: %d bytes expanding to 256 MiB", bomb.Len())

	tests := []struct {
		name string
		make func() []byte
		want error
	}{
		{"pack blob is a decompression bomb", func() []byte {
			return replaceBlob(t, good, pack, bomb.Bytes())
		}, ErrCorrupt},
		{"declared window far beyond the device's", func() []byte {
			return rewriteManifest(t, good, func(m *Manifest) { m.Limits.MaxWindow = 1 << 40 })
		}, ErrLimit},
		{"declared payload far beyond the real one", func() []byte {
			return rewriteManifest(t, good, func(m *Manifest) {
				m.Limits.MaxPayload, m.Limits.MaxExpanded = 1<<50, 1<<50
			})
		}, nil}, // nothing is allocated from it: the delta still applies
		{"declared skeleton far beyond the real one", func() []byte {
			return rewriteManifest(t, good, func(m *Manifest) { m.Limits.MaxSkeleton = 1 << 50 })
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.make()
			peak := watchHeap(t)
			res, err := Apply(context.Background(), base, bytes.NewReader(d), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
			if err == nil {
				res.Close()
			}
			if max := peak(); max > 96<<20 {
				t.Errorf("heap peaked at %d MiB", max>>20)
			} else {
				t.Logf("heap peak %d MiB, err %v", max>>20, err)
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// replaceBlob returns delta d with blob i replaced by b (manifest updated).
func replaceBlob(t *testing.T, d []byte, i int, b []byte) []byte {
	t.Helper()
	h, err := format.ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	off := h.BodyOffset
	var blobs [][]byte
	for _, bl := range h.Manifest.Blobs {
		blobs = append(blobs, d[off:off+bl.Size])
		off += bl.Size
	}
	blobs[i] = b
	out := rewriteManifest(t, d[:h.BodyOffset], func(m *Manifest) {
		m.Blobs[i] = Blob{Digest: digest.FromBytes(b), Size: int64(len(b))}
	})
	return append(out, bytes.Join(blobs, nil)...)
}

// watchHeap samples the heap until the returned function is called, which
// returns the largest HeapInuse seen.
func watchHeap(t *testing.T) func() uint64 {
	t.Helper()
	runtime.GC()
	var mu sync.Mutex
	var peak uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			mu.Lock()
			peak = max(peak, ms.HeapInuse)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
}
