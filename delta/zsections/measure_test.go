package zsections

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/internal/patchtest"
)

// zstdBsdiff is the size of delta's bsdiff patch of old to new.
func zstdBsdiff(t testing.TB, old, new []byte) int { return patchtest.ZstdBsdiffSize(t, old, new) }

// filtered is the composition skiff uses: exefilter first, then Expand.
// It returns T1(x), E(T1(x)) (or T1(x) when nothing expands) and the
// marshalled Params of both stages.
func filtered(t testing.TB, in []byte) (t1, e []byte, xp, zp []byte) {
	t.Helper()
	t1, p1, err := exefilter.Encode(in, exefilter.DefaultForms)
	if err != nil {
		t.Fatal(err)
	}
	if xp, err = p1.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	e, p2, ok, err := Expand(t1)
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return t1, t1, xp, nil
	}
	if zp, err = p2.MarshalBinary(); err != nil {
		t.Fatal(err)
	}
	// The device's path: recompress, then undo the x86 filter.
	var back bytes.Buffer
	if _, err := io.Copy(&back, exefilter.NewDecoder(NewCompressor(bytes.NewReader(e), p2), p1)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Bytes(), in) {
		t.Fatalf("NewCompressor then exefilter.NewDecoder: %d bytes differ from the %d-byte input", back.Len(), len(in))
	}
	return t1, e, xp, zp
}

// TestMeasureCorpus prints zstd(streaming bsdiff) sizes for each pair of
// files under $ZSECTIONS_PAIRS/{old,new}: (a) plain, (b) exefilter,
// (c) exefilter then Expand, (d) Expand alone. Sizes with a filter include both files'
// marshalled Params (old: exefilter Layout only, as exefilter's own
// measurement counts it, plus zsections Params).
func TestMeasureCorpus(t *testing.T) {
	dir := os.Getenv("ZSECTIONS_PAIRS")
	if dir == "" {
		t.Skip("ZSECTIONS_PAIRS not set")
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "new"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	var ta, tb, tc, td int
	for _, nf := range files {
		rel, _ := filepath.Rel(filepath.Join(dir, "new"), nf)
		old, err := os.ReadFile(filepath.Join(dir, "old", rel))
		if err != nil {
			continue
		}
		nw, err := os.ReadFile(nf)
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		a := zstdBsdiff(t, old, nw)
		t1o, eo, xpo, zpo := filtered(t, old)
		t1n, en, xpn, zpn := filtered(t, nw)
		var po exefilter.Params
		po.UnmarshalBinary(xpo)
		lo, _ := exefilter.Params{Layout: po.Layout}.MarshalBinary()
		b := zstdBsdiff(t, t1o, t1n) + len(lo) + len(xpn)
		c := b
		if zpn != nil || zpo != nil {
			c = zstdBsdiff(t, eo, en) + len(lo) + len(xpn) + len(zpo) + len(zpn)
		}
		// (d) Expand alone, without the x86 filter.
		d := a
		eo2, po2, ok2, _ := Expand(old)
		en2, pn2, ok3, _ := Expand(nw)
		if ok2 && ok3 {
			m1, _ := po2.MarshalBinary()
			m2, _ := pn2.MarshalBinary()
			d = zstdBsdiff(t, eo2, en2) + len(m1) + len(m2)
		}
		ta, tb, tc, td = ta+a, tb+b, tc+c, td+d
		t.Logf("%-45s %9d %9d (%+6.1f%%) %9d (%+6.1f%%) %9d (%+6.1f%%)  expanded %d→%d  params %d+%d  %v", rel, a, b, pct(b, a), c, pct(c, a), d, pct(d, a), len(nw), len(en), len(zpo), len(zpn), time.Since(t0).Round(time.Millisecond))
	}
	t.Logf("%-45s %9d %9d (%+6.1f%%) %9d (%+6.1f%%) %9d (%+6.1f%%)", "TOTAL", ta, tb, pct(tb, ta), tc, pct(tc, ta), td, pct(td, ta))
}

func pct(x, base int) float64 { return 100 * float64(x-base) / float64(base) }
