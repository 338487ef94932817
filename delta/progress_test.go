package delta

import (
	"bytes"
	"context"
	"testing"
)

// TestDiffProgress: every phase is reported up to its total, and the
// delta is the same with and without a Progress hook.
func TestDiffProgress(t *testing.T) {
	base, target := tinyPair(t)
	var plain bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &plain, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	last := map[string][2]int64{}
	opts := DefaultOptions()
	opts.Progress = func(phase string, done, total int64) {
		if done > total || done < last[phase][0] {
			t.Errorf("%s: %d of %d after %d", phase, done, total, last[phase][0])
		}
		last[phase] = [2]int64{done, total}
	}
	var withProgress bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &withProgress, opts); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(plain.Bytes(), withProgress.Bytes()) {
		t.Fatal("the delta depends on the Progress hook")
	}
	for _, phase := range []string{PhaseLayers, PhaseEncode, PhaseWrite} {
		got, ok := last[phase]
		if !ok || got[0] != got[1] || got[1] == 0 {
			t.Errorf("%s: last report %v (reported: %v)", phase, got, ok)
		}
	}
}
