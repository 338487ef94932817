package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"
)

// allocEnv makes the test binary, started as a child, touch that many MiB
// and exit ("fail": print to stderr and exit 3).
const allocEnv = "SKIFF_BENCH_TEST_ALLOC"

func TestMain(m *testing.M) {
	MaybeSpawn()
	if v := os.Getenv(allocEnv); v != "" {
		os.Exit(allocChild(v))
	}
	os.Exit(m.Run())
}

func allocChild(v string) int {
	if v == "fail" {
		fmt.Fprintln(os.Stderr, "boom: asked to fail")
		return 3
	}
	mib, err := strconv.Atoi(v)
	if err != nil {
		return 2
	}
	b := make([]byte, mib<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = byte(i)
	}
	if b[len(b)/2] == 42 { // keep b alive
		fmt.Println()
	}
	return 0
}

// touch allocates and touches n bytes in the test process itself, so a
// probe that counted the harness's memory would show it.
func touch(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}

func TestRunToolMeasuresPeakRSS(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ballast := touch(256 << 20)
	probes := []struct {
		name  string
		tools *Tools
		// exact: the probe does not count the harness's 256 MiB.
		exact bool
	}{
		{"wrapper", &Tools{Spawner: self}, spawnSupported},
		{"gnu-time", &Tools{Timer: FindTimer()}, true},
		{"direct", &Tools{}, false},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			if p.name == "gnu-time" && p.tools.Timer == "" {
				t.Skip("GNU time is not installed")
			}
			t.Setenv(allocEnv, "64")
			u, err := p.tools.Run(context.Background(), nil, self)
			if err != nil {
				t.Fatal(err)
			}
			if u.MaxRSS < 64<<20 {
				t.Errorf("MaxRSS = %d MiB, want at least the 64 MiB the child touched", u.MaxRSS>>20)
			}
			if p.exact && u.MaxRSS > 200<<20 {
				t.Errorf("MaxRSS = %d MiB: counts the harness's 256 MiB", u.MaxRSS>>20)
			}
			if u.Wall <= 0 {
				t.Errorf("Wall = %v", u.Wall)
			}
		})
	}
	t.Run("failure", func(t *testing.T) {
		t.Setenv(allocEnv, "fail")
		for _, tools := range []*Tools{{Spawner: self}, {}} {
			_, err := tools.Run(context.Background(), nil, self, "-flag")
			if err == nil || !strings.Contains(err.Error(), "boom: asked to fail") || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "-flag") {
				t.Errorf("err = %v, want the command, its exit status and stderr", err)
			}
		}
	})
	t.Run("not a wrapper", func(t *testing.T) {
		if !spawnSupported {
			t.Skip("no wrapper on this OS")
		}
		tr, err := (&Tools{}).Find("true")
		if err != nil {
			t.Skip(err)
		}
		_, err = (&Tools{Spawner: tr}).Run(context.Background(), nil, tr)
		if err == nil || !strings.Contains(err.Error(), "MaybeSpawn") {
			t.Errorf("err = %v, want a complaint about the wrapper", err)
		}
	})
	_ = ballast[len(ballast)-1]
}

func TestToolsFind(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "only-in-dir-tool")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "not-executable-tool"), nil, 0o644)
	tools := &Tools{Dirs: []string{dir}, Override: map[string]string{"gone": ""}}
	if got, err := tools.Find("only-in-dir-tool"); err != nil || got != exe {
		t.Errorf("Find in Dirs = %q, %v; want %q", got, err, exe)
	}
	for _, n := range []string{"not-executable-tool", "gone", "no-such-tool-anywhere"} {
		if _, err := tools.Find(n); !errors.Is(err, ErrNotInstalled) || !strings.Contains(err.Error(), n) {
			t.Errorf("Find(%q) err = %v, want ErrNotInstalled naming it", n, err)
		}
	}
}

