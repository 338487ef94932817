package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/skiff-dev/skiff/layerfs"
)

// cancelAtDescriptor is an image whose Descriptor cancels a context:
// layerfs asks for it after writing the blobs, before the index.
type cancelAtDescriptor struct {
	v1.Image
	cancel context.CancelFunc
}

func (c *cancelAtDescriptor) Descriptor() (*v1.Descriptor, error) {
	c.cancel()
	return partial.Descriptor(c.Image)
}

// failingLayers is an image whose layer number fail breaks after after
// bytes, as a full disk or a dying source would.
type failingLayers struct {
	v1.Image
	fail  int
	after int64
}

var errInjected = errors.New("injected failure")

func (f *failingLayers) Layers() ([]v1.Layer, error) {
	ls, err := f.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := append([]v1.Layer(nil), ls...)
	out[f.fail] = &failingLayer{Layer: ls[f.fail], after: f.after}
	return out, nil
}

type failingLayer struct {
	v1.Layer
	after int64
}

func (l *failingLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, l.after), injectedErrReader{}), rc}, nil
}

type injectedErrReader struct{}

func (injectedErrReader) Read([]byte) (int, error) { return 0, errInjected }

// layoutFiles lists the names of a layout's files (relative), sorted.
func layoutFiles(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// tempLeftovers are the temporary files in a layout.
func tempLeftovers(t *testing.T, dir string) []string {
	t.Helper()
	var left []string
	for _, n := range layoutFiles(t, dir) {
		if strings.HasPrefix(filepath.Base(n), ".") {
			left = append(left, n)
		}
	}
	return left
}

func blobPath(dir string, h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }

// TestOCIWriteFailureKeepsIndex: a write that fails while it writes blobs,
// or after the blobs and before index.json, leaves index.json byte for
// byte as it was and no temporary file; the blobs come first.
func TestOCIWriteFailureKeepsIndex(t *testing.T) {
	p := testPair(t)
	newLayers, err := p.new.Layers()
	if err != nil {
		t.Fatal(err)
	}
	// The first layer of the new image the old one does not have: a
	// layer already in the layout is not written again.
	oldLayers, err := p.old.Layers()
	if err != nil {
		t.Fatal(err)
	}
	have := map[v1.Hash]bool{}
	for _, l := range oldLayers {
		h, _ := l.Digest()
		have[h] = true
	}
	firstNew := -1
	for i, l := range newLayers {
		if h, _ := l.Digest(); !have[h] && firstNew < 0 {
			firstNew = i
		}
	}
	if firstNew < 0 || firstNew == len(newLayers)-1 {
		t.Fatalf("the test pair's new image has no new layer before the last")
	}
	for _, tc := range []struct {
		name string
		img  func(cancel context.CancelFunc) v1.Image
		want error
		// blobsWritten: all of the new image's blobs are in the layout
		// after the failure (they are written before the index).
		blobsWritten bool
	}{
		{"after the blobs", func(cancel context.CancelFunc) v1.Image {
			return &cancelAtDescriptor{Image: p.new, cancel: cancel}
		}, context.Canceled, true},
		{"in the first new layer", func(context.CancelFunc) v1.Image {
			return &failingLayers{Image: p.new, fail: firstNew, after: 1000}
		}, errInjected, false},
		{"in the last layer", func(context.CancelFunc) v1.Image {
			return &failingLayers{Image: p.new, fail: len(newLayers) - 1, after: 10}
		}, errInjected, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, p)
			before, err := os.ReadFile(filepath.Join(d.images, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			err = layerfs.Write(ctx, "oci:"+d.images+":web:stable", tc.img(cancel))
			if !errors.Is(err, tc.want) {
				t.Fatalf("write = %v, want %v", err, tc.want)
			}
			after, err := os.ReadFile(filepath.Join(d.images, "index.json"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Errorf("index.json changed by a failed write:\n%s\n---\n%s", before, after)
			}
			if left := tempLeftovers(t, d.images); len(left) > 0 {
				t.Errorf("temporary files left: %v", left)
			}
			if got := d.running(t).ID; got != p.oldID {
				t.Errorf("web:stable is %s after a failed write, want %s", got, p.oldID)
			}
			if tc.blobsWritten {
				md, _ := p.new.Digest()
				cfg, _ := p.new.ConfigName()
				hs := []v1.Hash{md, cfg}
				for _, l := range newLayers {
					h, _ := l.Digest()
					hs = append(hs, h)
				}
				for _, h := range hs {
					if _, err := os.Stat(blobPath(d.images, h)); err != nil {
						t.Errorf("blob %s not written before the index: %v", h, err)
					}
				}
			} else {
				// No blob under its final name holds less than it should.
				for _, l := range newLayers {
					h, _ := l.Digest()
					if _, err := os.Stat(blobPath(d.images, h)); err == nil {
						checkBlob(t, d.images, h)
					}
				}
			}
			// The next write goes through.
			if err := layerfs.Write(context.Background(), "oci:"+d.images+":web:stable", p.new); err != nil {
				t.Fatal(err)
			}
			if got := d.running(t).ID; got != p.newID {
				t.Errorf("web:stable is %s after the write, want %s", got, p.newID)
			}
		})
	}
}

// ociFullDisk mounts a tmpfs of size bytes on a new directory (the test is
// skipped where mounting is not allowed) and returns it with a function
// that fills it up and one that frees it again.
func ociFullDisk(t *testing.T, size int64) (dir string, fill, free func()) {
	t.Helper()
	dir = t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	fill = func() {
		t.Helper()
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		buf := make([]byte, 4<<10)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill the disk: %v", err)
				}
				return
			}
		}
	}
	free = func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}
	return dir, fill, free
}

