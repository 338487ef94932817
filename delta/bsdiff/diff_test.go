package bsdiff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, p := range testPairs() {
		t.Run(p.name, func(t *testing.T) {
			ctrl, diff, extra := roundTripStreams(t, p.old, p.new)
			patch := roundTripPatch(t, p.old, p.new)
			if len(diff)+len(extra) != len(p.new) {
				t.Errorf("diff (%d) + extra (%d) bytes != new size %d", len(diff), len(extra), len(p.new))
			}
			t.Logf("old %d new %d: ctrl %d diff %d extra %d, BSDIFF40 %d", len(p.old), len(p.new), len(ctrl), len(diff), len(extra), len(patch))
		})
	}
}

// TestDeltaShape pins what the differ must find on simple cases.
func TestDeltaShape(t *testing.T) {
	r := newRand(5)
	base := binaryLike(r, 64<<10)
	cases := []struct {
		name      string
		old, new  []byte
		maxExtra  int // literal bytes the delta may carry at most
		maxCtrls  int
		wantExtra int // exact extra length, or -1
	}{
		{"identical", base, base, 0, 1, 0},
		{"empty old", nil, base[:1000], 1000, 1, 1000},
		{"empty new", base, nil, 0, 0, 0},
		{"insert 100", base, append(append(bytes.Clone(base[:30000]), bytes.Repeat([]byte{0xAB}, 100)...), base[30000:]...), 100, 2, 100},
		{"delete 1000", base, append(bytes.Clone(base[:20000]), base[21000:]...), 0, 2, 0},
		{"swap halves", base, append(bytes.Clone(base[32<<10:]), base[:32<<10]...), 0, 3, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rec recorder
			if err := Diff(context.Background(), c.old, c.new, &rec); err != nil {
				t.Fatal(err)
			}
			if err := rec.check(len(c.new)); err != nil {
				t.Fatal(err)
			}
			if rec.extra > c.maxExtra || (c.wantExtra >= 0 && rec.extra != c.wantExtra) {
				t.Errorf("extra bytes = %d, want <= %d (exact %d)", rec.extra, c.maxExtra, c.wantExtra)
			}
			if len(rec.ctrls) > c.maxCtrls {
				t.Errorf("%d control triples, want <= %d: %v", len(rec.ctrls), c.maxCtrls, rec.ctrls)
			}
		})
	}
}

// recorder is an Emitter that checks the call protocol.
type recorder struct {
	ctrls            []Control
	diff, extra      int
	wantD, wantE     int64
	protocolFailures []string
}

func (r *recorder) EmitControl(c Control) error {
	if r.wantD != 0 || r.wantE != 0 {
		r.protocolFailures = append(r.protocolFailures, fmt.Sprintf("control %v before the previous bytes (%d diff, %d extra missing)", c, r.wantD, r.wantE))
	}
	r.ctrls = append(r.ctrls, c)
	r.wantD, r.wantE = c.Add, c.Copy
	return nil
}

func (r *recorder) EmitDiff(p []byte) error {
	if r.wantE != r.ctrls[len(r.ctrls)-1].Copy || int64(len(p)) > r.wantD {
		r.protocolFailures = append(r.protocolFailures, "diff bytes out of order or too many")
	}
	r.wantD -= int64(len(p))
	r.diff += len(p)
	return nil
}

func (r *recorder) EmitExtra(p []byte) error {
	if r.wantD != 0 || int64(len(p)) > r.wantE {
		r.protocolFailures = append(r.protocolFailures, "extra bytes before diff bytes or too many")
	}
	r.wantE -= int64(len(p))
	r.extra += len(p)
	return nil
}

func (r *recorder) check(newSize int) error {
	if len(r.protocolFailures) > 0 {
		return errors.New(r.protocolFailures[0])
	}
	if r.diff+r.extra != newSize {
		return fmt.Errorf("diff %d + extra %d != new size %d", r.diff, r.extra, newSize)
	}
	for i, c := range r.ctrls {
		if c.Add < 0 || c.Copy < 0 {
			return fmt.Errorf("triple %d has a negative length: %v", i, c)
		}
	}
	return nil
}

// failingEmitter fails on the n-th call.
type failingEmitter struct{ n int }

var errEmit = errors.New("emitter failed")

func (f *failingEmitter) call() error {
	if f.n--; f.n == 0 {
		return errEmit
	}
	return nil
}
func (f *failingEmitter) EmitControl(Control) error { return f.call() }
func (f *failingEmitter) EmitDiff([]byte) error     { return f.call() }
func (f *failingEmitter) EmitExtra([]byte) error    { return f.call() }

func TestDiffErrors(t *testing.T) {
	r := newRand(11)
	old := binaryLike(r, 50<<10)
	new := edit(r, old, 30)
	for _, n := range []int{1, 2, 3, 10} {
		t.Run(fmt.Sprintf("emitter fails on call %d", n), func(t *testing.T) {
			if err := Diff(context.Background(), old, new, &failingEmitter{n: n}); !errors.Is(err, errEmit) {
				t.Fatalf("got %v, want the emitter's error", err)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := WritePatch(ctx, old, new, new0()); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
}

func new0() *bytes.Buffer { return new(bytes.Buffer) }

// TestControlEncoding pins both control encodings byte for byte.
func TestControlEncoding(t *testing.T) {
	cases := []struct {
		c      Control
		offt   string
		varint string
	}{
		{Control{0, 0, 0}, "000000000000000000000000000000000000000000000000", "000000"},
		{Control{1, 300, -1}, "0100000000000000" + "2c01000000000000" + "0100000000000080", "01ac0201"},
		{Control{1 << 40, 5, 64}, "0000000000010000" + "0500000000000000" + "4000000000000000", "808080808020058001"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprint(c.c), func(t *testing.T) {
			var pw patchWriter
			var buf bytes.Buffer
			pw.ctrl = &buf
			if err := pw.EmitControl(c.c); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%x", buf.Bytes()); got != c.offt {
				t.Errorf("BSDIFF40 encoding = %s, want %s", got, c.offt)
			}
			if got := fmt.Sprintf("%x", appendControl(nil, c.c)); got != c.varint {
				t.Errorf("compact encoding = %s, want %s", got, c.varint)
			}
			got, err := (&offtControls{r: &buf}).next()
			if err != nil || got != c.c {
				t.Errorf("decoding BSDIFF40 = %v, %v; want %v", got, err, c.c)
			}
			got, err = (&varintControls{r: bytes.NewReader(appendControl(nil, c.c))}).next()
			if err != nil || got != c.c {
				t.Errorf("decoding compact = %v, %v; want %v", got, err, c.c)
			}
		})
	}
}
