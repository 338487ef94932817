package zsections

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"
)

// countWriter counts bytes.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// heapSampler records the peak heap in use while a stream is read.
type heapSampler struct {
	r         io.Reader
	n, next   int64
	peak, min uint64
}

func (h *heapSampler) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.n += int64(n)
	if h.n >= h.next {
		h.next += 1 << 20
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		h.peak = max(h.peak, ms.HeapInuse)
	}
	return n, err
}

// TestStream100MB runs NewCompressor over a 100 MB expanded stream (one
// 98 MB section between 1 MB of plain bytes on each side) generated on
// the fly, pipes it through NewExpander and compares with the stream
// regenerated: a round trip that never holds the file. It reports speed
// and the peak heap, and fails if the heap grows past 16 MiB.
func TestStream100MB(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB stream")
	}
	const pre, size, post = 1 << 20, 98 << 20, 1 << 20
	stream := func() io.Reader {
		return io.MultiReader(newTextReader(1, pre), newTextReader(1000, size), newTextReader(5000, post))
	}
	var cw countWriter
	zw, _ := zlib.NewWriterLevel(&cw, 1)
	io.Copy(zw, newTextReader(1000, size))
	zw.Close()
	p := Params{Sections: []Section{{Off: pre, Size: size, ZSize: cw.n, Level: 1}}}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	hs := &heapSampler{r: NewCompressor(stream(), p)}
	start := time.Now()
	h := sha256.New()
	n, err := io.Copy(h, hs)
	if err != nil {
		t.Fatal(err)
	}
	dc := time.Since(start)
	if n != pre+cw.n+post {
		t.Fatalf("compressor gave %d bytes, want %d", n, pre+cw.n+post)
	}
	peak := hs.peak - min(base, hs.peak)
	t.Logf("NewCompressor: %d MB in %v = %.0f MB/s (expanded side); peak heap above baseline %.2f MiB",
		(pre+size+post)>>20, dc.Round(time.Millisecond), float64(pre+size+post)/1e6/dc.Seconds(), float64(peak)/(1<<20))
	if peak > 16<<20 {
		t.Fatalf("peak heap %d bytes: not bounded", peak)
	}

	// Compressor → expander through a pipe, compared with the stream.
	pr, pw := io.Pipe()
	go func() { _, err := io.Copy(pw, NewCompressor(stream(), p)); pw.CloseWithError(err) }()
	start = time.Now()
	if err := sameReader(NewExpander(pr, p), stream()); err != nil {
		t.Fatal(err)
	}
	t.Logf("NewCompressor | NewExpander round trip: %v", time.Since(start).Round(time.Millisecond))
}

// sameReader compares two streams in 64 KiB steps.
func sameReader(a, b io.Reader) error {
	ba, bb := make([]byte, 64<<10), make([]byte, 64<<10)
	var at int64
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return fmt.Errorf("streams differ in the 64 KiB block at %d", at)
		}
		at += int64(na)
		if ea != nil || eb != nil {
			if (ea == io.EOF || ea == io.ErrUnexpectedEOF) && (eb == io.EOF || eb == io.ErrUnexpectedEOF) {
				return nil
			}
			return fmt.Errorf("a: %v, b: %v", ea, eb)
		}
	}
}

// BenchmarkNodeExporter measures Expand (with its own check), the
// device's NewCompressor and NewExpander on node_exporter 1.8.0.
func BenchmarkNodeExporter(b *testing.B) {
	in := corpusFile(b, "app/new.tar", "usr/local/bin/node_exporter")
	out, p, ok, err := Expand(in)
	if err != nil || !ok {
		b.Fatalf("Expand: %v %v", ok, err)
	}
	b.Run("Expand", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			Expand(in)
		}
	})
	b.Run("NewCompressor", func(b *testing.B) {
		b.SetBytes(int64(len(out)))
		b.ReportAllocs()
		for b.Loop() {
			io.Copy(io.Discard, NewCompressor(bytes.NewReader(out), p))
		}
	})
	b.Run("NewExpander", func(b *testing.B) {
		b.SetBytes(int64(len(out)))
		b.ReportAllocs()
		for b.Loop() {
			io.Copy(io.Discard, NewExpander(bytes.NewReader(in), p))
		}
	})
}
