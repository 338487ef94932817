package agent

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// engineConformance checks, on engine e under ref (a name the caller lets
// it use and cleans up), what the agent relies on of every engine: an
// absent name is ErrNoImage; Load stores an image Inspect and Base give
// back exactly; a second Load replaces it and keeps the replaced image
// under its retained name; Restore (where the engine has it) puts the
// replaced image back; Remove drops the retained image and nothing else;
// InUse answers. Docker, containerd and OCI layouts all pass it (the first
// two in the integration tests).
func engineConformance(t *testing.T, e Engine, ref string) {
	t.Helper()
	p := testPair(t)
	ctx := context.Background()
	wantID := func(step, ref, id string) {
		t.Helper()
		info, err := e.Inspect(ctx, ref)
		if err != nil || info.ID != id {
			t.Fatalf("%s: Inspect(%s) = %+v, %v; want image %s", step, ref, info, err, id)
		}
	}
	wantGone := func(step, ref string) {
		t.Helper()
		if info, err := e.Inspect(ctx, ref); !errors.Is(err, ErrNoImage) {
			t.Fatalf("%s: Inspect(%s) = %+v, %v; want ErrNoImage", step, ref, info, err)
		}
	}
	retained := retainedName(ref, p.oldID)
	wantGone("absent", ref)

	if err := e.Load(ctx, p.old, ref); err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantID("first load", ref, p.oldID)
	img, cleanup, err := e.Base(ctx, ref)
	if err != nil {
		t.Fatalf("Base: %v", err)
	}
	got, err1 := img.ConfigName()
	cf, err2 := img.ConfigFile()
	wantCf, _ := p.old.ConfigFile()
	if err := cleanup(); err != nil {
		t.Errorf("Base cleanup: %v", err)
	}
	if err1 != nil || err2 != nil || got.String() != p.oldID || !slices.Equal(cf.RootFS.DiffIDs, wantCf.RootFS.DiffIDs) {
		t.Fatalf("Base gives %s (%v, %v), diff_ids %v; want %s, %v", got, err1, err2, cf.RootFS.DiffIDs, p.oldID, wantCf.RootFS.DiffIDs)
	}

	if err := e.Load(ctx, p.new, ref); err != nil {
		t.Fatalf("second Load: %v", err)
	}
	wantID("second load", ref, p.newID)
	wantID("second load, the replaced image", retained, p.oldID)

	if r, ok := e.(restorer); ok {
		if err := r.Restore(ctx, ref, p.oldID); err != nil {
			t.Fatalf("Restore: %v", err)
		}
		wantID("restore", ref, p.oldID)
		wantGone("restore, the retained name", retained)
		if err := e.Load(ctx, p.new, ref); err != nil {
			t.Fatalf("Load after Restore: %v", err)
		}
		wantID("load after restore", ref, p.newID)
	}

	if err := e.Remove(ctx, p.oldID); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	wantGone("remove", retained)
	wantID("remove, the current image", ref, p.newID)
	if _, err := e.InUse(ctx); err != nil {
		t.Fatalf("InUse: %v", err)
	}
}

func TestOCIEngineConformance(t *testing.T) {
	t.Parallel()
	engineConformance(t, &OCIEngine{Dir: t.TempDir()}, "web:stable")
}
