package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/opencontainers/go-digest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// memStore is an in-memory Ingester and Provider for tests.
type memStore map[digest.Digest][]byte

func (m memStore) Ingest(_ context.Context, r io.Reader, size int64) (digest.Digest, error) {
	var buf bytes.Buffer // grows with the bytes there are, not the size declared
	if _, err := io.CopyN(&buf, r, size); err != nil {
		return "", noEOF(err)
	}
	b := buf.Bytes()
	d := digest.FromBytes(b)
	m[d] = b
	return d, nil
}

func (m memStore) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	b, ok := m[d]
	if !ok {
		return nil, ErrPayloadNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// roundTrip disassembles data, reassembles it and checks it is the same.
func roundTrip(t testing.TB, data []byte) (Stats, []byte, memStore) {
	t.Helper()
	ctx := context.Background()
	store := memStore{}
	var skel bytes.Buffer
	st, err := Disassemble(ctx, bytes.NewReader(data), store, &skel)
	if err != nil {
		t.Fatalf("Disassemble: %v", err)
	}
	want := digest.FromBytes(data)
	if st.DiffID != want || st.TarSize != int64(len(data)) {
		t.Fatalf("stats say %s/%d, data is %s/%d", st.DiffID, st.TarSize, want, len(data))
	}
	if st.SkeletonBytes != int64(skel.Len()) {
		t.Fatalf("SkeletonBytes %d, wrote %d", st.SkeletonBytes, skel.Len())
	}
	var out bytes.Buffer
	got, err := Assemble(ctx, bytes.NewReader(skel.Bytes()), store, &out)
	if err != nil {
		t.Fatalf("Assemble: %v", err)
	}
	if got != want || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("reassembled %d bytes %s, want %d bytes %s", out.Len(), got, len(data), want)
	}
	return st, skel.Bytes(), store
}

type tarFile struct {
	hdr  tar.Header
	data string
}

func mkTar(t testing.TB, format tar.Format, files ...tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		h.Format = format
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader %q: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func sampleFiles() []tarFile {
	mt := time.Unix(1700000000, 0)
	return []tarFile{
		{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt}},
		{hdr: tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mt}, data: "device-1\n"},
		{hdr: tar.Header{Name: "etc/empty", Typeflag: tar.TypeReg, Mode: 0o644, ModTime: mt}},
		{hdr: tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", ModTime: mt}},
		{hdr: tar.Header{Name: "bin/block", Typeflag: tar.TypeReg, Mode: 0o755, ModTime: mt}, data: string(bytes.Repeat([]byte{'x'}, 1024))},
		{hdr: tar.Header{Name: "bin/ls", Typeflag: tar.TypeLink, Linkname: "bin/block", ModTime: mt}},
	}
}

func TestRoundTripSimple(t *testing.T) {
	for _, format := range []tar.Format{tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU} {
		t.Run(format.String(), func(t *testing.T) {
			st, _, store := roundTrip(t, mkTar(t, format, sampleFiles()...))
			want := Stats{Entries: 6, Files: 2, PayloadBytes: 1024 + 9}
			got := Stats{Entries: st.Entries, Files: st.Files, PayloadBytes: st.PayloadBytes}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if len(store) != 2 {
				t.Errorf("store holds %d payloads, want 2", len(store))
			}
		})
	}
}

func TestRoundTripEdges(t *testing.T) {
	base := mkTar(t, tar.FormatPAX, sampleFiles()...)
	body := base[:len(base)-1024] // without the end marker
	cases := []struct {
		name string
		data []byte
	}{
		{"zero-length stream", nil},
		{"only end marker", make([]byte, 1024)},
		{"one zero block", make([]byte, 512)},
		{"no end marker", body},
		{"record padding", append(append([]byte{}, base...), make([]byte, 9*1024)...)},
		{"garbage after end", append(append([]byte{}, base...), []byte("trailing garbage\x00\x01")...)},
		{"odd-length zero tail", append(append([]byte{}, base...), make([]byte, 100)...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { roundTrip(t, c.data) })
	}
}

func TestDuplicatePaths(t *testing.T) {
	mt := time.Unix(1, 0)
	data := mkTar(t, tar.FormatPAX,
		tarFile{hdr: tar.Header{Name: "a", Typeflag: tar.TypeReg, ModTime: mt}, data: "one"},
		tarFile{hdr: tar.Header{Name: "a", Typeflag: tar.TypeReg, ModTime: mt}, data: "two"},
	)
	st, _, _ := roundTrip(t, data)
	if st.DuplicatePaths != 1 {
		t.Errorf("DuplicatePaths = %d, want 1", st.DuplicatePaths)
	}
}

func TestMalformedRejected(t *testing.T) {
	good := mkTar(t, tar.FormatPAX, sampleFiles()...)
	badSum := append([]byte{}, good...)
	badSum[0] ^= 0xff
	cases := []struct {
		name string
		data []byte
	}{
		{"bad checksum", badSum},
		{"truncated header", good[:300]},
		{"truncated data", good[:512*3+100]},
		{"garbage", bytes.Repeat([]byte("not a tar "), 100)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Disassemble(context.Background(), bytes.NewReader(c.data), memStore{}, io.Discard)
			if !errors.Is(err, ErrMalformedTar) {
				t.Fatalf("err = %v, want ErrMalformedTar", err)
			}
		})
	}
}

