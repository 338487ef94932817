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

func TestSkeletonDeltaRoundTrip(t *testing.T) {
	files := sampleFiles()
	newer := make([]tarFile, len(files))
	for i, f := range files {
		f.hdr.ModTime = f.hdr.ModTime.Add(time.Hour)
		newer[i] = f
	}
	newer[1].data = "device-2\n"
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
	diffs := map[string]func(base, target []byte, w io.Writer) error{"xor": DiffSkeleton, "sums": DiffSkeletonSums}
	for name, p := range pairs {
		for dn, diff := range diffs {
			t.Run(name+"/"+dn, func(t *testing.T) {
				var d bytes.Buffer
				if err := diff(p[0], p[1], &d); err != nil {
					t.Fatal(err)
				}
				if dn == "sums" && name == "mtimes and a file changed" && !bytes.Contains(d.Bytes(), []byte{tagHeaderXorSum}) {
					t.Error("no header left its checksum out")
				}
				var out bytes.Buffer
				if err := PatchSkeleton(p[0], bytes.NewReader(d.Bytes()), &out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), p[1]) {
					t.Fatalf("patched skeleton differs")
				}
				// Every truncation fails cleanly.
				for n := 0; n < d.Len(); n += 1 + d.Len()/50 {
					if err := PatchSkeleton(p[0], bytes.NewReader(d.Bytes()[:n]), io.Discard); !errors.Is(err, ErrBadSkeleton) {
						t.Fatalf("truncated at %d: err = %v", n, err)
					}
				}
			})
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
	f.Fuzz(func(t *testing.T, delta []byte) {
		var out bytes.Buffer
		if err := PatchSkeleton(base, bytes.NewReader(delta), &out); err != nil {
			return
		}
		// What it writes is a well-formed skeleton.
		if err := Walk(bytes.NewReader(out.Bytes()), func(File) error { return nil }); err != nil {
			t.Fatalf("PatchSkeleton wrote a skeleton Walk rejects: %v", err)
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
