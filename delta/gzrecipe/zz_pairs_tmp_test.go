package gzrecipe

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestTmpPairs(t *testing.T) {
	env := os.Getenv("GZRECIPE_PAIRS")
	if env == "" {
		t.Skip()
	}
	for _, p := range strings.Split(env, ",") {
		tb := strings.SplitN(p, "=", 2)
		tried := 0
		var last Attempt
		start := time.Now()
		r, err := Find(context.Background(), fileOpener(tb[0]), fileOpener(tb[1]), WithAttempts(func(a Attempt) { tried++; last = a }))
		st, _ := os.Stat(tb[1])
		t.Logf("%s %.1f MB: %v err=%v tried=%d in %v (last %v equal=%d)", tb[1][len(tb[1])-70:], float64(st.Size())/1e6, r, err, tried, time.Since(start).Round(time.Millisecond), last.Recipe, last.Equal)
	}
}
