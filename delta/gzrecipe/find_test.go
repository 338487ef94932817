package gzrecipe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// replay checks that r reproduces blob from tar exactly.
func replay(t *testing.T, r Recipe, tar, blob []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Compress(context.Background(), bytes.NewReader(tar), &buf); err != nil {
		t.Fatalf("Compress(%v): %v", r, err)
	}
	if got := buf.Bytes(); !bytes.Equal(got, blob) {
		i := firstDiff(got[:min(len(got), len(blob))], blob[:min(len(got), len(blob))])
		t.Fatalf("Compress(%v): %d bytes, want %d; first difference at %d", r, len(got), len(blob), i)
	}
}

// findCase is a blob made by a real library writer, and the recipe Find
// must return for it.
type findCase struct {
	name       string
	tar        []byte
	blob       []byte
	want       Recipe // compared on Compressor, Level, BlockSize; Header must equal the blob's
	firstGuess bool   // the header and markers must put the right recipe first
}

func TestFindReproducesLibraryBlobs(t *testing.T) {
	tar := layerTar(t, 1, 3<<20)        // 3 MiB: an exact multiple of pgzip's default block
	odd := layerTar(t, 2, 2_500_000)    // not a multiple of anything
	small := layerTar(t, 3, 40_000)     // less than one pgzip block
	unix := time.Unix(1_700_000_000, 0) // a set MTIME
	std := gzHeader{os: 255}
	kp := gzHeader{os: 255}
	cases := []findCase{
		// Go compress/gzip: crane (BestSpeed), Docker (default), every level.
		{name: "go/default", tar: tar, blob: goGzip(t, tar, -1, std), want: Recipe{Compressor: GoStdlib, Level: 6}, firstGuess: true},
		{name: "go/1", tar: tar, blob: goGzip(t, tar, 1, std), want: Recipe{Compressor: GoStdlib, Level: 1}, firstGuess: true},
		{name: "go/9", tar: odd, blob: goGzip(t, odd, 9, std), want: Recipe{Compressor: GoStdlib, Level: 9}, firstGuess: true},
		{name: "go/2", tar: odd, blob: goGzip(t, odd, 2, std), want: Recipe{Compressor: GoStdlib, Level: 2}},
		{name: "go/3", tar: odd, blob: goGzip(t, odd, 3, std), want: Recipe{Compressor: GoStdlib, Level: 3}},
		{name: "go/4", tar: odd, blob: goGzip(t, odd, 4, std), want: Recipe{Compressor: GoStdlib, Level: 4}},
		{name: "go/5", tar: odd, blob: goGzip(t, odd, 5, std), want: Recipe{Compressor: GoStdlib, Level: 5}},
		{name: "go/7", tar: odd, blob: goGzip(t, odd, 7, std), want: Recipe{Compressor: GoStdlib, Level: 7}},
		{name: "go/8", tar: odd, blob: goGzip(t, odd, 8, std), want: Recipe{Compressor: GoStdlib, Level: 8}},
		{name: "go/store", tar: odd, blob: goGzip(t, odd, 0, std), want: Recipe{Compressor: GoStdlib, Level: 0}},
		{name: "go/huffman", tar: odd, blob: goGzip(t, odd, -2, std), want: Recipe{Compressor: GoStdlib, Level: -2}},
		{name: "go/small", tar: small, blob: goGzip(t, small, 6, std), want: Recipe{Compressor: GoStdlib, Level: 6}, firstGuess: true},
		{name: "go/name+comment+mtime+unix", tar: odd, blob: goGzip(t, odd, 6, gzHeader{name: "layer.tar", comment: "skiff", mtime: unix, os: 3}),
			want: Recipe{Compressor: GoStdlib, Level: 6}, firstGuess: true},
		{name: "go/extra", tar: odd, blob: goGzip(t, odd, 1, gzHeader{extra: []byte("SK\x02\x00hi"), os: 255}), want: Recipe{Compressor: GoStdlib, Level: 1}, firstGuess: true},
		// klauspost compress/gzip.
		{name: "klauspost/default", tar: tar, blob: kpGzip(t, tar, -1, kp), want: Recipe{Compressor: KlauspostGzip, Level: 5}, firstGuess: true},
		{name: "klauspost/1", tar: odd, blob: kpGzip(t, odd, 1, kp), want: Recipe{Compressor: KlauspostGzip, Level: 1}, firstGuess: true},
		{name: "klauspost/9", tar: odd, blob: kpGzip(t, odd, 9, kp), want: Recipe{Compressor: KlauspostGzip, Level: 9}, firstGuess: true},
		{name: "klauspost/2", tar: odd, blob: kpGzip(t, odd, 2, kp), want: Recipe{Compressor: KlauspostGzip, Level: 2}},
		{name: "klauspost/3", tar: odd, blob: kpGzip(t, odd, 3, kp), want: Recipe{Compressor: KlauspostGzip, Level: 3}},
		{name: "klauspost/4", tar: odd, blob: kpGzip(t, odd, 4, kp), want: Recipe{Compressor: KlauspostGzip, Level: 4}},
		{name: "klauspost/6", tar: odd, blob: kpGzip(t, odd, 6, kp), want: Recipe{Compressor: KlauspostGzip, Level: 6}},
		{name: "klauspost/7", tar: odd, blob: kpGzip(t, odd, 7, kp), want: Recipe{Compressor: KlauspostGzip, Level: 7}},
		{name: "klauspost/8", tar: odd, blob: kpGzip(t, odd, 8, kp), want: Recipe{Compressor: KlauspostGzip, Level: 8}},
		{name: "klauspost/store", tar: odd, blob: kpGzip(t, odd, 0, kp), want: Recipe{Compressor: KlauspostGzip, Level: 0}},
		{name: "klauspost/constant", tar: odd, blob: kpGzip(t, odd, -2, kp), want: Recipe{Compressor: KlauspostGzip, Level: -2}},
		{name: "klauspost/comment+mtime", tar: odd, blob: kpGzip(t, odd, 5, gzHeader{comment: "c", mtime: unix, os: 255}), want: Recipe{Compressor: KlauspostGzip, Level: 5}},
		// klauspost/pgzip: skopeo and podman (default level, 1 MiB blocks), other levels and blocks.
		{name: "pgzip/default", tar: tar, blob: pgz(t, tar, -1, 0, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: DefaultBlockSize}, firstGuess: true},
		{name: "pgzip/9", tar: odd, blob: pgz(t, odd, 9, 0, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 9, BlockSize: DefaultBlockSize}, firstGuess: true},
		{name: "pgzip/1/256KiB", tar: odd, blob: pgz(t, odd, 1, 256<<10, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 1, BlockSize: 256 << 10}, firstGuess: true},
		{name: "pgzip/default/100000", tar: odd, blob: pgz(t, odd, 5, 100_000, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: 100_000}, firstGuess: true},
		{name: "pgzip/6/2MiB", tar: odd, blob: pgz(t, odd, 6, 2<<20, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 6, BlockSize: 2 << 20}},
		{name: "pgzip/7", tar: odd, blob: pgz(t, odd, 7, 0, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 7, BlockSize: DefaultBlockSize}},
		{name: "pgzip/store", tar: odd, blob: pgz(t, odd, 0, 0, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 0, BlockSize: DefaultBlockSize}},
		{name: "pgzip/small", tar: small, blob: pgz(t, small, -1, 0, kp), want: Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: DefaultBlockSize}, firstGuess: true},
		{name: "pgzip/name+mtime", tar: odd, blob: pgz(t, odd, 5, 0, gzHeader{name: "x.tar", mtime: unix, os: 3}), want: Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: DefaultBlockSize}, firstGuess: true},
	}
	// A header no library writes: FHCRC, FTEXT, odd XFL, every field.
	odd6 := goGzip(t, odd, 6, std)
	hcrc := Header{Flags: FlagText | FlagHCRC | FlagExtra | FlagName | FlagComment, ModTime: 42, XFL: 7, OS: 11,
		Extra: []byte{1, 2, 3}, Name: "n\xe9", Comment: "line1\nline2"}
	cases = append(cases, findCase{name: "header/fhcrc", tar: odd, blob: withHeader(t, odd6, hcrc), want: Recipe{Compressor: GoStdlib, Level: 6}, firstGuess: true})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var attempts []Attempt
			r, err := Find(context.Background(), opener(tc.tar), opener(tc.blob), WithAttempts(func(a Attempt) { attempts = append(attempts, a) }))
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			wantHeader, err := ReadHeader(bytes.NewReader(tc.blob))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.Header = wantHeader
			if diff := cmp.Diff(want, r); diff != "" {
				t.Errorf("Find recipe (-want +got):\n%s", diff)
			}
			if tc.firstGuess && len(attempts) != 1 {
				t.Errorf("Find tried %d candidates, want the first to match: %v", len(attempts), attempts[0].Recipe)
			}
			last := attempts[len(attempts)-1]
			if !last.Matched || last.Equal != int64(len(tc.blob)) {
				t.Errorf("last attempt = %+v, want matched with %d equal bytes", last, len(tc.blob))
			}
			replay(t, r, tc.tar, tc.blob)
			// The recipe survives its encoding.
			enc, err := r.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			var back Recipe
			if err := back.UnmarshalBinary(enc); err != nil {
				t.Fatal(err)
			}
			replay(t, back, tc.tar, tc.blob)
		})
	}
}

