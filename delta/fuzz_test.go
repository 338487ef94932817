package delta

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/metrics"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/layerfs"
)

var writeFuzzCorpus = flag.Bool("fuzz-corpus", false, "rewrite the checked-in fuzz seed corpora of this package (testdata/fuzz)")

// Bounds of FuzzZstdDict: the device window it tries is at most
// fuzzMaxWindow, and it reads at most fuzzMaxOut decoded bytes.
const (
	fuzzMaxWindow = 2*maxPlainWindow + 1
	fuzzMaxOut    = 4 << 20
)

// Modes of FuzzZstdDict: which of apply's readers of a zstd frame with a
// raw dictionary it drives, besides the bare decoder.
const (
	modeOp            = iota // a zstd-dict op: the base payload is the dictionary
	modeGroup                // a shared frame: two bases concatenated make the dictionary
	modeSkeleton             // a skeleton frame with the dictionary layer's skeleton
	modeSkeletonPlain        // a skeleton frame without dictionary (SkeletonPlain)
	numModes
)

// FuzzZstdDict drives the zstd-dictionary decoder path of Apply with
// fuzzed frames, dictionaries and device windows: newDecoder as apply
// configures it, then the same frame through applyOp (a zstd-dict op),
// applyGroup (a frame shared by two ops) or readSkeleton (a skeleton
// frame). It checks that
//   - nothing panics, and every failure of the apply paths is ErrCorrupt
//     or ErrLimit;
//   - a frame whose window is over the device's limit is refused before
//     anything is decoded, and decoding allocates within a bound set by
//     the window, the dictionary and the frame, not by the output;
//   - the apply paths make exactly what the bare decoder makes (the
//     payloads, split between the group's ops, or the skeleton);
//   - the encoder diff uses round-trips the frame bytes as content with
//     the dictionary, in the window it declares.
func FuzzZstdDict(f *testing.F) {
	for _, s := range zstdDictSeeds(f) {
		f.Add(s.frame, s.dict, s.window, s.mode)
	}
	w := newFuzzWork(f)
	f.Fuzz(func(t *testing.T, frame, dict []byte, window uint32, mode uint8) {
		win := int64(window) % fuzzMaxWindow
		dwin := max(win, format.MinWindow) // what newDecoder allows

		// The bare decoder, as apply configures it.
		before := allocated()
		out, refErr := decodeDict(frame, win, dict)
		grew := allocated() - before
		// The decoder holds the dictionary, a history of up to twice the
		// window (single-segment frames) and block buffers; the frame and
		// output are copied once or twice by bytes.Buffer growth.
		if bound := 6*uint64(dwin) + 4*uint64(len(dict)) + 4*uint64(len(frame)) + 3*uint64(len(out)) + 16<<20; grew > bound {
			t.Fatalf("decoding a %d-byte frame (%d-byte dict, %d-byte window) to %d bytes allocated %d bytes, over %d",
				len(frame), len(dict), dwin, len(out), grew, bound)
		}
		var h zstd.Header
		if h.Decode(frame) == nil && !h.Skippable {
			eff := h.WindowSize
			if h.SingleSegment {
				eff = h.FrameContentSize
			}
			if (h.SingleSegment && eff > 2*uint64(dwin)) || (!h.SingleSegment && eff > uint64(dwin)) {
				if refErr == nil || len(out) > 0 {
					t.Fatalf("a frame with a %d-byte window decoded %d bytes in a %d-byte device window (err %v)", eff, len(out), dwin, refErr)
				}
			}
		}
		if int64(len(out)) > fuzzMaxOut+1 {
			t.Fatalf("read %d bytes past the %d-byte cap", len(out), fuzzMaxOut)
		}

		switch mode % numModes {
		case modeOp:
			fuzzOp(t, w, frame, dict, win, out, refErr)
		case modeGroup:
			fuzzGroup(t, w, frame, dict, win, out, refErr, mode)
		case modeSkeleton, modeSkeletonPlain:
			fuzzSkeleton(t, w, frame, dict, win, out, refErr, mode%numModes == modeSkeletonPlain)
		}

		// Round trip through diff's encoder.
		if len(dict) > 0 && len(frame) <= 64<<10 {
			level := zstd.EncoderLevel(1 + int(mode/numModes)%3) // fastest..better: the levels of small dictionaries
			blob, w, err := encodeZstdDict(dict, frame, level)
			if err != nil {
				t.Fatalf("encodeZstdDict: %v", err)
			}
			if w < format.MinWindow || w > format.MaxWindowLimit {
				t.Fatalf("encodeZstdDict declared a %d-byte window", w)
			}
			back, err := decodeDict(blob, w, dict)
			if err != nil || !bytes.Equal(back, frame) {
				t.Fatalf("round trip at level %v: %d bytes back of %d (err %v)", level, len(back), len(frame), err)
			}
		}
	})
}

