package gnugzip

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkCompress measures throughput on Go source text; "pct" is the
// compressed size as a percentage of the input.
func BenchmarkCompress(b *testing.B) {
	text := goSource(b, 4<<20)
	for _, level := range []int{9, 6, 1} {
		b.Run(fmt.Sprintf("text/level%d", level), func(b *testing.B) {
			z, err := NewWriter(io.Discard, level)
			if err != nil {
				b.Fatal(err)
			}
			var cw countWriter
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cw = 0
				if err := z.Reset(&cw, level); err != nil {
					b.Fatal(err)
				}
				if _, err := z.ReadFrom(bytes.NewReader(text)); err != nil {
					b.Fatal(err)
				}
				if err := z.Close(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(100*float64(cw)/float64(len(text)), "pct")
		})
	}
}

// BenchmarkDetect measures Detect on a level-9 file (found on the first try).
func BenchmarkDetect(b *testing.B) {
	text := goSource(b, 1<<20)
	var gz bytes.Buffer
	if err := Compress(&gz, bytes.NewReader(text), 9, fuzzHeader[:8:8]); err != nil {
		b.Fatal(err)
	}
	g := append(fuzzHeader[:8:8], 2, 3) // XFL 2, OS 3
	gz.Reset()
	if err := Compress(&gz, bytes.NewReader(text), 9, g); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Detect(gz.Bytes()); err != nil {
			b.Fatal(err)
		}
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
