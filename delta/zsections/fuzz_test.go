package zsections

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzCompressor feeds NewCompressor arbitrary Params and streams. It
// must never panic, must fail only with ErrCorrupt, and whenever it
// succeeds NewExpander must map its output back to the stream: the two
// are inverses on everything the compressor accepts.
func FuzzCompressor(f *testing.F) {
	in, out, p := validPair(f)
	pb, _ := p.MarshalBinary()
	f.Add(pb, out)
	f.Add(pb, out[:len(out)/2])
	f.Add(pb, in)
	f.Add([]byte{paramsVersion, 1, 3, 10, 18, 3}, []byte("abcdefghijklmnopqrstuvwxyz"))
	f.Add([]byte{paramsVersion, 0}, []byte("plain"))
	f.Fuzz(func(t *testing.T, params, stream []byte) {
		var q Params
		if err := q.UnmarshalBinary(params); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("UnmarshalBinary: %v, not ErrCorrupt", err)
			}
			return
		}
		back, err := q.MarshalBinary()
		if err != nil || !bytes.Equal(back, params) {
			t.Fatalf("Params do not re-marshal to the same bytes: %v", err)
		}
		// The output can exceed the input only by the zlib framing of
		// each section: cap what is read to catch a runaway stream.
		limit := int64(len(stream)) + int64(len(q.Sections))*64 + 1<<16
		orig, err := io.ReadAll(io.LimitReader(NewCompressor(bytes.NewReader(stream), q), limit+1))
		if int64(len(orig)) > limit {
			t.Fatalf("compressor produced more than %d bytes from %d", limit, len(stream))
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("compressor: %v, not ErrCorrupt", err)
			}
			return
		}
		again, err := io.ReadAll(NewExpander(bytes.NewReader(orig), q))
		if err != nil {
			t.Fatalf("expander rejects the compressor's output: %v", err)
		}
		if !bytes.Equal(again, stream) {
			t.Fatalf("expander(compressor(x)) != x (%d vs %d bytes)", len(again), len(stream))
		}
	})
}

// FuzzExpander is the same for the device's other direction: arbitrary
// Params and original streams, never a panic, only ErrCorrupt. (Nothing
// more can be asked: a foreign zlib stream expands fine and may recompress
// to other bytes of the same length.)
func FuzzExpander(f *testing.F) {
	in, _, p := validPair(f)
	pb, _ := p.MarshalBinary()
	f.Add(pb, in)
	f.Add(pb, in[:len(in)-40])
	f.Add([]byte{paramsVersion, 0}, []byte("plain"))
	f.Fuzz(func(t *testing.T, params, orig []byte) {
		var q Params
		if q.UnmarshalBinary(params) != nil {
			return
		}
		out, err := io.ReadAll(io.LimitReader(NewExpander(bytes.NewReader(orig), q), 64<<20))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("expander: %v, not ErrCorrupt", err)
			}
			return
		}
		if int64(len(out)) > 64<<20 {
			t.Fatal("read past the limit")
		}
	})
}
