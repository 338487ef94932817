package bsdiff

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// newRand returns a deterministic generator for seed.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

// binaryLike returns n bytes that look like machine code and data: runs of
// a small "instruction" alphabet, little-endian pointers into a table,
// zero padding and ASCII strings.
func binaryLike(r *rand.Rand, n int) []byte {
	b := make([]byte, 0, n)
	words := []string{"main.", "runtime.", "github.com/skiff-dev/", "error", "%s: %w", "buffer", "context"}
	for len(b) < n {
		switch r.IntN(5) {
		case 0: // opcodes from a small alphabet
			for range 16 + r.IntN(64) {
				b = append(b, []byte{0x48, 0x89, 0x8b, 0xe8, 0xc3, 0x0f, 0x85, 0x74}[r.IntN(8)])
			}
		case 1: // pointers
			base := uint32(0x400000 + r.IntN(1<<16)*16)
			for range 4 + r.IntN(16) {
				v := base + uint32(r.IntN(4096))
				b = append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
			}
		case 2: // padding
			b = append(b, make([]byte, r.IntN(48))...)
		case 3: // strings
			for range 1 + r.IntN(4) {
				b = append(b, words[r.IntN(len(words))]...)
			}
			b = append(b, 0)
		default: // noise
			for range 8 + r.IntN(32) {
				b = append(b, byte(r.Uint32()))
			}
		}
	}
	return b[:n]
}

// edit returns a modified copy of old with nEdits realistic edits:
// insertions, deletions, scattered byte changes, moved blocks and
// pointer shifts (a constant added to 4-byte words, as relinking does).
func edit(r *rand.Rand, old []byte, nEdits int) []byte {
	b := bytes.Clone(old)
	for range nEdits {
		if len(b) == 0 {
			b = append(b, binaryLike(r, 1+r.IntN(64))...)
			continue
		}
		at := r.IntN(len(b))
		switch r.IntN(5) {
		case 0: // insert
			ins := binaryLike(r, 1+r.IntN(256))
			b = append(b[:at], append(ins, b[at:]...)...)
		case 1: // delete
			n := min(1+r.IntN(256), len(b)-at)
			b = append(b[:at], b[at+n:]...)
		case 2: // scattered byte changes
			for range 1 + r.IntN(8) {
				b[r.IntN(len(b))] ^= byte(1 + r.IntN(255))
			}
		case 3: // move a block
			n := min(1+r.IntN(1024), len(b)-at)
			blk := bytes.Clone(b[at : at+n])
			b = append(b[:at], b[at+n:]...)
			to := r.IntN(len(b) + 1)
			b = append(b[:to], append(blk, b[to:]...)...)
		default: // shift pointers in a region
			n := min(64+r.IntN(2048), len(b)-at)
			d := byte(1 + r.IntN(32))
			for i := at; i+4 <= at+n; i += 4 {
				b[i] += d
			}
		}
	}
	return b
}

// pair is an old/new test case.
type pair struct {
	name     string
	old, new []byte
}

// testPairs returns the seeded round-trip cases, edge cases included.
func testPairs() []pair {
	r := newRand(1)
	base := binaryLike(r, 200<<10)
	small := binaryLike(r, 3000)
	zeros := make([]byte, 100<<10)
	periodic := bytes.Repeat([]byte("abcabcabd"), 5000)
	rnd := make([]byte, 70<<10)
	for i := range rnd {
		rnd[i] = byte(r.Uint32())
	}
	return []pair{
		{"both empty", nil, nil},
		{"empty old", nil, small},
		{"empty new", small, nil},
		{"identical", base, bytes.Clone(base)},
		{"one byte", []byte{7}, []byte{9}},
		{"few edits", base, edit(r, base, 5)},
		{"many edits", base, edit(r, base, 200)},
		{"small many edits", small, edit(r, small, 40)},
		{"unrelated", small, binaryLike(newRand(99), 4000)},
		{"zeros to zeros plus", zeros, append([]byte{1, 2, 3}, zeros[:90<<10]...)},
		{"periodic", periodic, edit(r, periodic, 20)},
		{"random data edited", rnd, edit(r, rnd, 30)},
		{"truncated", base, bytes.Clone(base[:len(base)/2])},
		{"doubled", small, append(bytes.Clone(small), small...)},
	}
}

// roundTripStreams diffs and patches through the raw streams.
func roundTripStreams(t testing.TB, old, new []byte) (ctrl, diff, extra []byte) {
	t.Helper()
	ctx := context.Background()
	ctrl, diff, extra, err := DiffStreams(ctx, old, new)
	if err != nil {
		t.Fatalf("DiffStreams: %v", err)
	}
	var out bytes.Buffer
	err = PatchStreams(ctx, bytes.NewReader(old), int64(len(old)), int64(len(new)),
		bytes.NewReader(ctrl), bytes.NewReader(diff), bytes.NewReader(extra), &out)
	if err != nil {
		t.Fatalf("PatchStreams: %v", err)
	}
	if !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("PatchStreams output differs from new (%d vs %d bytes)", out.Len(), len(new))
	}
	return ctrl, diff, extra
}

// roundTripPatch writes a BSDIFF40 patch and applies it with Patch.
func roundTripPatch(t testing.TB, old, new []byte) []byte {
	t.Helper()
	ctx := context.Background()
	var p bytes.Buffer
	if err := WritePatch(ctx, old, new, &p); err != nil {
		t.Fatalf("WritePatch: %v", err)
	}
	var out bytes.Buffer
	if err := Patch(ctx, bytes.NewReader(old), int64(len(old)), bytes.NewReader(p.Bytes()), &out); err != nil {
		t.Fatalf("Patch: %v", err)
	}
	if !bytes.Equal(out.Bytes(), new) {
		t.Fatalf("Patch output differs from new (%d vs %d bytes)", out.Len(), len(new))
	}
	return p.Bytes()
}