// decodeDict decodes frame with apply's decoder, reading at most
// fuzzMaxOut+1 bytes.
func decodeDict(frame []byte, window int64, dict []byte) ([]byte, error) {
	dec, err := newDecoder(bytes.NewReader(frame), window, dict)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	var buf bytes.Buffer
	_, err = io.Copy(&buf, io.LimitReader(dec, fuzzMaxOut+1))
	if err == nil && buf.Len() > fuzzMaxOut {
		err = errors.New("over the fuzz output cap")
	}
	return buf.Bytes(), err
}

// allocated is the heap this process allocated so far. A fuzz function
// runs alone in its worker, so a difference is what it allocated.
func allocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// fuzzWork is FuzzZstdDict's work directory and content store, made once
// per process (making directories cost most of an iteration's time).
// Fuzz functions run one at a time in a process.
type fuzzWork struct {
	dir   string
	store *layerfs.Store
}

func newFuzzWork(f *testing.F) *fuzzWork {
	dir := f.TempDir()
	store, err := layerfs.OpenStore(filepath.Join(dir, "store"))
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzWork{dir: dir, store: store}
}

// applier returns an applier with only what the readers of op and
// skeleton blobs use: limits, the work directory and the content store,
// holding just the given base payloads until t ends.
func (w *fuzzWork) applier(t *testing.T, window int64, bases ...[]byte) (*applier, []digest.Digest) {
	t.Helper()
	t.Cleanup(func() { w.clear(t) })
	var ds []digest.Digest
	for _, b := range bases {
		d, err := w.store.Ingest(context.Background(), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	m := &Manifest{Limits: Limits{MaxPayload: fuzzMaxOut, MaxExpanded: fuzzMaxOut, MaxWindow: window, MaxSkeleton: fuzzMaxOut}}
	return &applier{m: m, work: w.dir, store: w.store, inBase: map[digest.Digest]bool{}}, ds
}

// clear removes every blob from the store.
func (w *fuzzWork) clear(t *testing.T) {
	p, err := w.store.Path(digest.FromString(""))
	if err != nil {
		t.Fatal(err)
	}
	blobs := filepath.Dir(p)
	es, err := os.ReadDir(blobs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if err := os.Remove(filepath.Join(blobs, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// checkClass fails t unless err is one an apply path may return for a
// hostile blob.
func checkClass(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLimit) {
		t.Fatalf("%s: error %v is neither ErrCorrupt nor ErrLimit", what, err)
	}
}

// fuzzOp runs the frame as a zstd-dict op against base payload dict, for
// the payload the bare decoder made (or, when it failed, one byte more
// than it made before failing).
func fuzzOp(t *testing.T, w *fuzzWork, frame, dict []byte, win int64, out []byte, refErr error) {
	a, ds := w.applier(t, win, dict)
	want := out
	size := int64(len(out))
	if refErr != nil {
		size++
	}
	op := resolvedOp{Op: Op{Encoder: EncZstdDict, Base: 0}, BaseDigest: ds[0], Target: digest.FromBytes(want), Size: size}
	err := a.applyOp(context.Background(), op, bytes.NewReader(frame))
	switch {
	case int64(len(dict)) > win:
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("zstd-dict op with a %d-byte dictionary in a %d-byte window: err = %v, want ErrLimit", len(dict), win, err)
		}
	case refErr != nil:
		if err == nil {
			t.Fatalf("zstd-dict op made %d bytes the decoder fails on (%v)", size, refErr)
		}
		checkClass(t, "zstd-dict op", err)
	case err != nil:
		t.Fatalf("zstd-dict op fails on a frame the decoder reads (%d bytes): %v", len(out), err)
	case !a.store.Has(op.Target):
		t.Fatalf("zstd-dict op did not store %s", op.Target)
	}
}

// fuzzGroup runs the frame as the shared blob of two zstd-dict ops whose
// bases, concatenated, are dict, and whose payloads, concatenated, are
// what the bare decoder made.
func fuzzGroup(t *testing.T, w *fuzzWork, frame, dict []byte, win int64, out []byte, refErr error, mode uint8) {
	k, j := len(dict)*int(mode)/256, len(out)*int(255-mode)/256
	a, ds := w.applier(t, win, dict[:k], dict[k:])
	members := []resolvedOp{
		{Op: Op{Encoder: EncZstdDict, Base: 0, Blob: 3}, BaseDigest: ds[0], Target: digest.FromBytes(out[:j]), Size: int64(j)},
		{Op: Op{Encoder: EncZstdDict, Base: 1, Blob: 3}, BaseDigest: ds[1], Target: digest.FromBytes(out[j:]), Size: int64(len(out) - j)},
	}
	if refErr != nil {
		members[1].Size++
	}
	err := a.applyGroup(context.Background(), members, bytes.NewReader(frame))
	switch {
	case int64(len(dict)) > win:
		if !errors.Is(err, ErrLimit) {
			t.Fatalf("shared frame with a %d-byte dictionary in a %d-byte window: err = %v, want ErrLimit", len(dict), win, err)
		}
	case refErr != nil:
		if err == nil {
			t.Fatalf("shared frame made %d bytes the decoder fails on (%v)", len(out)+1, refErr)
		}
		checkClass(t, "shared frame", asCorrupt(err))
	case err != nil:
		t.Fatalf("shared frame fails on a frame the decoder reads (%d bytes): %v", len(out), err)
	case !a.store.Has(members[0].Target) || !a.store.Has(members[1].Target):
		t.Fatal("shared frame did not store both payloads")
	}
}

// fuzzSkeleton runs the frame as target layer 0's skeleton blob, with
// base layer 0's skeleton (dict) as its dictionary unless plain.
func fuzzSkeleton(t *testing.T, w *fuzzWork, frame, dict []byte, win int64, out []byte, refErr error, plain bool) {
	a, _ := w.applier(t, win)
	p := filepath.Join(a.work, "base-0.skel")
	if err := os.WriteFile(p, dict, 0o644); err != nil {
		t.Fatal(err)
	}
	a.baseSk = []string{p}
	a.tarOf = make([]string, 1)
	if plain {
		// What the plain decoder makes, not the one with the dictionary.
		out, refErr = decodeDict(frame, win, nil)
	}
	err := a.readSkeleton(0, Layer{DictLayer: 0, SkeletonPlain: plain}, bytes.NewReader(frame))
	if refErr != nil || len(out) > fuzzMaxOut {
		if err == nil {
			t.Fatalf("skeleton frame accepted where the decoder fails (%v)", refErr)
		}
		checkClass(t, "skeleton frame", err)
		return
	}
	if err != nil {
		t.Fatalf("skeleton frame fails where the decoder makes %d bytes: %v", len(out), err)
	}
	got, err := os.ReadFile(a.tarOf[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, out) {
		t.Fatalf("skeleton frame wrote %d bytes, the decoder makes %d", len(got), len(out))
	}
}

// zstdDictSeed is one FuzzZstdDict input.
type zstdDictSeed struct {
	name   string
	frame  []byte
	dict   []byte
	window uint32
	mode   uint8
}

// zstdDictSeeds are valid frames from diff's encoders on the tiny pair's
// files and skeletons, and broken variants of them.
func zstdDictSeeds(t testing.TB) []zstdDictSeed {
	lorem := bytes.Repeat([]byte("skiff ships exact deltas to devices on thin links. "), 200)
	changed := append(append(append([]byte{}, lorem[:5000]...), "a small edit in the middle"...), lorem[5000:]...)
	lib1 := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 600)
	lib2 := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 9}, 600)
	enc := func(dict, target []byte, level zstd.EncoderLevel) ([]byte, uint32) {
		b, w, err := encodeZstdDict(dict, target, level)
		if err != nil {
			t.Fatal(err)
		}
		return b, uint32(w)
	}
	opFrame, opWin := enc(lorem, changed, zstd.SpeedBetterCompression)
	libFrame, libWin := enc(lib1, lib2, zstd.SpeedFastest)
	groupDict := append(append([]byte{}, lorem...), lib1...)
	groupFrame, groupWin := enc(groupDict, append(append([]byte{}, changed...), lib2...), zstd.SpeedBestCompression)

	// Skeletons of the tiny pair's layers, the target's compressed with the
	// base's as dictionary (compressSkeleton), and with none.
	base, target := tinyPair(t)
	bl, _ := base.Layers()
	tl, _ := target.Layers()
	skel := func(l interface{ Uncompressed() (io.ReadCloser, error) }) []byte {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var b bytes.Buffer
		if _, err := layerfs.Disassemble(context.Background(), rc, layerfs.Discard{}, &b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	baseSkel, targetSkel := skel(bl[1]), skel(tl[1])
	plainSkel := func(content, dict []byte, window int64) []byte {
		var b bytes.Buffer
		e, err := newEncoder(&b, zstd.SpeedBestCompression, window, dict)
		if err != nil {
			t.Fatal(err)
		}
		e.Write(content)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	skWin := windowFor(int64(len(baseSkel)), int64(len(targetSkel)))
	skFrame := plainSkel(targetSkel, baseSkel, skWin)
	skPlain := plainSkel(targetSkel, nil, plainSkeletonWindow)

	// A frame header declaring a 1 GiB window, then an RLE block; and a
	// single-segment frame declaring 64 MiB of content.
	bigWindow := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa0, 0x03, 0x00, 0x00}
	bigSingle := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xa0, 0x00, 0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00}
	// A frame of many RLE blocks of 128 KiB: a small decompression bomb.
	rle := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x68} // window 8 MiB, no checksum
	for range 40 {
		rle = append(rle, 0x02, 0x00, 0x10, 'z') // RLE block of 131072 'z'
	}
	rle = append(rle, 0x03, 0x00, 0x10, 'z') // last
	skippable := append([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4}, libFrame...)

	flip := func(b []byte, at int) []byte {
		c := bytes.Clone(b)
		c[at%len(c)] ^= 0x20
		return c
	}
	return []zstdDictSeed{
		{"op-readme-edit", opFrame, lorem, opWin, modeOp},
		{"op-lib-fastest", libFrame, lib1, libWin, modeOp + numModes},
		{"op-truncated-half", opFrame[:len(opFrame)/2], lorem, opWin, modeOp},
		{"op-truncated-checksum", opFrame[:len(opFrame)-2], lorem, opWin, modeOp},
		{"op-bitflip-body", flip(opFrame, len(opFrame)/2), lorem, opWin, modeOp},
		{"op-wrong-dict", opFrame, lib1, opWin, modeOp},
		{"op-no-dict", libFrame, nil, libWin, modeOp},
		{"op-window-zero", libFrame, lib1, 0, modeOp},
		{"op-dict-over-window", libFrame, lib1, 1000, modeOp},
		{"group-two-bases", groupFrame, groupDict, groupWin, modeGroup + 128},
		{"group-bitflip-header", flip(groupFrame, 5), groupDict, groupWin, modeGroup + 2*numModes},
		{"group-truncated", groupFrame[:len(groupFrame)*3/4], groupDict, groupWin, modeGroup},
		{"skeleton-dict", skFrame, baseSkel, uint32(skWin), modeSkeleton},
		{"skeleton-dict-missing", skFrame, nil, uint32(skWin), modeSkeleton},
		{"skeleton-plain", skPlain, baseSkel, plainSkeletonWindow, modeSkeletonPlain},
		{"skeleton-plain-truncated", skPlain[:len(skPlain)-7], baseSkel, plainSkeletonWindow, modeSkeletonPlain},
		{"header-window-1gib", bigWindow, lorem, maxPlainWindow, modeOp},
		{"header-single-segment-64mib", bigSingle, lorem, maxPlainWindow, modeSkeleton},
		{"rle-bomb-5mib", rle, nil, maxPlainWindow, modeSkeletonPlain},
		{"skippable-then-frame", skippable, lib1, libWin, modeOp},
		{"two-frames", append(bytes.Clone(libFrame), libFrame...), lib1, libWin, modeGroup},
		{"empty", nil, nil, 0, modeOp},
	}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz of this package with
// -fuzz-corpus: FuzzZstdDict's seeds, and the golden deltas with broken
// variants for FuzzReadHeader, FuzzApply and FuzzApplyGzip.
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeFuzzCorpus {
		t.Skip("rewrites testdata/fuzz with -fuzz-corpus")
	}
	for _, s := range zstdDictSeeds(t) {
		writeSeed(t, "FuzzZstdDict", s.name, s.frame, s.dict, s.window, s.mode)
	}
	for _, g := range []struct{ golden, target string }{{"tiny", "FuzzApply"}, {"gzip", "FuzzApplyGzip"}} {
		d, err := os.ReadFile(filepath.Join("testdata", "golden", g.golden+".skiff"))
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range deltaVariants(t, d) {
			writeSeed(t, g.target, name, v)
			writeSeed(t, "FuzzReadHeader", g.golden+"-"+name, v)
		}
	}
}

// deltaVariants are a golden delta and broken copies of it: truncated
// inside the header and at each blob boundary, bit flips in the header and
// the body, a wrong declared window.
func deltaVariants(t *testing.T, d []byte) map[string][]byte {
	h, err := format.ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	body := len(d)
	for _, b := range h.Manifest.Blobs {
		body -= int(b.Size)
	}
	v := map[string][]byte{
		"golden":                 d,
		"truncated-in-magic":     d[:5],
		"truncated-in-header":    d[:body/2],
		"truncated-before-body":  d[:body],
		"trailing-byte":          append(bytes.Clone(d), 0),
		"bitflip-in-header":      flipAt(d, body/3),
		"bitflip-in-first-blob":  flipAt(d, body+int(h.Manifest.Blobs[0].Size)/2),
		"bitflip-in-last-byte":   flipAt(d, len(d)-1),
		"window-over-the-device": rewriteManifest(t, d, func(m *Manifest) { m.Limits.MaxWindow = format.MaxWindowLimit + 1 }),
		"window-too-small":       rewriteManifest(t, d, func(m *Manifest) { m.Limits.MaxWindow = 1 << 10 }),
	}
	off := body
	for i, b := range h.Manifest.Blobs[:len(h.Manifest.Blobs)-1] {
		off += int(b.Size)
		v[fmt.Sprintf("truncated-after-blob-%d", i)] = d[:off]
	}
	return v
}

func flipAt(b []byte, at int) []byte {
	c := bytes.Clone(b)
	c[at] ^= 0x10
	return c
}

// writeSeed writes testdata/fuzz/target/name in the go test fuzz v1
// encoding.
func writeSeed(t *testing.T, target, name string, vals ...any) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint32, int64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			t.Fatalf("seed value of type %T", v)
		}
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
