package delta

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/imagetest"
)

// keepPair: a base of an OS layer the target keeps as it is and an app
// layer of which the target changes one file, drops most and copies one
// OS file, so most of the base's payloads are never read by apply.
func keepPair(t testing.TB) (base, target v1.Image) {
	rng := rand.New(rand.NewPCG(3, 4))
	blob := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	var osFiles, oldApp []imagetest.File
	for i := range 20 {
		osFiles = append(osFiles, imagetest.File{Name: fmt.Sprintf("usr/lib/lib%02d.so", i), Data: blob(20 << 10)})
	}
	for i := range 10 {
		oldApp = append(oldApp, imagetest.File{Name: fmt.Sprintf("app/asset%02d.bin", i), Data: blob(30 << 10)})
	}
	main := blob(64 << 10)
	oldApp = append(oldApp, imagetest.File{Name: "app/main", Data: main})
	osLayer := imagetest.LayerTar(t, osFiles...)
	base = imagetest.Image(t, osLayer, imagetest.LayerTar(t, oldApp...))
	target = imagetest.Image(t, osLayer, imagetest.LayerTar(t,
		imagetest.File{Name: "app/main", Data: main[:1000] + "v2" + main[1000:]},
		oldApp[3],
		imagetest.File{Name: "app/lib07.so", Data: osFiles[7].Data},
	))
	return base, target
}

// TestKeepStoresOnlyWhatApplyReads: with base.keep (version 6) the
// device's content store holds the base payloads the delta reads — the
// op's base, the unchanged asset and the copied OS file — and the declared
// scratch space shrinks accordingly; without it (version 5) it holds all
// 31. Either way the target is exact and what apply wrote stays within
// limits.scratch.
func TestKeepStoresOnlyWhatApplyReads(t *testing.T) {
	base, target := keepPair(t)
	for _, tc := range []struct {
		name        string
		opts        Options
		version     int
		storedBlobs int
	}{
		{"version 6", DefaultOptions(), 6, 3 + 1}, // 3 from the base, 1 made
		{"version 5", noKeep(), 5, 31 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := Diff(context.Background(), base, target, &buf, tc.opts); err != nil {
				t.Fatal(err)
			}
			h, err := format.ReadHeader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if h.Manifest.Version != tc.version {
				t.Fatalf("version %d, want %d", h.Manifest.Version, tc.version)
			}
			work := t.TempDir()
			blobs := func() int {
				b, _ := filepath.Glob(filepath.Join(work, "store", "blobs", "sha256", "*"))
				return len(b)
			}
			var held int
			var peak int64
			testHookBeforeRebuild = func(string) { held, peak = blobs(), max(peak, dirBytes(work)) }
			defer func() { testHookBeforeRebuild = nil }()
			res, err := Apply(context.Background(), base, bytes.NewReader(buf.Bytes()), ApplyOptions{WorkDir: work, AllowUnsigned: true})
			if err != nil {
				t.Fatal(err)
			}
			defer res.Close()
			if got, want := configName(t, res.Image), configName(t, target); got != want {
				t.Fatalf("image %s, want %s", got, want)
			}
			if held != tc.storedBlobs {
				t.Errorf("after the body the store holds %d payloads, want %d", held, tc.storedBlobs)
			}
			if n := blobs(); n != 0 {
				t.Errorf("once the layers are rebuilt the store holds %d payloads, want none", n)
			}
			written := dirBytes(work)
			peak = max(peak, written)
			if peak > h.Manifest.Limits.Scratch {
				t.Errorf("apply held %d bytes in its work directory, the delta declares %d", peak, h.Manifest.Limits.Scratch)
			}
			t.Logf("scratch declared %d; work directory after the body %d bytes, at the end %d", h.Manifest.Limits.Scratch, peak, written)
		})
	}
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// dirBytes is the size of the regular files under dir.
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
