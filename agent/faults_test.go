package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

// buildSkiff builds the skiff binary of this module into a test directory.
func buildSkiff(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), "skiff")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/skiff")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/skiff: %v\n%s", err, b)
	}
	return bin
}

// throttledServer serves POST /v1/check and GET /v1/deltas/{digest} like
// the rollout server, sending the delta in chunks at rate bytes/s. It
// counts what it sends and calls onChunk with the file offset reached after
// every chunk.
type throttledServer struct {
	p       *pair
	delta   []byte
	dg      digest.Digest
	rate    int64 // bytes/s; 0 = unthrottled
	chunk   int
	sent    atomic.Int64
	fetches atomic.Int32
	onChunk atomic.Pointer[func(off int64)]
}

func newThrottledServer(p *pair, rate int64) *throttledServer {
	return &throttledServer{p: p, delta: p.forward, dg: digest.FromBytes(p.forward), rate: rate, chunk: 2 << 10}
}

func (s *throttledServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer dev-token" {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(api.Error{Error: "unknown token"})
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == api.PathCheck:
		var req api.CheckRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		resp := api.CheckResponse{Target: &api.Target{Ref: "oci:/nowhere:web", ConfigDigest: s.p.newID, ManifestDigest: s.p.newManifest}}
		if req.ConfigDigest != s.p.newID {
			resp.Update = true
			if req.ConfigDigest == s.p.oldID {
				resp.Delta = &api.Delta{URL: api.PathDeltas + s.dg.String(), Digest: s.dg.String(), Size: int64(len(s.delta))}
			}
		}
		json.NewEncoder(w).Encode(resp)
	case r.Method == http.MethodGet && r.URL.Path == api.PathDeltas+s.dg.String():
		s.fetches.Add(1)
		var start int64
		if rg := r.Header.Get("Range"); rg != "" {
			if _, err := fmt.Sscanf(rg, "bytes=%d-", &start); err != nil || start < 0 || start >= int64(len(s.delta)) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(s.delta)))
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(s.delta)-1, len(s.delta)))
		}
		w.Header().Set("Content-Length", fmt.Sprint(int64(len(s.delta))-start))
		w.Header().Set("ETag", `"`+s.dg.Encoded()+`"`)
		if start > 0 {
			w.WriteHeader(http.StatusPartialContent)
		} else {
			w.WriteHeader(http.StatusOK)
		}
		fl, _ := w.(http.Flusher)
		for off := start; off < int64(len(s.delta)); {
			n := min(int64(s.chunk), int64(len(s.delta))-off)
			if s.rate > 0 {
				time.Sleep(time.Duration(n) * time.Second / time.Duration(s.rate))
			}
			if _, err := w.Write(s.delta[off : off+n]); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
			s.sent.Add(n)
			off += n
			if f := s.onChunk.Load(); f != nil {
				(*f)(off)
			}
		}
	default:
		http.NotFound(w, r)
	}
}

// agentYAML is the config of device d for a server source, as the skiff
// binary reads it.
func (d *device) agentYAML(t *testing.T, server string) string {
	t.Helper()
	y := "state_dir: " + d.stateDir + "\n" +
		"device: test-device\n" +
		"trusted_keys: ['" + d.trusted + "']\n" +
		"images:\n" +
		"  - name: web\n" +
		"    engine: oci:" + d.images + "\n" +
		"    ref: web:stable\n" +
		"    source:\n" + indent(serverSource(server), "      ")
	if _, err := ParseConfig([]byte(y)); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return writeFile(t, d.dir, "agent.yaml", []byte(y))
}

// proc is a running skiff subprocess whose log lines are timestamped.
type proc struct {
	cmd   *exec.Cmd
	start time.Time
	out   bytes.Buffer
	mu    sync.Mutex
	lines []string
	seen  map[string]chan struct{} // closed when a line containing the key appears
	done  chan struct{}
	err   error // exit status, after done
}

func startSkiff(t *testing.T, bin string, watch []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), seen: map[string]chan struct{}{}, done: make(chan struct{})}
	for _, w := range watch {
		p.seen[w] = make(chan struct{})
	}
	p.cmd.Stdout = &p.out
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			l := sc.Text()
			p.mu.Lock()
			p.lines = append(p.lines, l)
			for w, ch := range p.seen {
				if strings.Contains(l, w) {
					select {
					case <-ch:
					default:
						close(ch)
					}
				}
			}
			p.mu.Unlock()
		}
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// kill sends SIGKILL (if the process still runs) and waits for it; it
// reports whether the process was still running.
func (p *proc) kill() bool {
	select {
	case <-p.done:
		return false
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return true
}

func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		t.Fatalf("skiff %v did not finish in %s\n%s", p.cmd.Args[1:], timeout, p.log())
		return nil
	}
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n") + "\n" + p.out.String()
}

