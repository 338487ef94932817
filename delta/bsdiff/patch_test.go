package bsdiff

import (
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	dsbzip2 "github.com/dsnet/compress/bzip2"
)

func bz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	z, err := dsbzip2.NewWriter(&buf, &dsbzip2.WriterConfig{Level: 9})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := z.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func offtCtrl(cs ...Control) []byte {
	var pw patchWriter
	var buf bytes.Buffer
	pw.ctrl = &buf
	for _, c := range cs {
		_ = pw.EmitControl(c)
	}
	return buf.Bytes()
}

// buildPatch assembles a BSDIFF40 file from raw blocks, with the header's
// lengths overridable (-1 keeps the real value).
func buildPatch(t testing.TB, ctrl, diff, extra []byte, newSize, ctrlLen, diffLen int64) []byte {
	zc, zd, ze := bz(t, ctrl), bz(t, diff), bz(t, extra)
	if ctrlLen == -1 {
		ctrlLen = int64(len(zc))
	}
	if diffLen == -1 {
		diffLen = int64(len(zd))
	}
	hdr := make([]byte, headerSize)
	copy(hdr, magic)
	putOfft(hdr[8:], ctrlLen)
	putOfft(hdr[16:], diffLen)
	putOfft(hdr[24:], newSize)
	return bytes.Join([][]byte{hdr, zc, zd, ze}, nil)
}

// onlyReader hides every method but Read, forcing Patch's buffered path.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func TestPatchHostile(t *testing.T) {
	old := []byte("0123456789abcdef")
	good := buildPatch(t, offtCtrl(Control{4, 2, 1}), []byte{1, 1, 1, 1}, []byte("XY"), 6, -1, -1)
	var out bytes.Buffer
	if err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(good), &out); err != nil || out.String() != "1234XY" {
		t.Fatalf("valid hand-made patch: got %q, %v; want \"1234XY\"", out.String(), err)
	}

	hdrOnly := func(ctrlLen, diffLen, newSize int64) []byte {
		h := make([]byte, headerSize)
		copy(h, magic)
		putOfft(h[8:], ctrlLen)
		putOfft(h[16:], diffLen)
		putOfft(h[24:], newSize)
		return h
	}
	corruptBz := bytes.Clone(good)
	copy(corruptBz[headerSize+20:], "garbagegarbage")

	cases := []struct {
		name    string
		patch   []byte
		opts    []PatchOption
		want    string // substring of the error
		tooBig  bool
		corrupt bool
	}{
		{"empty", nil, nil, "header truncated", false, true},
		{"short header", []byte("BSDIFF40\x00\x00"), nil, "header truncated", false, true},
		{"bad magic", append([]byte("BSDIFF41"), good[8:]...), nil, "bad magic", false, true},
		{"negative ctrl len", hdrOnly(-5, 0, 0), nil, "control block length", false, true},
		{"negative diff len", hdrOnly(0, -5, 0), nil, "diff block length", false, true},
		{"huge ctrl len", hdrOnly(1<<62, 0, 0), nil, "control block length", false, true},
		{"negative new size", hdrOnly(0, 0, -1), nil, "negative new size", false, true},
		{"new size over default cap", hdrOnly(0, 0, 1<<40), nil, "exceeds limit", true, true},
		{"new size over option cap", good, []PatchOption{WithMaxOutput(5)}, "exceeds limit", true, true},
		{"add overruns new", buildPatch(t, offtCtrl(Control{7, 0, 0}), make([]byte, 7), nil, 6, -1, -1), nil, "add length 7 overruns", false, true},
		{"copy overruns new", buildPatch(t, offtCtrl(Control{4, 3, 0}), make([]byte, 4), []byte("XYZ"), 6, -1, -1), nil, "copy length 3 overruns", false, true},
		{"negative add", buildPatch(t, offtCtrl(Control{-1, 0, 0}), nil, nil, 6, -1, -1), nil, "negative length", false, true},
		{"negative copy", buildPatch(t, offtCtrl(Control{0, -1 << 62, 0}), nil, nil, 6, -1, -1), nil, "negative length", false, true},
		{"huge seek", buildPatch(t, offtCtrl(Control{1, 0, -(1<<62 + 5)}, Control{1, 0, 0}), []byte{0, 0}, nil, 2, -1, -1), nil, "seek", false, true},
		{"seek walks away", buildPatch(t, offtCtrl(Control{0, 1, 1 << 62}, Control{0, 1, 1 << 62}), nil, []byte("ab"), 2, -1, -1), nil, "old position", false, true},
		{"ctrl block truncated", buildPatch(t, offtCtrl(Control{2, 0, 0})[:20], []byte{0, 0}, nil, 2, -1, -1), nil, "control block truncated", false, true},
		{"ctrl runs out", buildPatch(t, offtCtrl(Control{2, 0, 0}), []byte{0, 0}, nil, 4, -1, -1), nil, "control block truncated", false, true},
		{"diff truncated", buildPatch(t, offtCtrl(Control{4, 2, 0}), []byte{1, 1}, []byte("XY"), 6, -1, -1), nil, "diff block truncated", false, true},
		{"extra truncated", buildPatch(t, offtCtrl(Control{4, 2, 0}), make([]byte, 4), []byte("X"), 6, -1, -1), nil, "extra block truncated", false, true},
		{"ctrl len too short", buildPatch(t, offtCtrl(Control{4, 2, 1}), make([]byte, 4), []byte("XY"), 6, 20, -1), nil, "control block", false, true},
		{"diff len past end", buildPatch(t, offtCtrl(Control{4, 2, 1}), make([]byte, 4), []byte("XY"), 6, -1, 1<<20), nil, "", false, true},
		{"corrupt bzip2", corruptBz, nil, "control block", false, true},
		{"not bzip2", append(hdrOnly(4, 4, 6), "abcdabcdabcd"...), nil, "control block", false, true},
	}
	for _, c := range cases {
		for _, mode := range []string{"readerat", "stream"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				var r io.Reader = bytes.NewReader(c.patch)
				if mode == "stream" {
					r = onlyReader{r}
				}
				var out bytes.Buffer
				err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), r, &out, c.opts...)
				if err == nil {
					t.Fatalf("Patch accepted a bad patch, wrote %q", out.String())
				}
				if c.corrupt && !errors.Is(err, ErrCorruptPatch) {
					t.Errorf("error %q does not wrap ErrCorruptPatch", err)
				}
				if c.tooBig && !errors.Is(err, ErrTooLarge) {
					t.Errorf("error %q does not wrap ErrTooLarge", err)
				}
				if !strings.Contains(err.Error(), c.want) {
					t.Errorf("error %q does not mention %q", err, c.want)
				}
			})
		}
	}
}

