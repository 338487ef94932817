package delta

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/gnugzip"
	"github.com/skiff-dev/skiff/internal/imagetest"
)

// gnuHeader is what `gzip -9n` writes: no name, mtime 0, XFL 2, OS 3.
var gnuHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3}

func gnuGzip(t testing.TB, content []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := gnugzip.Compress(&buf, bytes.NewReader(content), 9, gnuHeader); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func goGzip(t testing.TB, content []byte) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(content)
	zw.Close()
	return buf.String()
}

// changelog makes Debian-changelog-like text: entries, newest first.
func changelog(rng *rand.Rand, entries int) []byte {
	words := []string{"fix", "security", "upstream", "release", "CVE-2024", "patch", "debian", "build", "the", "for", "new", "version"}
	var b bytes.Buffer
	for e := entries; e > 0; e-- {
		fmt.Fprintf(&b, "pkg (1.%d-1) bookworm; urgency=medium\n\n", e)
		for range 3 + rng.IntN(4) {
			b.WriteString("  * ")
			for range 6 + rng.IntN(8) {
				b.WriteString(words[rng.IntN(len(words))] + " ")
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "\n -- Maintainer <m@example.org>  Mon, %02d Jan 2024 10:00:00 +0000\n\n", 1+e%28)
	}
	return b.Bytes()
}

// TestGunzipOps: GNU-gzip files are diffed by their content and come back
// byte for byte; gzip files gnugzip cannot re-create, and gzip files whose
// base is not gzip, still apply exactly.
func TestGunzipOps(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	oldLog := changelog(rng, 60)
	newLog := append(changelog(rng, 1), oldLog...) // a new entry on top
	man := changelog(rng, 20)
	newMan := bytes.Replace(man, []byte("security"), []byte("SECURITY"), 3)
	other := changelog(rng, 30)

	base := imagetest.Image(t, imagetest.LayerTar(t,
		imagetest.File{Name: "usr/share/doc/pkg/changelog.Debian.gz", Data: gnuGzip(t, oldLog)},
		imagetest.File{Name: "usr/share/man/man1/pkg.1.gz", Data: gnuGzip(t, man)},
		imagetest.File{Name: "usr/share/doc/go/notes.gz", Data: goGzip(t, other)},
		imagetest.File{Name: "usr/share/doc/plain/notes", Data: string(other)},
	))
	target := imagetest.Image(t, imagetest.LayerTar(t,
		imagetest.File{Name: "usr/share/doc/pkg/changelog.Debian.gz", Data: gnuGzip(t, newLog)},
		imagetest.File{Name: "usr/share/man/man1/pkg.1.gz", Data: gnuGzip(t, newMan)},
		imagetest.File{Name: "usr/share/doc/go/notes.gz", Data: goGzip(t, append(other, "one more line\n"...))},      // not GNU gzip
		imagetest.File{Name: "usr/share/doc/plain/notes.gz", Data: gnuGzip(t, append(other, "compressed now\n"...))}, // base is not gzip
		imagetest.File{Name: "usr/share/doc/new/README.gz", Data: gnuGzip(t, changelog(rng, 10))},                    // no base
	))

	for _, gunzip := range []bool{true, false} {
		t.Run(fmt.Sprintf("gunzip=%v", gunzip), func(t *testing.T) {
			opts := DefaultOptions()
			opts.Gunzip = gunzip
			var buf bytes.Buffer
			rep, err := Diff(context.Background(), base, target, &buf, opts)
			if err != nil {
				t.Fatal(err)
			}
			h, err := format.ReadHeader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			ops := 0
			for _, op := range h.Manifest.Ops {
				if op.Gzip != nil {
					ops++
				}
			}
			wantOps, wantVersion := 0, 6
			if gunzip {
				wantOps = 4 // all but the Go-made one
			}
			if ops != wantOps || rep.Gunzipped != wantOps || h.Manifest.Version != wantVersion {
				t.Fatalf("%d gzip ops (report %d), version %d; want %d ops, version %d", ops, rep.Gunzipped, h.Manifest.Version, wantOps, wantVersion)
			}
			t.Logf("gunzip=%v: %d bytes", gunzip, buf.Len())
			checkApplies(t, base, target, buf.Bytes())
		})
	}
}

func checkApplies(t *testing.T, base, target v1.Image, d []byte) {
	t.Helper()
	res, err := Apply(context.Background(), base, bytes.NewReader(d), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	got, _ := res.Image.ConfigName()
	want, _ := target.ConfigName()
	if got != want {
		t.Fatalf("image %s, want %s", got, want)
	}
	if g, w := diffIDs(t, res.Image), diffIDs(t, target); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Fatalf("diff_ids %v, want %v", g, w)
	}
}

// TestGunzipOpsHostile: gzip op fields that lie are refused with a clear
// error, never applied.
func TestGunzipOpsHostile(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	oldLog := changelog(rng, 40)
	base := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "doc/changelog.gz", Data: gnuGzip(t, oldLog)}))
	target := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "doc/changelog.gz", Data: gnuGzip(t, append(changelog(rng, 1), oldLog...))}))
	var buf bytes.Buffer
	if _, err := Diff(context.Background(), base, target, &buf, DefaultOptions()); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(g *GzipOp, m *Manifest)
		want error
	}{
		{"level 0", func(g *GzipOp, _ *Manifest) { g.Level = 0 }, ErrBadDelta},
		{"short header", func(g *GzipOp, _ *Manifest) { g.Header = g.Header[:4] }, ErrBadDelta},
		{"content over the limit", func(g *GzipOp, m *Manifest) { g.Size = m.Limits.MaxExpanded + 1 }, ErrLimit},
		{"base over the limit", func(g *GzipOp, m *Manifest) { g.BaseSize = m.Limits.MaxExpanded + 1 }, ErrLimit},
		{"version 1", func(_ *GzipOp, m *Manifest) { m.Version = 1 }, ErrBadDelta},
		{"wrong base size", func(g *GzipOp, _ *Manifest) { g.BaseSize-- }, ErrBadDelta},
		{"wrong level", func(g *GzipOp, _ *Manifest) { g.Level = 1 }, ErrCorrupt},
		{"wrong content size", func(g *GzipOp, _ *Manifest) { g.Size-- }, ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := rewriteManifest(t, buf.Bytes(), func(m *Manifest) {
				for i := range m.Ops {
					if m.Ops[i].Gzip != nil {
						tt.edit(m.Ops[i].Gzip, m)
						return
					}
				}
				t.Fatal("no gzip op")
			})
			_, err := Apply(context.Background(), base, bytes.NewReader(d), ApplyOptions{WorkDir: t.TempDir(), AllowUnsigned: true})
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// rewriteManifest returns delta d with its manifest edited (and no
// signature).
func rewriteManifest(t *testing.T, d []byte, edit func(*Manifest)) []byte {
	t.Helper()
	h, err := format.ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	edit(&h.Manifest)
	var out bytes.Buffer
	if _, err := format.WriteHeader(&out, &h.Manifest); err != nil {
		t.Fatal(err)
	}
	out.Write(d[h.BodyOffset:])
	return out.Bytes()
}

// TestSkeletonPlain: with a base skeleton over the dictionary limit, the
// skeleton frame has no dictionary and still rebuilds the target.
func TestSkeletonPlain(t *testing.T) {
	defer func(old int) { maxSkeletonDict = old }(maxSkeletonDict)
	maxSkeletonDict = 512
	base, target := tinyPair(t)
	var buf bytes.Buffer
	opts := DefaultOptions()
	opts.Lean = false // lean skeletons (version 5) never use a dictionary
	if _, err := Diff(context.Background(), base, target, &buf, opts); err != nil {
		t.Fatal(err)
	}
	h, err := format.ReadHeader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	plain := 0
	for _, l := range h.Manifest.Layers {
		if l.SkeletonPlain {
			plain++
			if l.DictLayer < 0 {
				t.Errorf("a plain skeleton without a dictionary layer: %+v", l)
			}
		}
	}
	if plain == 0 {
		t.Fatal("no layer has skeleton_plain")
	}
	checkApplies(t, base, target, buf.Bytes())
	// A reader that ignores skeleton_plain and supplies the dictionary
	// anyway decodes the same.
	d := rewriteManifest(t, buf.Bytes(), func(m *Manifest) {
		for i := range m.Layers {
			m.Layers[i].SkeletonPlain = false
		}
	})
	checkApplies(t, base, target, d)
}
