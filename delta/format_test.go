package delta

import (
	"bytes"
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/example"
	"github.com/skiff-dev/skiff/internal/imagetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// tinyPair is a small base/target pair touching every op kind.
func tinyPair(t testing.TB) (base, target v1.Image) {
	lorem := bytes.Repeat([]byte("skiff ships exact deltas to devices on thin links. "), 200)
	changed := append(append([]byte{}, lorem[:5000]...), []byte("a small edit in the middle")...)
	changed = append(changed, lorem[5000:]...)
	shared := imagetest.LayerTar(t, imagetest.File{Name: "etc/os-release", Data: "ID=skiff\nVERSION=1\n"})
	base = imagetest.Image(t, shared, imagetest.LayerTar(t,
		imagetest.File{Name: "app/readme.txt", Data: string(lorem)},
		imagetest.File{Name: "app/config.yaml", Data: "level: info\nport: 8080\n"},
		imagetest.File{Name: "app/lib/libx.so.1.2.3", Data: string(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 3000))},
	))
	target = imagetest.Image(t, shared, imagetest.LayerTar(t,
		imagetest.File{Name: "app/readme.txt", Data: string(changed)},
		imagetest.File{Name: "app/config.yaml", Data: "level: debug\nport: 8080\n"},
		imagetest.File{Name: "app/lib/libx.so.1.2.4", Data: string(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 9}, 3000))},
		imagetest.File{Name: "app/new.txt", Data: "brand new file\n"},
		imagetest.File{Name: "app/copy-of-release", Data: "ID=skiff\nVERSION=1\n"},
	))
	return base, target
}

// noLean are the default options without lean skeletons: manifest
// versions 3 and 4, pinned by the golden files of those versions.
func noLean() Options {
	o := DefaultOptions()
	o.Lean = false
	return o
}

// noKeep are the default options without base.keep: manifest version 5,
// pinned by the golden files of that version.
func noKeep() Options {
	o := DefaultOptions()
	o.Keep = false
	return o
}

// scratchV5 is limits.scratch of the version 5 delta of a pair.
func scratchV5(t *testing.T, base, target v1.Image) int64 {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, noKeep()); err != nil {
		t.Fatal(err)
	}
	h, err := format.ReadHeader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return h.Manifest.Limits.Scratch
}

// TestDeltaGolden pins the delta byte format (FORMAT.md) on a tiny pair:
// manifest version 6 (base.keep), 5 (lean skeletons), version 3 (solid streams) and
// version 1 as written without them, which readers still apply.
func TestDeltaGolden(t *testing.T) {
	base, target := tinyPair(t)
	v6 := checkGolden(t, "tiny-v6.skiff", base, target, DefaultOptions())
	h6, err := format.ReadHeader(bytes.NewReader(v6))
	if err != nil {
		t.Fatal(err)
	}
	if h6.Manifest.Version != 6 || len(h6.Manifest.Base.Keep) != 2 || h6.Manifest.Limits.Scratch >= scratchV5(t, base, target) {
		t.Errorf("the tiny pair should make a version 6 delta that keeps fewer base payloads: version %d, keep %q", h6.Manifest.Version, h6.Manifest.Base.Keep)
	}
	want := checkGolden(t, "tiny-v5.skiff", base, target, noKeep())
	h5, err := format.ReadHeader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	v3 := checkGolden(t, "tiny-v3.skiff", base, target, noLean())
	if h5.Manifest.Version != 5 || len(want) >= len(v3) {
		t.Errorf("the tiny pair should make a version 5 delta smaller than version 3: version %d, %d bytes against %d", h5.Manifest.Version, len(want), len(v3))
	}
	// The columnar layout, which small streams only get when forced.
	defer func(old int64) { maxInterleavedTry = old }(maxInterleavedTry)
	maxInterleavedTry = -1
	cols := checkGolden(t, "tiny-v5-columns.skiff", base, target, noKeep())
	hc, err := format.ReadHeader(bytes.NewReader(cols))
	if err != nil {
		t.Fatal(err)
	}
	if len(hc.Manifest.Streams) != 1 || len(hc.Manifest.Streams[0].Regions) != format.NumRegions {
		t.Errorf("forced columnar: streams %+v", hc.Manifest.Streams)
	}
	maxInterleavedTry = 256 << 10
	want = v3
	h3, err := format.ReadHeader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if h3.Manifest.Version != 3 || len(h3.Manifest.Streams) != 1 {
		t.Errorf("the tiny pair should make a version 3 delta with one stream: version %d, %d streams", h3.Manifest.Version, len(h3.Manifest.Streams))
	}
	legacy := DefaultOptions()
	legacy.Solid = false
	want = checkGolden(t, "tiny.skiff", base, target, legacy)
	h, err := format.ReadHeader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	encs := map[string]int{}
	for _, op := range h.Manifest.Ops {
		encs[op.Encoder]++
	}
	if encs[EncZstd] == 0 || encs[EncZstdDict]+encs[EncBsdiff] == 0 || h.Manifest.Layers[0].BaseLayer == nil {
		t.Errorf("the tiny pair should exercise reuse, zstd and a patch encoder: %v", encs)
	}
}