// TestOCIFullDisk: on a full disk, a load and a remove fail and leave
// index.json byte for byte as it was, every blob in place and no temporary
// file; once there is room both work.
func TestOCIFullDisk(t *testing.T) {
	p := testPair(t)
	mnt, fill, free := ociFullDisk(t, 64<<20)
	ctx := context.Background()
	e := &OCIEngine{Dir: filepath.Join(mnt, "images")}
	if err := e.Load(ctx, p.old, "web:stable"); err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx, p.new, "web:stable"); err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(e.Dir, "index.json")
	before, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	files := layoutFiles(t, e.Dir)

	fill()
	// Every blob is there already: only index.json needs room.
	if err := e.Load(ctx, p.old, "web:stable"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("load on a full disk = %v, want ENOSPC", err)
	}
	if err := e.Remove(ctx, p.oldID); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("remove on a full disk = %v, want ENOSPC", err)
	}
	after, err := os.ReadFile(index)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Errorf("index.json changed on a full disk:\n%s\n---\n%s", before, after)
	}
	if got := layoutFiles(t, e.Dir); !slicesEqual(got, files) {
		t.Errorf("layout files on a full disk:\n%v\nwant\n%v", got, files)
	}
	for _, n := range []string{"web:stable", retainedName("web:stable", p.oldID)} {
		info, err := e.Inspect(ctx, n)
		if err != nil {
			t.Fatalf("%s after the failures: %v", n, err)
		}
		want := p.newID
		if n != "web:stable" {
			want = p.oldID
		}
		if info.ID != want {
			t.Errorf("%s is %s, want %s", n, info.ID, want)
		}
	}

	free()
	if err := e.Remove(ctx, p.oldID); err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx, p.old, "web:stable"); err != nil {
		t.Fatal(err)
	}
	if info, err := e.Inspect(ctx, "web:stable"); err != nil || info.ID != p.oldID {
		t.Errorf("web:stable after the disk has room: %+v, %v", info, err)
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// ociLoopEnv names the layout an ociLoadLoop helper process works on.
const ociLoopEnv = "SKIFF_TEST_OCI_LOAD_LOOP"

// TestOCILoadLoopHelper is the process TestOCILoadKilled kills: it loads
// the old and the new image in turn under web:stable and removes the one
// replaced (so the next load writes its blobs again), forever.
func TestOCILoadLoopHelper(t *testing.T) {
	dir := os.Getenv(ociLoopEnv)
	if dir == "" {
		t.Skip("helper process of TestOCILoadKilled")
	}
	// The images come from a layout the test wrote (testPair would
	// compute its deltas in every helper).
	ctx := context.Background()
	var imgs []v1.Image
	var ids []string
	for _, n := range []string{"old", "new"} {
		img, err := layerfs.Open(ctx, "oci:"+os.Getenv(ociLoopEnv+"_SRC")+":"+n)
		if err != nil {
			t.Fatal(err)
		}
		id, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		imgs, ids = append(imgs, img), append(ids, id.String())
	}
	e := &OCIEngine{Dir: dir}
	for i := 0; ; i++ {
		if err := e.Load(ctx, imgs[i%2], "web:stable"); err != nil {
			t.Fatal(err)
		}
		if err := e.Remove(ctx, ids[(i+1)%2]); err != nil && !errors.Is(err, ErrNoImage) {
			t.Fatal(err)
		}
		fmt.Printf("round %d\n", i)
	}
}

// TestOCILoadKilled kills a process that loads and prunes images in an
// OCI layout with SIGKILL at random points: after each kill index.json is
// valid JSON, names web:stable as the old or the new image, and every blob
// of every entry is whole.
func TestOCILoadKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop: skipped with -short")
	}
	p := testPair(t)
	d := newDevice(t, p)
	src := t.TempDir()
	for n, img := range map[string]v1.Image{"old": p.old, "new": p.new} {
		if err := layerfs.Write(context.Background(), "oci:"+src+":"+n, img); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(7, 7))
	allowed := map[string]bool{p.oldID: true, p.newID: true}
	const kills = 25
	var rounds atomic.Int64
	for k := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOCILoadLoopHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), ociLoopEnv+"="+d.images, ociLoopEnv+"_SRC="+src)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a random part of a round, once a first round went
		// through (from the second kill on the layout holds both).
		sc := bufio.NewScanner(out)
		started := make(chan struct{})
		go func() {
			first := true
			for sc.Scan() {
				if first && strings.HasPrefix(sc.Text(), "round") {
					close(started)
					first = false
				}
				if strings.HasPrefix(sc.Text(), "round") {
					rounds.Add(1)
				}
			}
			if first {
				close(started)
			}
		}()
		select {
		case <-started:
		case <-time.After(60 * time.Second):
			t.Fatal("the helper did not start")
		}
		time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("kill %d: the helper ended by itself: %v", k, err)
		}
		verifyLayout(t, d.images, allowed)
	}
	t.Logf("%d kills over %d rounds of load and prune", kills, rounds.Load())
}

