package bsdiff

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	gabsdiff "github.com/gabstv/go-bsdiff/pkg/bsdiff"
	gabspatch "github.com/gabstv/go-bsdiff/pkg/bspatch"
)

// debianTool returns the path of Debian's bsdiff or bspatch, or skips.
func debianTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install bsdiff): skipping interop with bsdiff 4.3", name)
	}
	return p
}

func writeTemp(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func applyOurs(t *testing.T, old, patch []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := Patch(context.Background(), bytes.NewReader(old), int64(len(old)), bytes.NewReader(patch), &out); err != nil {
		t.Fatalf("our Patch: %v", err)
	}
	return out.Bytes()
}

func ourPatch(t *testing.T, old, new []byte) []byte {
	t.Helper()
	var p bytes.Buffer
	if err := WritePatch(context.Background(), old, new, &p); err != nil {
		t.Fatalf("WritePatch: %v", err)
	}
	return p.Bytes()
}

func TestInteropDebian(t *testing.T) {
	bsdiffBin, bspatchBin := debianTool(t, "bsdiff"), debianTool(t, "bspatch")
	for _, p := range testPairs() {
		t.Run(p.name, func(t *testing.T) {
			dir := t.TempDir()
			oldF := writeTemp(t, dir, "old", p.old)
			newF := writeTemp(t, dir, "new", p.new)

			// Ours applied by bspatch 4.3.
			ourF := writeTemp(t, dir, "our.patch", ourPatch(t, p.old, p.new))
			outF := filepath.Join(dir, "out")
			if b, err := exec.Command(bspatchBin, oldF, outF, ourF).CombinedOutput(); err != nil {
				t.Fatalf("bspatch rejected our patch: %v: %s", err, b)
			}
			if got, _ := os.ReadFile(outF); !bytes.Equal(got, p.new) {
				t.Fatalf("bspatch applied our patch to %d bytes, want new (%d bytes)", len(got), len(p.new))
			}

			// bsdiff 4.3's patch applied by ours. bsdiff 4.3 cannot mmap
			// empty files, so those cases stop here.
			if len(p.old) == 0 || len(p.new) == 0 {
				return
			}
			debF := filepath.Join(dir, "deb.patch")
			if b, err := exec.Command(bsdiffBin, oldF, newF, debF).CombinedOutput(); err != nil {
				t.Fatalf("bsdiff: %v: %s", err, b)
			}
			deb, err := os.ReadFile(debF)
			if err != nil {
				t.Fatal(err)
			}
			if got := applyOurs(t, p.old, deb); !bytes.Equal(got, p.new) {
				t.Fatalf("our Patch applied bsdiff's patch to %d bytes, want new (%d bytes)", len(got), len(p.new))
			}

			// Quality: the same algorithm, so the decompressed streams
			// usually match bsdiff 4.3's byte for byte; they may differ
			// where several longest matches tie. Compressed with the same
			// encoder, ours must not be larger.
			dc, dd, de := decodeBSDIFF40(t, deb)
			oc, od, oe := decodeBSDIFF40(t, ourPatch(t, p.old, p.new))
			theirs := len(bz(t, dc)) + len(bz(t, dd)) + len(bz(t, de))
			ours := len(bz(t, oc)) + len(bz(t, od)) + len(bz(t, oe))
			same := bytes.Equal(oc, dc) && bytes.Equal(od, dd) && bytes.Equal(oe, de)
			t.Logf("streams identical to bsdiff 4.3: %v; recompressed size ours %d, theirs %d", same, ours, theirs)
			if ours > theirs {
				t.Errorf("our delta compresses to %d bytes, bsdiff 4.3's to %d", ours, theirs)
			}
		})
	}
}

func TestInteropGabstv(t *testing.T) {
	for _, p := range testPairs() {
		t.Run(p.name, func(t *testing.T) {
			got, err := gabspatch.Bytes(p.old, ourPatch(t, p.old, p.new))
			if err != nil {
				t.Fatalf("gabstv bspatch rejected our patch: %v", err)
			}
			if !bytes.Equal(got, p.new) {
				t.Fatalf("gabstv bspatch applied our patch to %d bytes, want new (%d bytes)", len(got), len(p.new))
			}
			theirs, err := gabsdiff.Bytes(p.old, p.new)
			if err != nil {
				t.Fatalf("gabstv bsdiff: %v", err)
			}
			if got := applyOurs(t, p.old, theirs); !bytes.Equal(got, p.new) {
				t.Fatalf("our Patch applied gabstv's patch to %d bytes, want new (%d bytes)", len(got), len(p.new))
			}
		})
	}
}

// decodeBSDIFF40 returns the three decompressed blocks of a patch.
func decodeBSDIFF40(t *testing.T, patch []byte) (ctrl, diff, extra []byte) {
	t.Helper()
	if len(patch) < headerSize || string(patch[:8]) != magic {
		t.Fatalf("not a BSDIFF40 patch")
	}
	cl, dl := getOfft(patch[8:]), getOfft(patch[16:])
	body := patch[headerSize:]
	return unbz(t, body[:cl]), unbz(t, body[cl:cl+dl]), unbz(t, body[cl+dl:])
}