// Empty input is ambiguous (several levels give the same bytes): Find must
// return some recipe that reproduces it.
func TestFindEmptyTar(t *testing.T) {
	var endOnly bytes.Buffer
	if err := tarWriterClose(&endOnly); err != nil {
		t.Fatal(err)
	}
	for _, in := range []struct {
		name string
		tar  []byte
	}{{"zero-bytes", nil}, {"end-marker-only", endOnly.Bytes()}} {
		blobs := map[string][]byte{
			"go":        goGzip(t, in.tar, -1, gzHeader{os: 255}),
			"klauspost": kpGzip(t, in.tar, -1, gzHeader{os: 255}),
			"pgzip":     pgz(t, in.tar, -1, 0, gzHeader{os: 255}),
		}
		for name, blob := range blobs {
			t.Run(in.name+"/"+name, func(t *testing.T) {
				r, err := Find(context.Background(), opener(in.tar), opener(blob))
				if err != nil {
					t.Fatalf("Find: %v", err)
				}
				replay(t, r, in.tar, blob)
			})
		}
	}
}

func TestFindRejects(t *testing.T) {
	tar := layerTar(t, 4, 1_500_000)
	other := layerTar(t, 5, 1_500_000)
	good := goGzip(t, tar, 6, gzHeader{os: 255})
	half := len(tar) / 2
	multi := append(goGzip(t, tar[:half], 6, gzHeader{os: 255}), goGzip(t, tar[half:], 6, gzHeader{os: 255})...)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-6] ^= 1
	reserved := bytes.Clone(good)
	reserved[3] |= 0x80

	cases := []struct {
		name    string
		tar     []byte
		blob    []byte
		bad     bool   // ErrBadBlob too
		message string // in the error
	}{
		{name: "gnu-gzip-6", tar: tar, blob: gnuGzip(t, tar, "-6"), message: "none of"},
		{name: "gnu-gzip-9-n", tar: tar, blob: gnuGzip(t, tar, "-9", "-n"), message: "none of"},
		{name: "multi-member", tar: tar, blob: multi, message: "multi-member"},
		{name: "trailing-garbage", tar: tar, blob: append(bytes.Clone(good), 0, 0, 0, 0), message: "multi-member"},
		{name: "flipped-byte", tar: tar, blob: flipped, bad: true},
		{name: "bad-crc", tar: tar, blob: badCRC, bad: true, message: "checksum"},
		{name: "truncated", tar: tar, blob: good[:len(good)-100], bad: true, message: "unexpected EOF"},
		{name: "header-only", tar: tar, blob: good[:10], bad: true, message: "decompress at offset 0: unexpected EOF"},
		{name: "empty-blob", tar: tar, blob: nil, bad: true, message: "bad gzip header"},
		{name: "not-gzip", tar: tar, blob: tar, bad: true, message: "not gzip"},
		{name: "reserved-flags", tar: tar, blob: reserved, bad: true, message: "reserved"},
		{name: "other-tar", tar: other, blob: good, bad: true, message: "differs from the tar"},
		{name: "tar-longer", tar: append(bytes.Clone(tar), 1), blob: good, bad: true, message: "before the tar does"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			_, err := Find(context.Background(), opener(tc.tar), opener(tc.blob))
			t.Logf("%v in %v", err, time.Since(start))
			if !errors.Is(err, ErrNoRecipe) {
				t.Fatalf("Find error = %v, want ErrNoRecipe", err)
			}
			if got := errors.Is(err, ErrBadBlob); got != tc.bad {
				t.Errorf("errors.Is(err, ErrBadBlob) = %v, want %v", got, tc.bad)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}

func TestFindBudget(t *testing.T) {
	tar := layerTar(t, 6, 1_000_000)
	blob := goGzip(t, tar, 3, gzHeader{os: 255}) // the 6th Go candidate
	cases := []struct {
		name    string
		opts    []Option
		message string
	}{
		{"cap", []Option{WithMaxCandidates(2)}, "candidate cap of 2 reached after 2 of"},
		{"time", []Option{WithTimeLimit(time.Nanosecond)}, "time limit of 1ns reached"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Find(context.Background(), opener(tar), opener(blob), tc.opts...)
			if !errors.Is(err, ErrNoRecipe) || errors.Is(err, ErrBadBlob) {
				t.Fatalf("Find error = %v, want ErrNoRecipe only", err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
	// Enough budget finds it.
	if _, err := Find(context.Background(), opener(tar), opener(blob), WithMaxCandidates(6)); err != nil {
		t.Fatalf("Find with 6 candidates: %v", err)
	}
}

func TestFindOptionsAndIO(t *testing.T) {
	tar := layerTar(t, 7, 200_000)
	blob := goGzip(t, tar, 6, gzHeader{os: 255})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ioErr := errors.New("disk on fire")
	failing := func() (io.ReadCloser, error) { return nil, ioErr }
	cases := []struct {
		name      string
		ctx       context.Context
		tar, blob Opener
		opts      []Option
		want      error
	}{
		{"bad-cap", context.Background(), opener(tar), opener(blob), []Option{WithMaxCandidates(0)}, nil},
		{"bad-time", context.Background(), opener(tar), opener(blob), []Option{WithTimeLimit(0)}, nil},
		{"canceled", ctx, opener(tar), opener(blob), nil, context.Canceled},
		{"tar-open", context.Background(), failing, opener(blob), nil, ioErr},
		{"blob-open", context.Background(), opener(tar), failing, nil, ioErr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Find(tc.ctx, tc.tar, tc.blob, tc.opts...)
			if err == nil {
				t.Fatal("Find succeeded")
			}
			if errors.Is(err, ErrNoRecipe) {
				t.Errorf("Find error = %v; ErrNoRecipe is for the blob, not for %s", err, tc.name)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Find error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCompressErrors(t *testing.T) {
	tar := layerTar(t, 8, 3<<20)
	ok := Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: DefaultBlockSize, Header: Header{OS: 255}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	diskFull := errors.New("disk full")
	cases := []struct {
		name string
		ctx  context.Context
		r    Recipe
		w    io.Writer
		want error
	}{
		{"unknown-compressor", context.Background(), Recipe{Compressor: "zlib", Level: 6}, io.Discard, ErrBadRecipe},
		{"stateless", context.Background(), Recipe{Compressor: KlauspostGzip, Level: -3}, io.Discard, ErrBadRecipe},
		{"level-10", context.Background(), Recipe{Compressor: GoStdlib, Level: 10}, io.Discard, ErrBadRecipe},
		{"block-too-small", context.Background(), Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: 16 << 10}, io.Discard, ErrBadRecipe},
		{"block-too-big", context.Background(), Recipe{Compressor: KlauspostPgzip, Level: 5, BlockSize: MaxBlockSize + 1}, io.Discard, ErrBadRecipe},
		{"block-for-go", context.Background(), Recipe{Compressor: GoStdlib, Level: 5, BlockSize: DefaultBlockSize}, io.Discard, ErrBadRecipe},
		{"bad-header", context.Background(), Recipe{Compressor: GoStdlib, Level: 5, Header: Header{Name: "x"}}, io.Discard, ErrBadHeader},
		{"canceled", ctx, ok, io.Discard, context.Canceled},
		{"pgzip-writer-fails", context.Background(), ok, &failAfter{n: 100_000, err: diskFull}, diskFull},
		{"go-writer-fails", context.Background(), Recipe{Compressor: GoStdlib, Level: 1}, &failAfter{n: 100_000, err: diskFull}, diskFull},
		{"header-write-fails", context.Background(), ok, &failAfter{n: 0, err: diskFull}, diskFull},
	}
	before := runtime.NumGoroutine()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Compress(tc.ctx, bytes.NewReader(tar), tc.w)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Compress error = %v, want %v", err, tc.want)
			}
		})
	}
	// pgzip leaks its writer goroutine when its output fails; Compress must not.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after the failures, %d before", n, before)
	}
}

type failAfter struct {
	n   int
	err error
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, f.err
	}
	f.n -= len(p)
	return len(p), nil
}

// Compress must equal the real pgzip writer around its edge cases: empty
// input, one byte, pgzip's 16 KiB dictionary tail, exact block multiples.
func TestCompressMatchesPgzip(t *testing.T) {
	data := layerTar(t, 9, 600_000)
	const bs = 100_000
	for _, n := range []int{0, 1, 16 << 10, 16<<10 + 1, bs - 1, bs, bs + 1, 2 * bs, 3*bs + 16<<10, len(data)} {
		for _, level := range []int{-2, 0, 1, 5, 9} {
			blob := pgz(t, data[:n], level, bs, gzHeader{os: 255})
			hdr, err := ReadHeader(bytes.NewReader(blob))
			if err != nil {
				t.Fatal(err)
			}
			replay(t, Recipe{Compressor: KlauspostPgzip, Level: level, BlockSize: bs, Header: hdr}, data[:n], blob)
		}
	}
}
