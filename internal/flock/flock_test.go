package flock

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestExcludes: a second lock of the same file waits for the first to be
// released (saying once that it waits), and gives up when its context
// ends; directories lock the same way.
func TestExcludes(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		lock func(ctx context.Context, waiting func()) (func(), error)
	}{
		{"file", func(ctx context.Context, w func()) (func(), error) { return File(ctx, filepath.Join(dir, "x.lock"), w) }},
		{"dir", func(ctx context.Context, w func()) (func(), error) { return Dir(ctx, dir, w) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release, err := tc.lock(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			waits := 0
			if _, err := tc.lock(ctx, func() { waits++ }); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("second lock while held: %v, want the context's deadline", err)
			}
			if waits != 1 {
				t.Errorf("waiting called %d times, want 1", waits)
			}
			got := make(chan error, 1)
			go func() {
				r, err := tc.lock(context.Background(), nil)
				if err == nil {
					r()
				}
				got <- err
			}()
			time.Sleep(50 * time.Millisecond)
			release()
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the second lock did not get the lock after the release")
			}
		})
	}
}
