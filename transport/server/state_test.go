package server

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentPublishSharedState has two servers' states on one
// directory publish at the same time: every publish must land, none may
// overwrite another's.
func TestConcurrentPublishSharedState(t *testing.T) {
	dir := t.TempDir()
	var states [2]*state
	for i := range states {
		st, err := openState(dir)
		if err != nil {
			t.Fatal(err)
		}
		states[i] = st
	}
	const perState = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*perState)
	for i, st := range states {
		for j := range perState {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := fmt.Sprintf("sha256:%064x", i*1000+j)
				rec := record{Ref: "docker://r/x:" + cfg[7:15], Pinned: "p", ConfigDigest: cfg, Published: time.Now()}
				if _, err := st.publish("stable", fmt.Sprintf("img-%d-%d", i, j), rec); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fresh, err := openState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(fresh.all()), 2*perState; got != want {
		t.Fatalf("state.json has %d published images after %d concurrent publishes by two servers", got, want)
	}
}