// imageOf is what an image must be: config digest and diff_ids.
type imageOf struct {
	id      string
	diffIDs []string
}

func describe(t *testing.T, img v1.Image) imageOf {
	t.Helper()
	info, err := imageInfo(img)
	if err != nil {
		t.Fatal(err)
	}
	return imageOf{id: info.ID, diffIDs: info.DiffIDs}
}

// checkLayout verifies the device's OCI layout after a kill: index.json is
// readable, names only web:stable and the retained old image, every entry
// is complete (each blob it reaches is there with its digest), web:stable
// is one of allowed (config digest and diff_ids) and the retained entry is
// the old image. It returns which of allowed web:stable is.
func checkLayout(t *testing.T, dir string, old imageOf, allowed ...imageOf) imageOf {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatalf("index.json: %v", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json is not valid JSON (%v):\n%s", err, b)
	}
	retained := retainedName("web:stable", old.id)
	names := map[string]int{}
	for _, d := range idx.Manifests {
		n := d.Annotations[refNameAnnotation]
		names[n]++
		if n != "web:stable" && n != retained {
			t.Fatalf("index.json names %q (%s): only web:stable and %s may be there", n, d.Digest, retained)
		}
		if names[n] > 1 {
			t.Fatalf("index.json names %q twice", n)
		}
		checkBlob(t, dir, d.Digest)
	}
	if names["web:stable"] != 1 {
		t.Fatalf("index.json does not name web:stable:\n%s", b)
	}
	var got imageOf
	for n := range names {
		img, _ := openWhole(t, dir, n)
		is := describe(t, img)
		img.Close()
		if n == retained {
			if !cmp.Equal(is, old, cmp.AllowUnexported(imageOf{})) {
				t.Fatalf("%s is %+v, want the old image %+v", n, is, old)
			}
			continue
		}
		got = is
	}
	for _, a := range allowed {
		if cmp.Equal(got, a, cmp.AllowUnexported(imageOf{})) {
			return got
		}
	}
	t.Fatalf("web:stable is %+v, want one of %+v", got, allowed)
	return got
}

// openWhole opens image n of the layout at dir and hashes its config and
// layer blobs.
func openWhole(t *testing.T, dir, n string) (*layerfs.Image, *v1.Manifest) {
	t.Helper()
	img, err := layerfs.Open(context.Background(), "oci:"+dir+":"+n)
	if err != nil {
		t.Fatalf("open %s: %v", n, err)
	}
	m, err := img.Manifest()
	if err != nil {
		img.Close()
		t.Fatal(err)
	}
	checkBlob(t, dir, m.Config.Digest)
	for _, l := range m.Layers {
		checkBlob(t, dir, l.Digest)
	}
	return img, m
}

// checkBlob hashes a blob of the layout.
func checkBlob(t *testing.T, dir string, d v1.Hash) {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "blobs", d.Algorithm, d.Hex))
	if err != nil {
		t.Fatalf("blob %s: %v", d, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		t.Fatalf("blob %s holds sha256:%s: a partial blob is referenced", d, got)
	}
}

// downloaded is how much of the delta the device holds: the partial file,
// or the whole file once Fetch renamed it.
func downloaded(workDir string, dg digest.Digest, size int64) int64 {
	dst := filepath.Join(workDir, "deltas", dg.Encoded()+".skiff")
	if fi, err := os.Stat(dst); err == nil {
		return fi.Size()
	}
	if fi, err := os.Stat(dst + ".part"); err == nil {
		return min(fi.Size(), size)
	}
	return 0
}