// TestNewExecutableGolden pins manifest version 4: a new x86-64 ELF file
// goes through bsdiff-x86's transforms against the empty base (FORMAT.md
// "New executables"), and the delta is smaller than with it as plain
// content; the same pair without the encoder stays version 3.
func TestNewExecutableGolden(t *testing.T) {
	base, target := newExecutablePair(t)
	want := checkGolden(t, "newelf-v4.skiff", base, target, noLean())
	h, err := format.ReadHeader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, op := range h.Manifest.Ops {
		found = found || op.NewExecutable()
	}
	if h.Manifest.Version != 4 || !found {
		t.Fatalf("version %d, new executable op %v: want version 4 with one", h.Manifest.Version, found)
	}
	plain := noLean()
	plain.BsdiffX86 = false
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, plain); err != nil {
		t.Fatal(err)
	}
	h3, err := format.ReadHeader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if h3.Manifest.Version != 3 {
		t.Errorf("without bsdiff-x86: version %d, want 3", h3.Manifest.Version)
	}
	if len(want) >= buf.Len() {
		t.Errorf("new executable through the transforms: %d bytes, as plain content %d", len(want), buf.Len())
	}
	t.Logf("new executable: %d bytes through the transforms, %d as plain content", len(want), buf.Len())
}

func FuzzReadHeader(f *testing.F) {
	base, target := tinyPair(f)
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, DefaultOptions()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte("SKIFFDL\x01"))
	legacy := DefaultOptions()
	legacy.Solid = false
	buf.Reset()
	if _, err := Diff(context.Background(), base, target, &buf, legacy); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := format.ReadHeader(bytes.NewReader(data))
		if err != nil {
			return
		}
		// A header that parses is internally consistent.
		if err := h.Manifest.Validate(); err != nil {
			t.Fatalf("ReadHeader accepted an invalid manifest: %v", err)
		}
	})
}

// newExecutablePair is the tiny pair's base and a target that adds a new
// x86-64 executable (manifest version 4).
func newExecutablePair(t testing.TB) (base, target v1.Image) {
	base, _ = tinyPair(t)
	layers, err := base.Layers()
	if err != nil {
		t.Fatal(err)
	}
	shared, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	sharedTar, err := io.ReadAll(shared)
	if err != nil {
		t.Fatal(err)
	}
	target = imagetest.Image(t, sharedTar, imagetest.LayerTar(t,
		imagetest.File{Name: "usr/bin/skiffd", Data: string(example.Executable("skiffd", 96<<10))},
		imagetest.File{Name: "etc/skiffd.conf", Data: "port: 8080\n"},
	))
	return base, target
}

