package bench

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-dev/skiff/bench/corpus"
)

// `skiff bench --corpus` measures every pair the corpus builds.
func TestCorpusPairsAreTheCorpus(t *testing.T) {
	got, want := slices.Clone(CorpusPairs), slices.Clone(corpus.Pairs)
	slices.Sort(got)
	slices.Sort(want)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("CorpusPairs vs corpus.Pairs (-corpus +bench):\n%s", d)
	}
}