// TestKillDuringUpdate kills `skiff agent check --update` with SIGKILL at
// more than 50 points spread over a whole update (start-up and check,
// every part of the download, the apply, the load): after each kill the
// layout still holds the old image whole (or, once the load is done, the
// new one whole), nothing else; each run re-downloads at most 5% of the
// delta; a last run completes the update.
func TestKillDuringUpdate(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop: skipped with -short")
	}
	p := testPair(t)
	bin := buildSkiff(t)
	size := int64(len(p.forward))
	// The download alone takes about 3 s.
	srv := newThrottledServer(p, size/3)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	old, target := describe(t, p.old), describe(t, p.new)
	watch := []string{"fetching delta", "applying delta"}

	// An unkilled run on another device: how long its phases take.
	ref := newDevice(t, p)
	rp := startSkiff(t, bin, watch, "agent", "check", "--update", "--config", ref.agentYAML(t, hs.URL))
	var tFetch, tApply time.Duration
	select {
	case <-rp.seen["fetching delta"]:
		tFetch = time.Since(rp.start)
	case <-rp.done:
	}
	select {
	case <-rp.seen["applying delta"]:
		tApply = time.Since(rp.start)
	case <-rp.done:
	}
	if err := rp.wait(t, 60*time.Second); err != nil {
		t.Fatalf("unkilled run: %v\n%s", err, rp.log())
	}
	total := time.Since(rp.start)
	if tFetch == 0 || tApply == 0 {
		t.Fatalf("the unkilled run did not log both phases:\n%s", rp.log())
	}
	checkLayout(t, ref.images, old, target)
	applyDur := total - tApply
	t.Logf("unkilled run: %s (check %s, download %s, apply+load %s), delta %d bytes, served %d bytes",
		total.Round(time.Millisecond), tFetch.Round(time.Millisecond), (tApply - tFetch).Round(time.Millisecond),
		applyDur.Round(time.Millisecond), size, srv.sent.Load())
	if srv.sent.Load() != size {
		t.Fatalf("the unkilled run was sent %d bytes, the delta has %d", srv.sent.Load(), size)
	}
	srv.sent.Store(0)

	d := newDevice(t, p)
	cfg := d.agentYAML(t, hs.URL)
	workDir := filepath.Join(d.stateDir, "work")
	var (
		kills     int
		refetched int64 // bytes sent that did not end up in the file
		worstRun  int64
	)
	// run starts the agent, lets trigger decide when to kill it, then
	// checks the device. It reports whether the agent was killed.
	run := func(phase string, trigger func(pr *proc, killNow func())) bool {
		t.Helper()
		before, sentBefore := downloaded(workDir, srv.dg, size), srv.sent.Load()
		pr := startSkiff(t, bin, watch, "agent", "check", "--update", "--config", cfg)
		var once sync.Once
		killNow := func() { once.Do(func() { go pr.kill() }) }
		trigger(pr, killNow)
		killNow()
		<-pr.done
		srv.onChunk.Store(nil)
		killed := pr.err != nil && strings.Contains(pr.err.Error(), "killed")
		if !killed && pr.err != nil {
			t.Fatalf("%s: the agent failed: %v\n%s", phase, pr.err, pr.log())
		}
		after := downloaded(workDir, srv.dg, size)
		sent := srv.sent.Load() - sentBefore
		waste := max(0, sent-max(0, after-before))
		if !killed {
			// Completed: the file was used and removed.
			waste = max(0, sent-(size-before))
		}
		refetched += waste
		worstRun = max(worstRun, waste)
		if waste > size/20 {
			t.Errorf("%s: the run was sent %d bytes but the download grew by %d (%d → %d): %d bytes (> 5%% of %d) re-downloaded",
				phase, sent, after-before, before, after, waste, size)
		}
		allowed := []imageOf{old}
		if phase == "apply" || !killed {
			allowed = append(allowed, target)
		}
		checkLayout(t, d.images, old, allowed...)
		if killed {
			kills++
		}
		return killed
	}

	// Start-up and check: before the download begins.
	// Start-up and download kills always hit a running agent; the apply
	// ones are spread over 70% of the measured apply so that a faster
	// apply (a less loaded machine) still gets killed.
	const nPre, nFetch, nApply = 8, 36, 16
	for i := range nPre {
		delay := tFetch * time.Duration(i) / nPre
		run("check", func(_ *proc, _ func()) { time.Sleep(delay) })
	}
	if got := downloaded(workDir, srv.dg, size); got > size/2 {
		t.Fatalf("kills before the download left %d bytes downloaded", got)
	}
	// The download: kill i when the server has sent up to offset
	// size·(i+1)/(nFetch+1), so each run moves the download on by 1/37.
	for i := range nFetch {
		at := size * int64(i+1) / (nFetch + 1)
		run("fetch", func(pr *proc, killNow func()) {
			f := func(off int64) {
				if off >= at {
					killNow()
				}
			}
			srv.onChunk.Store(&f)
			select {
			case <-pr.done:
			case <-time.After(30 * time.Second):
			}
		})
	}
	if got := downloaded(workDir, srv.dg, size); got < size*nFetch/(nFetch+1)-size/10 {
		t.Errorf("after the download kills %d of %d bytes are downloaded", got, size)
	}
	// The apply and the load: kill j a fraction j/nApply of the apply
	// time after the agent said it applies.
	completed := false
	for j := range nApply {
		delay := applyDur * 7 / 10 * time.Duration(j) / nApply
		killed := run("apply", func(pr *proc, _ func()) {
			select {
			case <-pr.seen["applying delta"]:
				time.Sleep(delay)
			case <-pr.done:
			}
		})
		if !killed {
			t.Logf("apply kill %d (%s after the apply began) came after the agent finished", j, delay)
			completed = true
			break
		}
	}
	// Besides what a next run fetches again, a kill costs what the server
	// had in flight: written into the connection before the kernel reset
	// it. Allow 32 KiB per kill for that.
	if sent := srv.sent.Load(); sent > size+int64(kills)*32<<10 {
		t.Errorf("the server sent %d bytes for a %d-byte delta over %d kills", sent, size, kills)
	}

	// The last run completes the update.
	fin := startSkiff(t, bin, nil, "agent", "check", "--update", "--config", cfg)
	if err := fin.wait(t, 60*time.Second); err != nil {
		t.Fatalf("the run after the kills: %v\n%s", err, fin.log())
	}
	if !completed && !strings.Contains(fin.out.String(), "updated") {
		t.Errorf("the last run did not update:\n%s", fin.log())
	}
	// The target, recorded, and nothing of the killed runs left: no partial
	// download, no scratch directory.
	checkUpdated(t, d, p, workDir)
	if kills < 50 {
		t.Errorf("only %d kill points hit a running agent, want at least 50", kills)
	}
	sent := srv.sent.Load()
	t.Logf("%d kills survived (%d before the download, %d during it, %d during apply/load)", kills, nPre, nFetch, kills-nPre-nFetch)
	t.Logf("delta %d bytes; the server sent %d in all (+%d, %.2f%%): %d re-downloaded by the runs after kills (%.2f%%, at most %d = %.2f%% in one run), %d written into killed connections",
		size, sent, sent-size, 100*float64(sent-size)/float64(size), refetched, 100*float64(refetched)/float64(size),
		worstRun, 100*float64(worstRun)/float64(size), max(0, sent-size-refetched))
}