// FuzzApplyNewExecutable fuzzes new executables' residues (version 4).
func FuzzApplyNewExecutable(f *testing.F) { fuzzApply(f, newExecutablePair) }

// FuzzApply: hostile deltas against a fixed base fail cleanly.
func FuzzApply(f *testing.F) { fuzzApply(f, tinyPair) }

// FuzzApplyGzip fuzzes the gzip ops' reader (manifest version 2).
func FuzzApplyGzip(f *testing.F) { fuzzApply(f, gzipPair) }

func fuzzApply(f *testing.F, pair func(testing.TB) (v1.Image, v1.Image)) {
	base, target := pair(f)
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, DefaultOptions()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	// The same as version 3 (interleaved streams, skeletons that name
	// every digest) and with its stream columnar.
	for _, force := range []bool{false, true} {
		opts := DefaultOptions()
		opts.Lean = force
		old := maxInterleavedTry
		if force {
			maxInterleavedTry = -1
		}
		var b bytes.Buffer
		_, err := Diff(context.Background(), base, target, &b, opts)
		maxInterleavedTry = old
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Apply(context.Background(), base, bytes.NewReader(data), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
		if err != nil {
			return
		}
		defer res.Close()
		got, _ := res.Image.ConfigName()
		exp, _ := target.ConfigName()
		if !bytes.Equal(data, buf.Bytes()) && got != exp {
			// Another valid delta may make another image only if its manifest says so.
			if got.String() != res.Header.Manifest.Target.ConfigDigest.String() {
				t.Fatalf("applied image %s is not the one the delta names", got)
			}
		}
	})
}

// gzipPair is a tiny pair of GNU-gzip files: a changelog with a new entry
// and a new file.
func gzipPair(t testing.TB) (base, target v1.Image) {
	rng := rand.New(rand.NewPCG(11, 12))
	oldLog := changelog(rng, 12)
	base = imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "usr/share/doc/pkg/changelog.Debian.gz", Data: gnuGzip(t, oldLog)}))
	target = imagetest.Image(t, imagetest.LayerTar(t,
		imagetest.File{Name: "usr/share/doc/pkg/changelog.Debian.gz", Data: gnuGzip(t, append(changelog(rng, 1), oldLog...))},
		imagetest.File{Name: "usr/share/doc/pkg/NEWS.gz", Data: gnuGzip(t, changelog(rng, 2))},
	))
	return base, target
}

// TestDeltaGoldenGzip pins manifest version 2: gzip ops (and the same
// in versions 3 and 5).
func TestDeltaGoldenGzip(t *testing.T) {
	base, target := gzipPair(t)
	checkGolden(t, "gzip-v3.skiff", base, target, noLean())
	checkGolden(t, "gzip-v5.skiff", base, target, noKeep())
	legacy := DefaultOptions()
	legacy.Solid = false
	want := checkGolden(t, "gzip.skiff", base, target, legacy)
	h, err := format.ReadHeader(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if h.Manifest.Version != 2 || h.Manifest.Ops[0].Gzip == nil || h.Manifest.Ops[0].Gzip.BaseSize == 0 {
		t.Errorf("the gzip pair should make a version 2 delta with a gzip op against a gzip base: %+v", h.Manifest.Ops)
	}
}

// checkGolden diffs base to target, compares the delta with golden file
// name (rewritten with -update), checks that the golden delta applies and
// returns it.
func checkGolden(t *testing.T, name string, base, target v1.Image, opts Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, opts); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(golden), 0o755)
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("delta bytes changed (%d bytes, golden %d): if the format changed, bump its version in FORMAT.md; then run -update", buf.Len(), len(want))
	}
	// The golden delta still applies and gives the target.
	res, err := Apply(context.Background(), base, bytes.NewReader(want), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatalf("golden delta does not apply: %v", err)
	}
	defer res.Close()
	got, _ := res.Image.ConfigName()
	exp, _ := target.ConfigName()
	if got != exp {
		t.Fatalf("golden delta gives %s, want %s", got, exp)
	}
	return want
}
