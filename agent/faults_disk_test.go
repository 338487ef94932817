package agent

import (
	"context"
	"errors"
	"fmt"
	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/delta/format"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/layerfs"
)

// Full-disk faults: the agent's work_dir (downloads, apply scratch) or the
// OCI engine's layout directory is a small tmpfs, so a write fails midway
// with ENOSPC for real; the tmpfs is then grown (remount) and the next run
// must complete the update. The tests mount, so they need root (CI runs as
// root) and skip otherwise.
//
// What these tests leave out: state_dir stays on the ordinary disk (a full
// state_dir leaves the agent unable to record anything; state.json is
// written atomically, so the old state stays).

// tmpfsPage is the allocation unit of a tmpfs.
const tmpfsPage = 4096

// mountTmpfs mounts a tmpfs of size bytes (rounded up to pages) on a new
// directory, unmounted when the test ends. It skips the test when it
// cannot mount.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("full-disk test: mounting a small tmpfs needs root (CI runs the tests as root)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, tmpfsSize(size)); err != nil {
		t.Skipf("full-disk test: cannot mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("umount %s: %v", dir, err)
		}
	})
	return dir
}

func tmpfsSize(size int64) string {
	pages := (size + tmpfsPage - 1) / tmpfsPage
	return fmt.Sprintf("size=%dk", pages*tmpfsPage/1024)
}

// resizeTmpfs changes the size of the tmpfs at dir (mount -o remount,size=).
func resizeTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, tmpfsSize(size)); err != nil {
		t.Fatalf("remount %s with %s: %v (%d bytes in use)", dir, tmpfsSize(size), err, tmpfsUsed(t, dir))
	}
}

// tmpfsUsed is how many bytes the tmpfs at dir holds (whole pages).
func tmpfsUsed(t *testing.T, dir string) int64 {
	t.Helper()
	var s syscall.Statfs_t
	if err := syscall.Statfs(dir, &s); err != nil {
		t.Fatal(err)
	}
	return int64(s.Blocks-s.Bfree) * s.Bsize
}

// pages is n bytes rounded up to tmpfs pages.
func pages(n int64) int64 { return (n + tmpfsPage - 1) / tmpfsPage * tmpfsPage }

// checkNoSpace checks that err is a full disk under dir and says so: it
// wraps ENOSPC and its text names "no space left on device" and a path
// under dir.
func checkNoSpace(t *testing.T, what string, err error, dir string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the update succeeded on a full disk", what)
	}
	msg := err.Error()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("%s: the error does not wrap ENOSPC: %v", what, err)
	}
	if !strings.Contains(msg, "no space left on device") || !strings.Contains(msg, dir+"/") {
		t.Errorf("%s: the error does not say which disk is full (want %q and a path under %s): %v", what, "no space left on device", dir, err)
	}
}