func TestPatchOutOfRangeOldIsZero(t *testing.T) {
	// bspatch 4.3 adds diff bytes that fall outside old to zero; so must we.
	old := []byte("abc")
	p := buildPatch(t, offtCtrl(Control{2, 0, -4}, Control{4, 0, 0}), []byte{1, 1, 1, 1, 1, 1}, nil, 6, -1, -1)
	var out bytes.Buffer
	if err := Patch(context.Background(), bytes.NewReader(old), 3, bytes.NewReader(p), &out); err != nil {
		t.Fatal(err)
	}
	// first triple: old[0:2]+1 = "bc"; seek to -2: old[-2],old[-1] are 0, old[0:2]+1.
	if want := "bc\x01\x01bc"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestPatchErrorsNotCorrupt(t *testing.T) {
	r := newRand(2)
	old := binaryLike(r, 10000)
	new := edit(r, old, 10)
	var p bytes.Buffer
	if err := WritePatch(context.Background(), old, new, &p); err != nil {
		t.Fatal(err)
	}
	t.Run("old shorter than declared", func(t *testing.T) {
		err := Patch(context.Background(), bytes.NewReader(old[:5000]), int64(len(old)), bytes.NewReader(p.Bytes()), io.Discard)
		if err == nil || errors.Is(err, ErrCorruptPatch) || !strings.Contains(err.Error(), "reading old") {
			t.Fatalf("got %v, want a non-corrupt error about reading old", err)
		}
	})
	t.Run("writer fails", func(t *testing.T) {
		errW := errors.New("disk full")
		err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(p.Bytes()), failWriter{errW})
		if !errors.Is(err, errW) || errors.Is(err, ErrCorruptPatch) {
			t.Fatalf("got %v, want the writer's error", err)
		}
	})
	t.Run("patch reader fails", func(t *testing.T) {
		errR := errors.New("link down")
		pr := io.MultiReader(bytes.NewReader(p.Bytes()[:p.Len()/2]), failReader{errR})
		err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), pr, io.Discard)
		if !errors.Is(err, errR) {
			t.Fatalf("got %v, want the reader's error", err)
		}
	})
	t.Run("buffer limit", func(t *testing.T) {
		err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), onlyReader{bytes.NewReader(p.Bytes())}, io.Discard, WithMaxBuffer(10))
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("got %v, want ErrTooLarge", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Patch(ctx, bytes.NewReader(old), int64(len(old)), bytes.NewReader(p.Bytes()), io.Discard)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("bad options", func(t *testing.T) {
		for _, o := range []PatchOption{WithMaxOutput(-1), WithMaxBuffer(-1), WithMaxOutput(1 << 61)} {
			if err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(p.Bytes()), io.Discard, o); err == nil {
				t.Error("invalid option accepted")
			}
		}
	})
	t.Run("patch at an offset in a ReaderAt", func(t *testing.T) {
		f := bytes.NewReader(append([]byte("prefix--"), p.Bytes()...))
		if _, err := f.Seek(8, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), f, &out); err != nil || !bytes.Equal(out.Bytes(), new) {
			t.Fatalf("got %d bytes, %v; want new", out.Len(), err)
		}
	})
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