func TestRegistry(t *testing.T) {
	r := DefaultMethods(Config{})
	want := []string{"skiff-4", "skiff-5", "pull-gzip", "pull-zstd19", "zstd-patch-from", "bsdiff", "xdelta3", "rdiff-zstd", "file-dedupe", "tar-diff"}
	if d := cmp.Diff(want, r.Names()); d != "" {
		t.Errorf("Names (-want +got):\n%s", d)
	}
	ms, err := r.Select([]string{"bsdiff", "skiff-4"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range ms {
		got = append(got, m.Name())
	}
	if d := cmp.Diff([]string{"skiff-4", "bsdiff"}, got); d != "" {
		t.Errorf("Select keeps registry order (-want +got):\n%s", d)
	}
	if all, _ := r.Select(nil); len(all) != len(want) {
		t.Errorf("Select(nil) = %d methods, want all %d", len(all), len(want))
	}
	if _, err := r.Select([]string{"bsdif"}); !errors.Is(err, ErrUnknownMethod) || !strings.Contains(err.Error(), "bsdiff") {
		t.Errorf("unknown method: err = %v, want ErrUnknownMethod listing the known ones", err)
	}
	for _, ms := range [][]Method{
		{fakeMethod{"a"}, fakeMethod{"a"}},
		{fakeMethod{""}},
		{fakeMethod{"a b"}},
	} {
		if _, err := NewRegistry(ms...); err == nil {
			t.Errorf("NewRegistry(%v) accepted", ms)
		}
	}
}

type fakeMethod struct{ name string }

func (f fakeMethod) Name() string { return f.name }
func (f fakeMethod) Run(context.Context, *Prepared, string) Result {
	return Result{WireBytes: 1}
}

// ---------------------------------------------------------------- synthetic pair

type file struct {
	name string
	data []byte
}

func layerTar(t *testing.T, files []file) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// text is seeded, compressible, text-like data.
func text(r *rand.Rand, n int) []byte {
	words := []string{"layer", "delta", "image", "device", "update", "skiff", "patch", "base", "target", "file"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteByte(" \n"[r.IntN(2)])
	}
	return b.Bytes()[:n]
}

// synthetic is a small pair: the base has layers L0, L1; the target has
// L0, L1' (one file edited, one unchanged, one identical to a file of L0,
// one new) and a new L2 (no counterpart in the base).
type synthetic struct {
	pair Pair
	// newContents are the file contents of the target's changed layers
	// that are nowhere in the base, once each.
	newContents [][]byte
	target      v1.Image
}

func makeSynthetic(t *testing.T, dir string) synthetic {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	lib, cfg, shared := text(r, 60<<10), text(r, 3<<10), text(r, 8<<10)
	edited := slices.Clone(lib)
	copy(edited[20000:], []byte("a changed line in the new release"))
	added, readme := text(r, 5<<10), text(r, 2<<10)
	l0 := layerTar(t, []file{{"etc/base.conf", shared}, {"usr/lib/libc.so", text(r, 30<<10)}})
	l1 := layerTar(t, []file{{"app/lib.so", lib}, {"app/app.conf", cfg}})
	l1n := layerTar(t, []file{{"app/lib.so", edited}, {"app/app.conf", cfg}, {"app/copied.conf", shared}, {"app/added.txt", added}})
	l2 := layerTar(t, []file{{"app/README", readme}, {"app/added-again.txt", added}})
	old := image(t, l0, l1)
	nw := image(t, l0, l1n, l2)
	oldPath, newPath := filepath.Join(dir, "old.tar"), filepath.Join(dir, "new.tar")
	writeArchive(t, oldPath, "synthetic:1", old)
	writeArchive(t, newPath, "synthetic:2", nw)
	return synthetic{
		pair:        Pair{Name: "synthetic", From: "docker-archive:" + oldPath, To: "docker-archive:" + newPath},
		newContents: [][]byte{edited, added, readme},
		target:      nw,
	}
}

func image(t *testing.T, tars ...[]byte) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, b := range tars {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func writeArchive(t *testing.T, p, tag string, img v1.Image) {
	t.Helper()
	tg, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(p, tg, img); err != nil {
		t.Fatal(err)
	}
}

func TestRunSynthetic(t *testing.T) {
	dir := t.TempDir()
	s := makeSynthetic(t, dir)
	self, _ := os.Executable()
	tools := &Tools{Spawner: self, Timer: FindTimer(), Override: map[string]string{"skiff": ""}}
	methods, _ := DefaultMethods(Config{Tools: tools}).Select(nil)
	var progress bytes.Buffer
	rep, err := Run(context.Background(), []Pair{s.pair}, methods, &progress, WithWorkDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Pairs) != 1 {
		t.Fatalf("%d pairs reported", len(rep.Pairs))
	}
	pr := rep.Pairs[0]
	if pr.Layers != 3 || pr.Changed != 2 {
		t.Errorf("layers %d, changed %d; want 3, 2", pr.Layers, pr.Changed)
	}
	if len(pr.Results) != len(methods) {
		t.Fatalf("%d results for %d methods: a method was dropped", len(pr.Results), len(methods))
	}
	for _, r := range pr.Results {
		t.Run(r.Method, func(t *testing.T) {
			switch {
			case r.Method == "skiff-4" || r.Method == "skiff-5":
				if d := cmp.Diff([]string{"skiff"}, r.NotInstalled); d != "" {
					t.Errorf("skiff overridden to missing: NotInstalled (-want +got):\n%s", d)
				}
				return
			case len(r.NotInstalled) > 0:
				t.Logf("not installed: %v", r.NotInstalled)
				return
			}
			if r.Error != "" {
				t.Fatalf("failed: %s", r.Error)
			}
			if r.WireBytes <= 0 || r.WireBytes >= pr.ChangedBytes {
				t.Errorf("WireBytes = %d, want between 0 and the %d changed bytes", r.WireBytes, pr.ChangedBytes)
			}
			want := Exact
			if r.Method == "file-dedupe" {
				want = NotChecked
			}
			if r.Verified != want {
				t.Errorf("Verified = %v, want %v", r.Verified, want)
			}
			if r.Method != "pull-gzip" && r.Method != "file-dedupe" && (r.DiffRSS <= 0 || r.ApplyRSS <= 0 || r.DiffTime <= 0 || r.ApplyTime <= 0) {
				t.Errorf("child measurements missing: %+v", r)
			}
		})
	}
	// pull-gzip counts the target's gzip blobs of the changed layers.
	ls, _ := s.target.Layers()
	var blobs int64
	for _, l := range ls[1:] {
		n, _ := l.Size()
		blobs += n
	}
	if got := pr.Result("pull-gzip").WireBytes; got != blobs {
		t.Errorf("pull-gzip = %d bytes, want the changed blobs' %d", got, blobs)
	}
	// file-dedupe counts each new content once, compressed alone.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	var dedupe int64
	for _, c := range s.newContents {
		dedupe += int64(len(enc.EncodeAll(c, nil)))
	}
	if got := pr.Result("file-dedupe").WireBytes; got != dedupe {
		t.Errorf("file-dedupe = %d bytes, want %d (3 new contents)", got, dedupe)
	}
	for _, want := range []string{"synthetic: 2 of 3 layers changed", "synthetic: bsdiff ...", "synthetic: file-dedupe: "} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	// Temporary files are gone.
	if left, _ := filepath.Glob(filepath.Join(dir, "skiff-bench-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	if !strings.Contains(md.String(), "not installed: skiff") {
		t.Errorf("table does not report skiff as not installed:\n%s", md.String())
	}
}

func TestNotInstalled(t *testing.T) {
	dir := t.TempDir()
	s := makeSynthetic(t, dir)
	none := map[string]string{}
	for _, n := range []string{"skiff", "zstd", "bsdiff", "bspatch", "xdelta3", "rdiff", "tar-diff", "tar-patch"} {
		none[n] = ""
	}
	methods, _ := DefaultMethods(Config{Tools: &Tools{Override: none}}).Select(nil)
	rep, err := Run(context.Background(), []Pair{s.pair}, methods, nil, WithWorkDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, r := range rep.Pairs[0].Results {
		got[r.Method] = r.NotInstalled
	}
	want := map[string][]string{
		"skiff-4": {"skiff"}, "skiff-5": {"skiff"}, "pull-gzip": nil, "pull-zstd19": {"zstd"},
		"zstd-patch-from": {"zstd"}, "bsdiff": {"bsdiff", "bspatch"}, "xdelta3": {"xdelta3"},
		"rdiff-zstd": {"rdiff", "zstd"}, "file-dedupe": nil, "tar-diff": {"tar-diff", "tar-patch"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("NotInstalled per method (-want +got):\n%s", d)
	}
	var md bytes.Buffer
	rep.WriteMarkdown(&md)
	for _, w := range []string{"| bsdiff ", "not installed: bsdiff, bspatch", "not installed: tar-diff, tar-patch"} {
		if !strings.Contains(md.String(), w) {
			t.Errorf("table lacks %q:\n%s", w, md.String())
		}
	}
}

func TestRunBadPairs(t *testing.T) {
	dir := t.TempDir()
	s := makeSynthetic(t, dir)
	missing := filepath.Join(dir, "nosuch.tar")
	cases := []struct {
		name  string
		pairs []Pair
		want  string
	}{
		{"missing target", []Pair{{Name: "p", From: s.pair.From, To: "docker-archive:" + missing}}, missing},
		{"missing base", []Pair{{Name: "p", From: "docker-archive:" + missing, To: s.pair.To}}, missing},
		{"bad reference", []Pair{{Name: "p", From: "nosuch:x", To: s.pair.To}}, "nosuch"},
		{"duplicate name", []Pair{s.pair, s.pair}, "used twice"},
		{"no pairs", nil, "no pairs"},
		{"name with space", []Pair{{Name: "a b", From: s.pair.From, To: s.pair.To}}, "a b"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(context.Background(), c.pairs, []Method{fakeMethod{"f"}}, nil, WithWorkDir(dir))
			if !errors.Is(err, ErrBadPair) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrBadPair naming %q", err, c.want)
			}
		})
	}
}

func TestArchiveBlobs(t *testing.T) {
	dir := t.TempDir()
	gz := []byte{0x1f, 0x8b, 8, 0, 0, 0}
	raw := layerTar(t, []file{{"a", []byte("x")}})
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(n string, d []byte) {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(d)), Typeflag: tar.TypeReg})
		tw.Write(d)
	}
	add("l1/layer.tar", raw)
	add("blobs/sha256/aa", gz)
	add("manifest.json", []byte(`[{"Config":"c.json","RepoTags":["x/y:1"],"Layers":["l1/layer.tar","./blobs/sha256/aa"]},{"RepoTags":["x/z:1"],"Layers":["blobs/sha256/aa"]}]`))
	tw.Close()
	p := filepath.Join(dir, "a.tar")
	os.WriteFile(p, b.Bytes(), 0o644)
	got, err := archiveBlobs(p, "x/y:1", 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []StoredBlob{{Compressed: false, Size: int64(len(raw))}, {Compressed: true, Size: int64(len(gz))}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if got, err := archiveBlobs(p, "index.docker.io/x/z:1", 1); err != nil || !got[0].Compressed {
		t.Errorf("normalised tag: %v, %v", got, err)
	}
	if _, err := archiveBlobs(p, "", 2); err == nil {
		t.Error("two images and no tag: accepted")
	}
}

func TestExtractTreeStaysInside(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.Mkdir(outside, 0o755)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside})
	for _, n := range []string{"link/escaped", "../escaped", "/abs/ok", "d/f"} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		tw.Write([]byte("hi"))
	}
	tw.WriteHeader(&tar.Header{Name: "d/hard", Typeflag: tar.TypeLink, Linkname: "d/f"})
	tw.Close()
	tp := filepath.Join(dir, "l.tar")
	os.WriteFile(tp, b.Bytes(), 0o644)
	tree := filepath.Join(dir, "tree")
	err := extractTree(context.Background(), tp, tree)
	if err == nil {
		t.Error("a member through a symlink leaving the tree was accepted")
	}
	if ents, _ := os.ReadDir(outside); len(ents) > 0 {
		t.Errorf("wrote outside the tree: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(dir, "escaped")); err == nil {
		t.Error("../escaped written outside the tree")
	}
	// Without the hostile member the rest is extracted.
	b.Reset()
	tw = tar.NewWriter(&b)
	for _, n := range []string{"../escaped", "/abs/ok", "d/f"} {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: 2, Typeflag: tar.TypeReg})
		tw.Write([]byte("hi"))
	}
	tw.WriteHeader(&tar.Header{Name: "d/hard", Typeflag: tar.TypeLink, Linkname: "d/f"})
	tw.Close()
	os.WriteFile(tp, b.Bytes(), 0o644)
	tree2 := filepath.Join(dir, "tree2")
	if err := extractTree(context.Background(), tp, tree2); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"escaped", "abs/ok", "d/f", "d/hard"} {
		if got, err := os.ReadFile(filepath.Join(tree2, p)); err != nil || string(got) != "hi" {
			t.Errorf("%s: %q, %v", p, got, err)
		}
	}
}