// checkUntouched checks that the device still runs the old image, whole,
// and that state.json recorded the failure.
func checkUntouched(t *testing.T, what string, d *device, p *pair, wantErr string) {
	t.Helper()
	old := describe(t, p.old)
	checkLayout(t, d.images, old, old)
	if m, _ := filepath.Glob(filepath.Join(d.images, "blobs", "*", ".tmp-*")); len(m) > 0 {
		t.Errorf("%s: half-written blobs left in the layout: %v", what, m)
	}
	if info, err := (&OCIEngine{Dir: d.images}).Inspect(context.Background(), "web:stable"); err != nil || info.ID != p.oldID {
		t.Errorf("%s: the engine holds %+v (%v) under web:stable, want the old image %s", what, info, err, p.oldID)
	}
	st, err := ReadStatus(d.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Images["web"]
	if s == nil || s.Current.ConfigDigest != p.oldID || !strings.Contains(s.LastError, wantErr) {
		t.Errorf("%s: state.json has %+v, want current %s and last_error naming %q", what, s, p.oldID, wantErr)
	}
}

// checkUpdated checks the device after the update completed.
func checkUpdated(t *testing.T, d *device, p *pair, workDir string) {
	t.Helper()
	checkLayout(t, d.images, describe(t, p.old), describe(t, p.new))
	st, err := ReadStatus(d.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Images["web"]; s == nil || s.Current.ConfigDigest != p.newID || s.LastError != "" {
		t.Errorf("state after the update: %+v", s)
	}
	var left []string
	for _, g := range []string{filepath.Join(workDir, "deltas", "*"), filepath.Join(workDir, "apply-*")} {
		m, _ := filepath.Glob(g)
		left = append(left, m...)
	}
	if len(left) > 0 {
		t.Errorf("left behind in work_dir after the update: %v", left)
	}
}

// wasted is what a run was sent beyond what it added to the download:
// bytes the device had to receive again (or received and lost).
type wasted struct {
	size        int64 // the delta's
	total, most int64
}

func (w *wasted) add(t *testing.T, what string, sent, grew int64) {
	t.Helper()
	n := max(0, sent-max(0, grew))
	w.total += n
	w.most = max(w.most, n)
	if n > w.size/20 {
		t.Errorf("%s: the run was sent %d bytes and the download grew by %d: %d bytes (> 5%% of %d) fetched again", what, sent, grew, n, w.size)
	}
}

// TestFullDiskDownload: work_dir fills up during the download, at four
// points; each run fails naming the full disk, the old image stays, the
// next run (with a bit more space) continues the download where it
// stopped, and once there is room the update completes.
func TestFullDiskDownload(t *testing.T) {
	p := testPair(t)
	size := int64(len(p.forward))
	srv := newThrottledServer(p, 2*size) // about half a second a download
	hs := httptest.NewServer(srv)
	defer hs.Close()
	d := newDevice(t, p)
	fracs := []float64{0.2, 0.45, 0.7, 0.9}
	work := mountTmpfs(t, int64(fracs[0]*float64(size)))
	c := d.config(t, serverSource(hs.URL), "")
	c.WorkDir = work
	a := newAgent(t, c)
	ctx := context.Background()
	w := &wasted{size: size}

	for i, f := range fracs {
		what := fmt.Sprintf("full disk at %.0f%% of the delta", 100*f)
		resizeTmpfs(t, work, int64(f*float64(size)))
		before, sent0 := downloaded(work, srv.dg, size), srv.sent.Load()
		_, err := a.Update(ctx, "web")
		checkNoSpace(t, what, err, work)
		checkUntouched(t, what, d, p, "no space left on device")
		after := downloaded(work, srv.dg, size)
		w.add(t, what, srv.sent.Load()-sent0, after-before)
		// The download filled the disk: it holds all but the last pages.
		if room := pages(int64(f * float64(size))); after < room-64<<10 || after > room {
			t.Errorf("%s: %d bytes downloaded on a %d-byte tmpfs", what, after, room)
		}
		if i == 0 && !strings.Contains(err.Error(), ".skiff.part") {
			t.Errorf("%s: the error does not name the partial download: %v", what, err)
		}
	}
	// Room for the download and the apply's scratch space.
	resizeTmpfs(t, work, 256<<20)
	before, sent0 := downloaded(work, srv.dg, size), srv.sent.Load()
	res, err := a.Update(ctx, "web")
	if err != nil {
		t.Fatalf("the update after the disk was grown: %v", err)
	}
	if !res.Updated {
		t.Fatalf("the update after the disk was grown did nothing: %+v", res)
	}
	w.add(t, "the run after the disk was grown", srv.sent.Load()-sent0, size-before)
	checkUpdated(t, d, p, work)
	if got := srv.sent.Load(); got > size+size/20 {
		t.Errorf("the server sent %d bytes for a %d-byte delta", got, size)
	}
	t.Logf("full disk during the download: %d failure points, delta %d bytes, the server sent %d (+%d); at most %d bytes (%.2f%%) fetched again in one run, %d (%.2f%%) in all",
		len(fracs), size, srv.sent.Load(), srv.sent.Load()-size, w.most, 100*float64(w.most)/float64(size), w.total, 100*float64(w.total)/float64(size))
}

// peakUse runs fn while sampling how much the tmpfs at dir holds, and
// returns the most it held.
func peakUse(t *testing.T, dir string, fn func()) int64 {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var peak int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var s syscall.Statfs_t
			if syscall.Statfs(dir, &s) == nil {
				peak = max(peak, int64(s.Blocks-s.Bfree)*s.Bsize)
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	fn()
	close(stop)
	wg.Wait()
	return peak
}

// TestFullDiskApply: the delta is downloaded but work_dir fills up while
// the apply writes its scratch files (content store, rebuilt layers), at
// three points; the delta is kept, so the runs after fetch nothing again.
// The delta is a version 3 one, which declares no scratch space: a version
// 5 delta is refused before the apply writes anything (at the end).
func TestFullDiskApply(t *testing.T) {
	p := testPair(t)
	size := int64(len(p.forwardV3))
	srv := newThrottledServer(p, 0)
	srv.delta, srv.dg = p.forwardV3, digest.FromBytes(p.forwardV3)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx := context.Background()

	// How much scratch space an apply takes: an update on another device.
	ref := newDevice(t, p)
	refWork := mountTmpfs(t, 1<<30)
	rc := ref.config(t, serverSource(hs.URL), "")
	rc.WorkDir = refWork
	ra := newAgent(t, rc)
	var t0 time.Time
	peak := peakUse(t, refWork, func() {
		t0 = time.Now()
		if _, err := ra.Update(ctx, "web"); err != nil {
			t.Fatalf("update with room: %v", err)
		}
	})
	took := time.Since(t0)
	scratch := peak - pages(size)
	if scratch < 1<<20 {
		t.Fatalf("the apply used %d bytes of scratch space: too little to fill", scratch)
	}
	srv.sent.Store(0)

	d := newDevice(t, p)
	fracs := []float64{0.05, 0.35, 0.7}
	work := mountTmpfs(t, 1<<30)
	c := d.config(t, serverSource(hs.URL), "")
	c.WorkDir = work
	a := newAgent(t, c)
	w := &wasted{size: size}
	dst := filepath.Join(work, "deltas", srv.dg.Encoded()+".skiff")
	for _, f := range fracs {
		what := fmt.Sprintf("full disk at %.0f%% of the apply's scratch space", 100*f)
		room := pages(size) + int64(f*float64(scratch))
		resizeTmpfs(t, work, room)
		before, sent0 := downloaded(work, srv.dg, size), srv.sent.Load()
		_, err := a.Update(ctx, "web")
		checkNoSpace(t, what, err, work)
		if err != nil && !strings.Contains(err.Error(), filepath.Join(work, "apply-")) {
			t.Errorf("%s: the error does not name the apply's scratch directory: %v", what, err)
		}
		checkUntouched(t, what, d, p, "no space left on device")
		if !complete(dst, srv.dg, size) {
			t.Fatalf("%s: the downloaded delta is gone: the next run must fetch it again", what)
		}
		if m, _ := filepath.Glob(filepath.Join(work, "apply-*")); len(m) > 0 {
			t.Errorf("%s: the failed apply left its scratch directory: %v", what, m)
		}
		w.add(t, what, srv.sent.Load()-sent0, downloaded(work, srv.dg, size)-before)
	}
	resizeTmpfs(t, work, 1<<30)
	sent0 := srv.sent.Load()
	if _, err := a.Update(ctx, "web"); err != nil {
		t.Fatalf("the update after the disk was grown: %v", err)
	}
	w.add(t, "the run after the disk was grown", srv.sent.Load()-sent0, 0)
	checkUpdated(t, d, p, work)
	if got := srv.sent.Load(); got != size {
		t.Errorf("the server sent %d bytes for a %d-byte delta", got, size)
	}
	t.Logf("full disk during the apply: %d failure points (scratch space peaks at %d bytes, update %s), delta %d bytes fetched once (%d sent), %d bytes fetched again",
		len(fracs), scratch, took.Round(time.Millisecond), size, srv.sent.Load(), w.total)

	// A version 5 delta declares its scratch space: on a disk without it
	// the apply is refused before it writes anything, naming the need.
	d5 := newDevice(t, p)
	srv5 := newThrottledServer(p, 0)
	hs5 := httptest.NewServer(srv5)
	defer hs5.Close()
	work5 := mountTmpfs(t, 1<<30)
	c5 := d5.config(t, serverSource(hs5.URL), "")
	c5.WorkDir = work5
	resizeTmpfs(t, work5, pages(int64(len(p.forward)))+scratch/2)
	_, err := newAgent(t, c5).Update(ctx, "web")
	if !errors.Is(err, format.ErrLimit) || !strings.Contains(err.Error(), "scratch space in "+filepath.Join(work5, "apply-")) || !strings.Contains(err.Error(), "is free") {
		t.Fatalf("a version 5 delta on a disk without its scratch space: %v, want the need refused up front", err)
	}
	checkUntouched(t, "version 5, no room for the scratch space", d5, p, "scratch space")
	if m, _ := filepath.Glob(filepath.Join(work5, "apply-*")); len(m) > 0 {
		t.Errorf("the refused apply left its scratch directory: %v", m)
	}
}

// TestFullDiskLoad: the OCI layout fills up while the target is loaded
// into it: inside a layer blob, twice, then with every layer written but
// no room for the config blob, then with no room for the manifest. The
// old image stays whole under the ref, nothing half-written is referenced;
// the delta is kept, and after the layout is grown the update completes.
// A last point has room for every blob but not for the new index.json.
func TestFullDiskLoad(t *testing.T) {
	p := testPair(t)
	size := int64(len(p.forward))
	srv := newThrottledServer(p, 0)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	ctx := context.Background()

	d := newDevice(t, p)
	d.images = mountTmpfs(t, 1<<30)
	if err := layerfs.Write(ctx, "oci:"+d.images+":web:stable", p.old); err != nil {
		t.Fatal(err)
	}
	base := tmpfsUsed(t, d.images)
	// The blobs the target adds to the layout, as they are written:
	// layers (all at once), then the config, then the manifest.
	oldBlobs := map[v1.Hash]bool{}
	om, err := p.old.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range om.Layers {
		oldBlobs[l.Digest] = true
	}
	nm, err := p.new.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var layers int64
	for _, l := range nm.Layers {
		if !oldBlobs[l.Digest] {
			layers += pages(l.Size)
		}
	}
	rawManifest, err := p.new.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg := pages(nm.Config.Size)
	points := []struct {
		name string
		room int64 // bytes free in the layout
	}{
		{"in the layers (30%)", layers * 3 / 10},
		{"in the layers (75%)", layers * 3 / 4},
		{"at the config blob", layers},
		{"at the manifest blob", layers + cfg},
		// Every blob fits; the new index.json, written beside the old
		// one before the rename, does not.
		{"at index.json", layers + cfg + pages(int64(len(rawManifest)))},
	}
	c := d.config(t, serverSource(hs.URL), "")
	a := newAgent(t, c)
	w := &wasted{size: size}
	for _, pt := range points {
		what := "full layout " + pt.name
		resizeTmpfs(t, d.images, base+pt.room)
		before, sent0 := downloaded(c.WorkDir, srv.dg, size), srv.sent.Load()
		_, err := a.Update(ctx, "web")
		checkNoSpace(t, what, err, d.images)
		t.Logf("%s: %v", what, err)
		checkUntouched(t, what, d, p, "no space left on device")
		if !complete(filepath.Join(c.WorkDir, "deltas", srv.dg.Encoded()+".skiff"), srv.dg, size) {
			t.Fatalf("%s: the downloaded delta is gone: the next run must fetch it again", what)
		}
		w.add(t, what, srv.sent.Load()-sent0, downloaded(c.WorkDir, srv.dg, size)-before)
	}
	resizeTmpfs(t, d.images, base+layers+cfg+pages(int64(len(rawManifest)))+1<<20)
	sent0 := srv.sent.Load()
	if _, err := a.Update(ctx, "web"); err != nil {
		t.Fatalf("the update after the layout was grown: %v", err)
	}
	w.add(t, "the run after the layout was grown", srv.sent.Load()-sent0, 0)
	checkUpdated(t, d, p, c.WorkDir)
	if got := srv.sent.Load(); got != size {
		t.Errorf("the server sent %d bytes for a %d-byte delta", got, size)
	}
	t.Logf("full layout during the load: %d failure points (old image %d bytes on the tmpfs, the target adds %d of layers, %d of config), delta %d bytes fetched once (%d sent), %d bytes fetched again",
		len(points), base, layers, cfg, size, srv.sent.Load(), w.total)
}