type failReader struct{ err error }

func (f failReader) Read([]byte) (int, error) { return 0, f.err }

func TestPatchStreamsHostile(t *testing.T) {
	r := newRand(4)
	old := binaryLike(r, 20000)
	new := edit(r, old, 20)
	ctrl, diff, extra, err := DiffStreams(context.Background(), old, new)
	if err != nil {
		t.Fatal(err)
	}
	if len(extra) == 0 {
		t.Fatal("test needs a delta with extra bytes")
	}
	run := func(newSize int64, c, d, e []byte, opts ...PatchOption) error {
		return PatchStreams(context.Background(), bytes.NewReader(old), int64(len(old)), newSize,
			bytes.NewReader(c), bytes.NewReader(d), bytes.NewReader(e), io.Discard, opts...)
	}
	n := int64(len(new))
	cases := []struct {
		name    string
		err     error
		want    string
		tooBig  bool
		corrupt bool
	}{
		{"valid", run(n, ctrl, diff, extra), "", false, false},
		{"ctrl trailing", run(n, append(bytes.Clone(ctrl), 0), diff, extra), "control stream has trailing", false, true},
		{"diff trailing", run(n, ctrl, append(bytes.Clone(diff), 0), extra), "diff stream has trailing", false, true},
		{"extra trailing", run(n, ctrl, diff, append(bytes.Clone(extra), 0)), "extra stream has trailing", false, true},
		{"ctrl truncated", run(n, ctrl[:len(ctrl)-1], diff, extra), "control stream truncated", false, true},
		{"diff truncated", run(n, ctrl, diff[:len(diff)-1], extra), "diff stream truncated", false, true},
		{"extra truncated", run(n, ctrl, diff, extra[:len(extra)-1]), "extra stream truncated", false, true},
		{"new size larger", run(n+1, ctrl, diff, extra), "control stream truncated", false, true},
		{"new size smaller", run(n-1, ctrl, diff, extra), "overruns", false, true},
		{"new size negative", run(-1, ctrl, diff, extra), "negative new size", false, false},
		{"new size over cap", run(n, ctrl, diff, extra, WithMaxOutput(n-1)), "exceeds limit", true, true},
		{"overlong varint", run(n, bytes.Repeat([]byte{0xff}, 11), diff, extra), "control stream", false, true},
		{"huge add", run(n, appendControl(nil, Control{1 << 61, 0, 0}), diff, extra), "out of range", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.want == "" {
				if c.err != nil {
					t.Fatalf("valid streams rejected: %v", c.err)
				}
				return
			}
			if c.err == nil {
				t.Fatal("bad streams accepted")
			}
			if c.corrupt != errors.Is(c.err, ErrCorruptPatch) {
				t.Errorf("error %q: wraps ErrCorruptPatch = %v, want %v", c.err, !c.corrupt, c.corrupt)
			}
			if c.tooBig && !errors.Is(c.err, ErrTooLarge) {
				t.Errorf("error %q does not wrap ErrTooLarge", c.err)
			}
			if !strings.Contains(c.err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", c.err, c.want)
			}
		})
	}
}

func unbz(t testing.TB, b []byte) []byte {
	t.Helper()
	out, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("bunzip2: %v", err)
	}
	return out
}
