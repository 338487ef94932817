package delta

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/example"
)

func diffIDs(t *testing.T, img v1.Image) []string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range layers {
		h, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.String())
	}
	return out
}

func TestDiffApplyExample(t *testing.T) {
	ctx := context.Background()
	oldImg, newImg, err := example.Images()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	rep, err := Diff(ctx, oldImg, newImg, &buf, DefaultOptions())
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	t.Logf("delta %d bytes (header %d, skeletons %d), changed blobs %d; ops %v bytes %v", rep.DeltaBytes, rep.HeaderBytes, rep.SkeletonBytes, rep.ChangedBlobs, rep.Ops, rep.OpBytes)
	if rep.DeltaBytes != int64(buf.Len()) {
		t.Errorf("report says %d bytes, wrote %d", rep.DeltaBytes, buf.Len())
	}
	if rep.DeltaBytes*3 > rep.ChangedBlobs {
		t.Errorf("delta %d bytes is not far below the changed layers' %d", rep.DeltaBytes, rep.ChangedBlobs)
	}
	res, err := Apply(ctx, oldImg, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	defer res.Close()
	wantCfg, _ := newImg.ConfigName()
	gotCfg, err := res.Image.ConfigName()
	if err != nil || gotCfg != wantCfg {
		t.Fatalf("config digest %s, want %s (%v)", gotCfg, wantCfg, err)
	}
	if diff := cmp.Diff(diffIDs(t, newImg), diffIDs(t, res.Image)); diff != "" {
		t.Errorf("diff_ids (-want +got):\n%s", diff)
	}

	// Stability: the same inputs give the same bytes, whatever the parallelism.
	opts := DefaultOptions()
	opts.Jobs = 1
	var again bytes.Buffer
	if _, err := Diff(ctx, oldImg, newImg, &again, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Errorf("delta bytes differ between Jobs=%d and Jobs=1", DefaultOptions().Jobs)
	}

	// A wrong base is refused, naming both images.
	if _, err := Apply(ctx, newImg, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true}); !errors.Is(err, ErrBaseMismatch) {
		t.Errorf("apply to the wrong base: err = %v, want ErrBaseMismatch", err)
	}
	// Every truncation and a flipped byte in the body are refused.
	body := buf.Bytes()
	for _, cut := range []int{0, 7, 20, len(body) / 2, len(body) - 1} {
		if _, err := Apply(ctx, oldImg, bytes.NewReader(body[:cut]), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true}); err == nil {
			t.Errorf("delta cut at %d applied", cut)
		}
	}
	bad := append([]byte{}, body...)
	bad[len(bad)-100] ^= 0x40
	if _, err := Apply(ctx, oldImg, bytes.NewReader(bad), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt body: err = %v, want ErrCorrupt", err)
	}
}

// TestBsdiffChunked: the bounded-memory path gives a stream the ordinary
// patcher applies exactly, also when content moved across chunks.
func TestBsdiffChunked(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := make([]byte, 3<<20)
	for i := range base {
		base[i] = byte(rng.IntN(16))
	}
	target := append([]byte{}, base[1<<20:]...)               // a prefix removed
	target = append(target, base[:200<<10]...)                // moved to the end
	target = append(target, bytes.Repeat([]byte{7}, 5000)...) // new bytes
	for i := 0; i < len(target); i += 4099 {
		target[i] ^= 0x55
	}
	for _, chunk := range []int{256 << 10, 1 << 20, 8 << 20} {
		raw, _, err := bsdiffChunkedRaw(context.Background(), base, target, chunk, false)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := compressPatch(raw, patchCoder{name: CoderZstd, level: 2})
		if err != nil {
			t.Fatal(err)
		}
		dec, err := newDecoder(bytes.NewReader(blob), 8<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := bsdiff.ApplyStream(bytes.NewReader(base), int64(len(base)), dec, int64(len(target)), &out); err != nil {
			t.Fatalf("chunk %d: %v", chunk, err)
		}
		dec.Close()
		if !bytes.Equal(out.Bytes(), target) {
			t.Fatalf("chunk %d: patched output differs", chunk)
		}
		t.Logf("chunk %d: %d bytes for a %d-byte target", chunk, len(blob), len(target))
	}
}

// TestBrotliCoder: --level 5 patches use brotli where smaller and apply.
func TestBrotliCoder(t *testing.T) {
	base, target := tinyPair(t)
	opts := DefaultOptions()
	opts.BrotliQuality = 11
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, opts); err != nil {
		t.Fatal(err)
	}
	res, err := Apply(context.Background(), base, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got, _ := res.Image.ConfigName()
	want, _ := target.ConfigName()
	if got != want {
		t.Fatalf("image %s, want %s", got, want)
	}
	// Directly: a brotli-coded bsdiff stream patches exactly.
	old := bytes.Repeat([]byte("brotli streams for bsdiff "), 4000)
	nw := append([]byte("prefix "), old...)
	nw[5000] ^= 1
	raw, _, err := bsdiffRaw(context.Background(), old, nw, false)
	if err != nil {
		t.Fatal(err)
	}
	blob, err := compressPatch(raw, patchCoder{name: CoderBrotli, quality: 9})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := patchDecompressor(bytes.NewReader(blob), CoderBrotli, 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := bsdiff.ApplyStream(bytes.NewReader(old), int64(len(old)), dec, int64(len(nw)), &out); err != nil || !bytes.Equal(out.Bytes(), nw) {
		t.Fatalf("brotli bsdiff stream: %v", err)
	}
}

// TestEncoderPoolSameBytes: a reused encoder (with a new dictionary each
// time, or none) writes exactly what a fresh one does.
func TestEncoderPoolSameBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	text := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefgh \n"[rng.IntN(10)]
		}
		return b
	}
	for i := range 6 {
		dict, target := text(50_000+i*1000), text(20_000)
		copy(target[100:], dict[5000:15000])
		for _, d := range [][]byte{dict, nil} {
			var fresh, pooled bytes.Buffer
			e, err := newEncoder(&fresh, zstd.SpeedBestCompression, format.MinWindow, d)
			if err != nil {
				t.Fatal(err)
			}
			e.Write(target)
			e.Close()
			p, err := getEncoder(&pooled, zstd.SpeedBestCompression, format.MinWindow, d)
			if err != nil {
				t.Fatal(err)
			}
			p.Write(target)
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(fresh.Bytes(), pooled.Bytes()) {
				t.Fatalf("round %d (dict %v): pooled encoder wrote %d bytes, fresh %d", i, d != nil, pooled.Len(), fresh.Len())
			}
		}
	}
}