// cancelOnCall is a method that cancels the run on its nth call (counted
// over every method sharing calls), as ^C would while it runs.
type cancelOnCall struct {
	name   string
	calls  *int
	n      int
	cancel context.CancelFunc
}

func (c cancelOnCall) Name() string { return c.name }
func (c cancelOnCall) Run(context.Context, *Prepared, string) Result {
	*c.calls++
	if *c.calls == c.n {
		c.cancel()
	}
	return Result{WireBytes: int64(*c.calls)}
}

// TestRunInterrupted: an interrupted run keeps every finished result: the
// result func saw each as it finished, and Run returns them, marked
// Interrupted, with the context's error; the method cut short is left out.
func TestRunInterrupted(t *testing.T) {
	dir := t.TempDir()
	s := makeSynthetic(t, dir)
	a, b := s.pair, s.pair
	a.Name, b.Name = "a", "b"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	methods := []Method{cancelOnCall{"m1", &calls, 3, cancel}, cancelOnCall{"m2", &calls, 3, cancel}}
	var seen []string
	rep, err := Run(ctx, []Pair{a, b}, methods, nil, WithWorkDir(dir), WithResultFunc(func(p Pair, r Result) error {
		seen = append(seen, fmt.Sprintf("%s/%s/%d", p.Name, r.Method, r.WireBytes))
		return nil
	}))
	if !errors.Is(err, context.Canceled) || rep == nil {
		t.Fatalf("Run: %v, %v; want context.Canceled and a report", rep, err)
	}
	if d := cmp.Diff([]string{"a/m1/1", "a/m2/2"}, seen); d != "" {
		t.Errorf("results seen (-want +got):\n%s", d)
	}
	var got []string
	for _, p := range rep.Pairs {
		for _, r := range p.Results {
			got = append(got, fmt.Sprintf("%s/%s/%d", p.Name, r.Method, r.WireBytes))
		}
	}
	if d := cmp.Diff(seen, got); d != "" || !rep.Interrupted {
		t.Errorf("report (interrupted %v) (-want +got):\n%s", rep.Interrupted, d)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil || !strings.Contains(md.String(), "Interrupted") {
		t.Errorf("markdown: %v\n%s", err, md.String())
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "skiff-bench-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}
