package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/internal/tartest"
)

func skeletonOf(t testing.TB, data []byte) []byte {
	t.Helper()
	var skel bytes.Buffer
	if _, err := Disassemble(context.Background(), bytes.NewReader(data), memStore{}, &skel); err != nil {
		t.Fatal(err)
	}
	return skel.Bytes()
}

// touchedFiles are sampleFiles an hour later, one with other content.
func touchedFiles() []tarFile {
	newer := sampleFiles()
	for i := range newer {
		newer[i].hdr.ModTime = newer[i].hdr.ModTime.Add(time.Hour)
	}
	newer[1].data = "device-2\n"
	return newer
}

func TestSkeletonDeltaRoundTrip(t *testing.T) {
	files, newer := sampleFiles(), touchedFiles()
	newer = append(newer, tarFile{hdr: tar.Header{Name: "etc/new", Typeflag: tar.TypeReg, ModTime: time.Unix(5, 0)}, data: "n"})
	base := skeletonOf(t, mkTar(t, tar.FormatPAX, files...))
	pairs := map[string][2][]byte{
		"mtimes and a file changed": {base, skeletonOf(t, mkTar(t, tar.FormatPAX, newer...))},
		"identical":                 {base, base},
		"unrelated":                 {base, skeletonOf(t, tartest.Cases(1)[0].Data)},
	}
	for _, c := range tartest.Cases(2) {
		pairs["case "+c.Name] = [2][]byte{skeletonOf(t, tartest.Cases(1)[len(tartest.Cases(1))-1].Data), skeletonOf(t, c.Data)}
	}
	pairs["from nothing"] = [2][]byte{nil, pairs["mtimes and a file changed"][1]}
	diffs := map[string]func(base, target []byte, w io.Writer) error{"xor": DiffSkeleton, "sums": DiffSkeletonSums, "lean": nil}
	for name, p := range pairs {
		for dn, diff := range diffs {
			if (p[0] == nil) != (dn == "lean") && name == "from nothing" {
				continue // only lean deltas are made against nothing
			}
			t.Run(name+"/"+dn, func(t *testing.T) {
				made := madeOutside(t, p[0], p[1])
				if diff == nil {
					diff = func(base, target []byte, w io.Writer) error {
						return DiffSkeletonLean(base, target, w, func(d digest.Digest) bool { return made[d] })
					}
				}
				var d bytes.Buffer
				if err := diff(p[0], p[1], &d); err != nil {
					t.Fatal(err)
				}
				if dn == "sums" && name == "mtimes and a file changed" && !bytes.Contains(d.Bytes(), []byte{tagHeaderXorSum}) {
					t.Error("no header left its checksum out")
				}
				var patched, out bytes.Buffer
				if err := PatchSkeletonLean(p[0], bytes.NewReader(d.Bytes()), &patched); err != nil {
					t.Fatal(err)
				}
				// The made payloads come back in target order: the k-th Made
				// entry of the patched skeleton is the k-th entry of the
				// target that the writer left a Made record for.
				var targets []digest.Digest
				Walk(bytes.NewReader(p[1]), func(f File) error { targets = append(targets, f.Payload); return nil })
				var order []digest.Digest
				k := 0
				Walk(bytes.NewReader(patched.Bytes()), func(f File) error {
					if f.Made {
						if !made[targets[k]] {
							t.Errorf("entry %d (%s) has a Made record but is not made", k, f.Name)
						}
						order = append(order, targets[k])
					}
					k++
					return nil
				})
				var madeSeen int
				err := FillMade(bytes.NewReader(patched.Bytes()), &out, func(size int64) (digest.Digest, error) {
					if madeSeen >= len(order) {
						return "", errors.New("more Made records than made payloads")
					}
					madeSeen++
					return order[madeSeen-1], nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if madeSeen != len(order) {
					t.Errorf("FillMade asked for %d digests, the skeleton has %d Made entries", madeSeen, len(order))
				}
				if dn != "lean" && !bytes.Equal(patched.Bytes(), p[1]) {
					t.Fatal("a delta without Made records patched to other bytes than FillMade copies")
				}
				if !bytes.Equal(out.Bytes(), p[1]) {
					t.Fatalf("patched skeleton differs")
				}
				if dn == "lean" {
					if _, err := Assemble(context.Background(), bytes.NewReader(patched.Bytes()), memStore{}, io.Discard); len(order) > 0 && !errors.Is(err, ErrBadSkeleton) {
						t.Errorf("Assemble of a skeleton with Made records: %v, want ErrBadSkeleton", err)
					}
				}
				// Every truncation fails cleanly.
				for n := 0; n < d.Len(); n += 1 + d.Len()/50 {
					if err := PatchSkeletonLean(p[0], bytes.NewReader(d.Bytes()[:n]), io.Discard); !errors.Is(err, ErrBadSkeleton) {
						t.Fatalf("truncated at %d: err = %v", n, err)
					}
				}
			})
		}
	}
}

// madeOutside returns the payloads of target that base lacks and that
// target holds once: what a skiff delta makes (a lean delta's Made).
func madeOutside(t testing.TB, base, target []byte) map[digest.Digest]bool {
	have, count := map[digest.Digest]bool{}, map[digest.Digest]int{}
	if base != nil {
		Walk(bytes.NewReader(base), func(f File) error { have[f.Payload] = true; return nil })
	}
	Walk(bytes.NewReader(target), func(f File) error { count[f.Payload]++; return nil })
	made := map[digest.Digest]bool{}
	for d, n := range count {
		if d != "" && n == 1 && !have[d] {
			made[d] = true
		}
	}
	return made
}

// TestLeanSkeletonDelta: a lean delta of a layer whose files all changed
// their mtime, one its content, is a few bytes per entry; unchanged
// payloads cost one byte, the changed one no digest.
func TestLeanSkeletonDelta(t *testing.T) {
	files, newer := sampleFiles(), touchedFiles()
	base := skeletonOf(t, mkTar(t, tar.FormatPAX, files...))
	target := skeletonOf(t, mkTar(t, tar.FormatPAX, newer...))
	made := madeOutside(t, base, target)
	if len(made) != 1 {
		t.Fatalf("%d made payloads, want 1", len(made))
	}
	var sums, lean bytes.Buffer
	if err := DiffSkeletonSums(base, target, &sums); err != nil {
		t.Fatal(err)
	}
	if err := DiffSkeletonLean(base, target, &lean, func(d digest.Digest) bool { return made[d] }); err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(lean.Bytes(), []byte{tagPayloadMade}); n < 1 {
		t.Error("no Made record")
	}
	// Every payload record of the sums delta carries 32 digest bytes and a
	// size; the lean one none.
	if got, want := sums.Len()-lean.Len(), 32*2; got < want { // two payloads: one unchanged, one made
		t.Errorf("lean delta %d bytes, sums %d: saved %d, want at least %d", lean.Len(), sums.Len(), got, want)
	}
	if err := PatchSkeleton(base, bytes.NewReader(lean.Bytes()), io.Discard); !errors.Is(err, ErrBadSkeleton) {
		t.Errorf("PatchSkeleton of a lean delta: err = %v, want ErrBadSkeleton", err)
	}
	// Lean records are refused where they make no sense.
	bad := map[string][]byte{
		"Same first":        append(skeletonMagic[:], tagPayloadSame),
		"Made first":        append(skeletonMagic[:], tagPayloadMade),
		"Made in the input": append(skeletonMagic[:], tagMade, 1),
	}
	for name, d := range bad {
		if err := PatchSkeletonLean(base, bytes.NewReader(d), io.Discard); !errors.Is(err, ErrBadSkeleton) {
			t.Errorf("%s: err = %v, want ErrBadSkeleton", name, err)
		}
	}
}

func FuzzPatchSkeleton(f *testing.F) {
	base := skeletonOf(f, mkTar(f, tar.FormatPAX, sampleFiles()...))
	var d bytes.Buffer
	if err := DiffSkeleton(base, base, &d); err != nil {
		f.Fatal(err)
	}
	f.Add(d.Bytes())
	files := sampleFiles()
	files[1].data = "device-2\n"
	target := skeletonOf(f, mkTar(f, tar.FormatPAX, files...))
	made := madeOutside(f, base, target)
	d.Reset()
	if err := DiffSkeletonLean(base, target, &d, func(x digest.Digest) bool { return made[x] }); err != nil {
		f.Fatal(err)
	}
	f.Add(d.Bytes())
	f.Fuzz(func(t *testing.T, delta []byte) {
		var out bytes.Buffer
		if err := PatchSkeletonLean(base, bytes.NewReader(delta), &out); err != nil {
			return
		}
		// What it writes is a well-formed skeleton, and one Assemble takes
		// once its Made records are filled in.
		if err := Walk(bytes.NewReader(out.Bytes()), func(File) error { return nil }); err != nil {
			t.Fatalf("PatchSkeleton wrote a skeleton Walk rejects: %v", err)
		}
		var filled bytes.Buffer
		err := FillMade(bytes.NewReader(out.Bytes()), &filled, func(int64) (digest.Digest, error) {
			return digest.FromString("made"), nil
		})
		if err != nil {
			t.Fatalf("FillMade of what PatchSkeleton wrote: %v", err)
		}
		sr, err := newSkelReader(bytes.NewReader(filled.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := sr.next(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("FillMade wrote a skeleton with a bad record: %v", err)
			}
		}
	})
}

// TestSkeletonDeltaOddChecksum: a header whose checksum is not in the
// canonical form keeps it in the delta (HeaderXor), so the target comes
// back byte for byte.
func TestSkeletonDeltaOddChecksum(t *testing.T) {
	odd := func(tb []byte) []byte {
		tb = bytes.Clone(tb)
		var sum int64
		for i, c := range tb[:512] {
			if i >= 148 && i < 156 {
				c = ' '
			}
			sum += int64(c)
		}
		copy(tb[148:156], fmt.Sprintf("%07o\x00", sum)) // 7 digits and NUL, as some writers do
		return tb
	}
	files := sampleFiles()
	newer := make([]tarFile, len(files))
	for i, f := range files {
		f.hdr.ModTime = f.hdr.ModTime.Add(time.Hour)
		newer[i] = f
	}
	base := skeletonOf(t, odd(mkTar(t, tar.FormatUSTAR, files...)))
	target := skeletonOf(t, odd(mkTar(t, tar.FormatUSTAR, newer...)))
	var d, out bytes.Buffer
	if err := DiffSkeletonSums(base, target, &d); err != nil {
		t.Fatal(err)
	}
	if err := PatchSkeleton(base, bytes.NewReader(d.Bytes()), &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), target) {
		t.Fatal("patched skeleton differs")
	}
}