// TestWalkMatchesArchiveTar compares the entries Walk finds with what Go's
// archive/tar (the reader engines use) finds.
func TestWalkMatchesArchiveTar(t *testing.T) {
	for _, format := range []tar.Format{tar.FormatUSTAR, tar.FormatPAX, tar.FormatGNU} {
		t.Run(format.String(), func(t *testing.T) {
			data := mkTar(t, format, sampleFiles()...)
			_, skel, _ := roundTrip(t, data)
			compareWithArchiveTar(t, data, skel)
		})
	}
}

type walkEntry struct {
	Name, Linkname string
	Type           byte
	Size           int64
	Mode           int64
	Payload        digest.Digest
}

func compareWithArchiveTar(t *testing.T, data, skel []byte) {
	t.Helper()
	var want []walkEntry
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("archive/tar: %v", err)
		}
		we := walkEntry{Name: h.Name, Linkname: h.Linkname, Type: h.Typeflag, Size: h.Size, Mode: h.Mode}
		if len(b) > 0 {
			we.Payload = digest.FromBytes(b)
		}
		want = append(want, we)
	}
	var got []walkEntry
	err := Walk(bytes.NewReader(skel), func(f File) error {
		typ := f.Type
		if typ == typeRegA {
			typ = typeReg
		}
		got = append(got, walkEntry{Name: f.Name, Linkname: f.Linkname, Type: typ, Size: f.Size, Mode: f.Mode, Payload: f.Payload})
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-archive/tar +Walk):\n%s", diff)
	}
}

func TestAssembleDetectsCorruption(t *testing.T) {
	data := mkTar(t, tar.FormatPAX, sampleFiles()...)
	_, skel, store := roundTrip(t, data)
	ctx := context.Background()

	t.Run("corrupt payload", func(t *testing.T) {
		bad := memStore{}
		for d, b := range store {
			c := append([]byte{}, b...)
			c[0] ^= 1
			bad[d] = c
		}
		_, err := Assemble(ctx, bytes.NewReader(skel), bad, io.Discard)
		if !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("err = %v, want ErrDigestMismatch", err)
		}
	})
	t.Run("missing payload", func(t *testing.T) {
		_, err := Assemble(ctx, bytes.NewReader(skel), memStore{}, io.Discard)
		if !errors.Is(err, ErrPayloadNotFound) {
			t.Fatalf("err = %v, want ErrPayloadNotFound", err)
		}
	})
	t.Run("every truncation", func(t *testing.T) {
		for n := 0; n < len(skel); n++ {
			_, err := Assemble(ctx, bytes.NewReader(skel[:n]), store, io.Discard)
			if !errors.Is(err, ErrBadSkeleton) {
				t.Fatalf("truncated at %d: err = %v, want ErrBadSkeleton", n, err)
			}
		}
	})
	t.Run("trailing bytes", func(t *testing.T) {
		_, err := Assemble(ctx, bytes.NewReader(append(append([]byte{}, skel...), 0)), store, io.Discard)
		if !errors.Is(err, ErrBadSkeleton) {
			t.Fatalf("err = %v, want ErrBadSkeleton", err)
		}
	})
	t.Run("header edit", func(t *testing.T) {
		// Flip a byte inside the first header's name: checksum or End digest must catch it.
		bad := append([]byte{}, skel...)
		bad[len(skeletonMagic)+3] ^= 1
		_, err := Assemble(ctx, bytes.NewReader(bad), store, io.Discard)
		if err == nil {
			t.Fatal("edited skeleton assembled without error")
		}
	})
}