// TestApplyTwice: `skiff agent apply` of the same delta twice updates once;
// the second finds the device on the delta's target, says so, succeeds and
// leaves the image as it is.
func TestApplyTwice(t *testing.T) {
	p := testPair(t)
	bin := buildSkiff(t)
	d := newDevice(t, p)
	cfg := d.agentYAML(t, "http://127.0.0.1:1")
	file := writeFile(t, d.dir, "web.skiff", p.forward)
	old, target := describe(t, p.old), describe(t, p.new)

	first := startSkiff(t, bin, nil, "agent", "apply", file, "--config", cfg, "--image", "web")
	if err := first.wait(t, 60*time.Second); err != nil {
		t.Fatalf("first apply: %v\n%s", err, first.log())
	}
	if !strings.Contains(first.out.String(), "updated "+p.oldID+" -> "+p.newID) {
		t.Errorf("first apply said:\n%s", first.log())
	}
	checkLayout(t, d.images, old, target)

	// The second apply finds the device on the delta's target (as a re-run
	// after a kill past the load would): nothing to do, and no error.
	second := startSkiff(t, bin, nil, "agent", "apply", file, "--config", cfg, "--image", "web")
	if err := second.wait(t, 60*time.Second); err != nil {
		t.Fatalf("second apply of the same delta: %v\n%s", err, second.log())
	}
	if msg := second.log(); !strings.Contains(msg, "already runs the delta's target "+p.newID) {
		t.Errorf("second apply does not say the device already runs the target:\n%s", msg)
	}
	checkLayout(t, d.images, old, target)
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the delta file is gone: %v", err)
	}
}

// TestRacingAgents: two agents updating the same image at once end in one
// correct image; the lock makes the second wait and then find the update
// done, so the delta is downloaded once.
func TestRacingAgents(t *testing.T) {
	p := testPair(t)
	bin := buildSkiff(t)
	size := int64(len(p.forward))
	srv := newThrottledServer(p, size*2) // about half a second
	hs := httptest.NewServer(srv)
	defer hs.Close()
	d := newDevice(t, p)
	cfg := d.agentYAML(t, hs.URL)
	old, target := describe(t, p.old), describe(t, p.new)

	var procs []*proc
	for range 2 {
		procs = append(procs, startSkiff(t, bin, nil, "agent", "check", "--update", "--config", cfg))
	}
	var outs []string
	updated := 0
	for i, pr := range procs {
		if err := pr.wait(t, 60*time.Second); err != nil {
			t.Errorf("agent %d: %v\n%s", i, err, pr.log())
		}
		o := pr.out.String()
		outs = append(outs, o)
		switch {
		case strings.Contains(o, "web: updated "+p.oldID+" -> "+p.newID):
			updated++
		case strings.Contains(o, "web: up to date ("+p.newID+")"):
		default:
			t.Errorf("agent %d said:\n%s", i, pr.log())
		}
	}
	if updated != 1 {
		t.Errorf("%d agents updated, want 1:\n%s", updated, strings.Join(outs, "---\n"))
	}
	checkLayout(t, d.images, old, target)
	if got := srv.sent.Load(); got != size {
		t.Errorf("the server sent %d bytes for a %d-byte delta", got, size)
	}
	st, err := ReadStatus(d.stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Images["web"]; s == nil || s.Current.ConfigDigest != p.newID || s.LastError != "" || !cmp.Equal(s.Previous, []string{p.oldID}) {
		t.Errorf("state: %+v", s)
	}
}