// verifyLayout checks a layout: index.json is valid, every entry resolves
// and each blob it reaches is whole, web:stable is one of allowed and
// every other entry is a retained name of an allowed image.
func verifyLayout(t *testing.T, dir string, allowed map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("index.json is not valid (%v):\n%q", err, b)
	}
	seen := map[string]bool{}
	for _, desc := range im.Manifests {
		n := desc.Annotations[refNameAnnotation]
		if seen[n] {
			t.Fatalf("index.json names %q twice", n)
		}
		seen[n] = true
		checkBlob(t, dir, desc.Digest)
		img, m := openWhole(t, dir, n)
		id := m.Config.Digest.String()
		img.Close()
		switch {
		case !allowed[id]:
			t.Fatalf("%s is %s, not an allowed image", n, id)
		case n != "web:stable" && n != retainedName("web:stable", id):
			t.Fatalf("index.json names %q for %s", n, id)
		}
	}
	if !seen["web:stable"] {
		t.Fatalf("index.json does not name web:stable:\n%s", b)
	}
}

// TestOCIRemoveRetainedShared: two refs in one layout replaced the same
// image; pruning one ref's retained entry keeps the other's, whole.
func TestOCIRemoveRetainedShared(t *testing.T) {
	p := testPair(t)
	ctx := context.Background()
	e := &OCIEngine{Dir: filepath.Join(t.TempDir(), "images")}
	for _, ref := range []string{"web:stable", "cam:stable"} {
		for _, img := range []v1.Image{p.old, p.new} {
			if err := e.Load(ctx, img, ref); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := e.RemoveRetained(ctx, "web:stable", p.oldID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Inspect(ctx, retainedName("web:stable", p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("web's retained entry after its removal: %v", err)
	}
	kept := retainedName("cam:stable", p.oldID)
	if info, err := e.Inspect(ctx, kept); err != nil || info.ID != p.oldID {
		t.Fatalf("%s: %+v, %v", kept, info, err)
	}
	img, err := layerfs.Open(ctx, "oci:"+e.Dir+":"+kept)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		checkBlob(t, e.Dir, l.Digest)
	}
	if err := e.RemoveRetained(ctx, "web:stable", p.oldID); !errors.Is(err, ErrNoImage) {
		t.Errorf("second removal: %v, want ErrNoImage", err)
	}
}
