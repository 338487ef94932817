package exefilter

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/patchtest"
)

// zstdBsdiff is the size of delta's bsdiff patch of old to new.
func zstdBsdiff(t testing.TB, old, new []byte) int { return patchtest.ZstdBsdiffSize(t, old, new) }

// TestMeasureCorpus prints, per pair of files, the size of zstd(streaming
// bsdiff) without and with the filter for several form sets. It runs only
// when EXEFILTER_PAIRS names a directory holding old/ and new/ trees (see
// doc.go for how the corpus pairs are extracted); EXEFILTER_FORMS may list
// form sets as comma-separated numbers.
func TestMeasureCorpus(t *testing.T) {
	dir := os.Getenv("EXEFILTER_PAIRS")
	if dir == "" {
		t.Skip("EXEFILTER_PAIRS not set")
	}
	sets := []Forms{FormCall, FormCall | FormJmp, FormCall | FormJcc, FormCall | FormRIP, FormCall | FormJmp | FormJcc | FormRIP}
	if s := os.Getenv("EXEFILTER_FORMS"); s != "" {
		sets = nil
		for _, f := range strings.Split(s, ",") {
			var v int
			fmt.Sscan(f, &v)
			sets = append(sets, Forms(v))
		}
	}
	var files []string
	filepath.WalkDir(filepath.Join(dir, "new"), func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	total := map[Forms]int{}
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
		base := zstdBsdiff(t, old, nw)
		total[0] += base
		line := fmt.Sprintf("%-60s %9d", rel, base)
		for _, fs := range sets {
			to, po, err := Encode(old, fs)
			if err != nil {
				t.Fatal(err)
			}
			tn, pn, err := Encode(nw, fs)
			if err != nil {
				t.Fatal(err)
			}
			mo, _ := Params{Layout: po.Layout}.MarshalBinary() // old: layout only
			mn, _ := pn.MarshalBinary()
			d := zstdBsdiff(t, to, tn)
			sz := d + len(mo) + len(mn)
			total[fs] += sz
			line += fmt.Sprintf(" | %s %9d (%+.1f%%, exc %d=%dB)", fs, sz, 100*float64(sz-base)/float64(base), len(pn.Exceptions), len(mn))
		}
		t.Log(line)
	}
	line := fmt.Sprintf("%-60s %9d", "TOTAL", total[0])
	for _, fs := range sets {
		line += fmt.Sprintf(" | %s %9d (%+.1f%%)", fs, total[fs], 100*float64(total[fs]-total[0])/float64(total[0]))
	}
	t.Log(line)
}