// TestSkeletonGolden pins the skeleton byte format (SKELETON.md).
func TestSkeletonGolden(t *testing.T) {
	data := mkTar(t, tar.FormatPAX, sampleFiles()...)
	data = append(data, 1, 2, 3) // a Literal record in the trailer
	_, skel, _ := roundTrip(t, data)
	golden := filepath.Join("testdata", "golden", "sample.skel")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, skel, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(skel, want) {
		t.Fatalf("skeleton bytes changed (%d bytes, golden %d): the format is pinned; bump the version in SKELETON.md and run -update", len(skel), len(want))
	}
	// And the golden skeleton still rebuilds the tar.
	store := memStore{}
	if _, err := Disassemble(context.Background(), bytes.NewReader(data), store, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := Assemble(context.Background(), bytes.NewReader(want), store, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("golden skeleton does not rebuild the tar: %v", err)
	}
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(t.TempDir(), WithSync(true))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, smallBlob, smallBlob + 1, 3 << 20} {
		b := bytes.Repeat([]byte{byte(size)}, size)
		d, err := s.Ingest(ctx, bytes.NewReader(b), int64(size))
		if err != nil {
			t.Fatalf("Ingest %d: %v", size, err)
		}
		if d != digest.FromBytes(b) || !s.Has(d) {
			t.Fatalf("Ingest %d: digest %s, has=%v", size, d, s.Has(d))
		}
		// Ingesting again is fine and keeps one copy.
		if _, err := s.Ingest(ctx, bytes.NewReader(b), int64(size)); err != nil {
			t.Fatal(err)
		}
		rc, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, b) {
			t.Fatalf("Open %d: content differs", size)
		}
	}
	if _, err := s.Ingest(ctx, bytes.NewReader([]byte("short")), 10); err == nil {
		t.Error("Ingest of a short reader succeeded")
	}
	wrong := digest.FromString("something else")
	if err := s.Put(ctx, wrong, bytes.NewReader([]byte("abc")), 3); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Put with a wrong digest: err = %v, want ErrDigestMismatch", err)
	}
	if s.Has(wrong) {
		t.Error("a blob with a wrong digest was published")
	}
	if _, err := s.Open(ctx, wrong); !errors.Is(err, ErrPayloadNotFound) {
		t.Errorf("Open missing: err = %v, want ErrPayloadNotFound", err)
	}
	left, _ := os.ReadDir(filepath.Join(s.Root(), "tmp"))
	if len(left) != 0 {
		t.Errorf("%d temporary files left behind", len(left))
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(mkTar(f, tar.FormatPAX, sampleFiles()...))
	f.Add(mkTar(f, tar.FormatGNU, sampleFiles()...))
	f.Add(mkTar(f, tar.FormatUSTAR, sampleFiles()...))
	f.Add([]byte{})
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		store := memStore{}
		var skel bytes.Buffer
		st, err := Disassemble(context.Background(), bytes.NewReader(data), store, &skel)
		if err != nil {
			if !errors.Is(err, ErrMalformedTar) {
				t.Fatalf("Disassemble: unexpected error class: %v", err)
			}
			return
		}
		var out bytes.Buffer
		d, err := Assemble(context.Background(), bytes.NewReader(skel.Bytes()), store, &out)
		if err != nil {
			t.Fatalf("Assemble: %v", err)
		}
		if d != st.DiffID || !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("round trip differs")
		}
		if err := Walk(bytes.NewReader(skel.Bytes()), func(File) error { return nil }); err != nil {
			t.Fatalf("Walk of a skeleton we wrote: %v", err)
		}
	})
}

func FuzzSkeletonReader(f *testing.F) {
	data := mkTar(f, tar.FormatPAX, sampleFiles()...)
	store := memStore{}
	var skel bytes.Buffer
	if _, err := Disassemble(context.Background(), bytes.NewReader(data), store, &skel); err != nil {
		f.Fatal(err)
	}
	f.Add(skel.Bytes())
	f.Add(skeletonMagic[:])
	f.Fuzz(func(t *testing.T, s []byte) {
		// Hostile skeletons must fail cleanly, with bounded memory, never panic.
		_, _ = Assemble(context.Background(), bytes.NewReader(s), store, io.Discard)
		_ = Walk(bytes.NewReader(s), func(File) error { return nil })
	})
}
