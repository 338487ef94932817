package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/skiff-dev/skiff/internal/tartest"
)

// TestRoundTripCases round-trips every tricky case of the seeded generator,
// for several seeds, and the fixtures made by GNU tar, bsdtar and busybox.
func TestRoundTripCases(t *testing.T) {
	var cases []tartest.Case
	for seed := int64(1); seed <= 3; seed++ {
		for _, c := range tartest.Cases(seed) {
			c.Name = c.Name + "/seed" + string(rune('0'+seed))
			cases = append(cases, c)
		}
	}
	fixtures, err := tartest.Fixtures()
	if err != nil {
		t.Fatalf("fixtures: %v", err)
	}
	if len(fixtures) < 10 {
		t.Fatalf("only %d fixtures found", len(fixtures))
	}
	cases = append(cases, fixtures...)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			st, skel, _ := roundTrip(t, c.Data)
			// The walker must see what archive/tar sees, where archive/tar
			// reads the case (sparse entries differ on purpose: our payload
			// is the stored form, archive/tar expands it).
			if st.Sparse == 0 && archiveTarReads(c.Data) {
				compareWithArchiveTar(t, c.Data, skel)
			}
		})
	}
}

func archiveTarReads(data []byte) bool {
	tr := tartestReader(data)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return false
		}
	}
}

func TestSparseAndDuplicatesFlagged(t *testing.T) {
	for _, c := range tartest.Cases(1) {
		st, _, _ := roundTrip(t, c.Data)
		switch {
		case bytes.HasPrefix([]byte(c.Name), []byte("sparse-")) && st.Sparse == 0:
			t.Errorf("%s: no sparse entry flagged", c.Name)
		case c.Name == "duplicate-paths" && st.DuplicatePaths == 0:
			t.Errorf("%s: no duplicate path counted", c.Name)
		}
	}
}

// TestMalformedCases: every malformed stream is either rejected with
// ErrMalformedTar or rebuilt exactly; never a panic, never a wrong tar.
func TestMalformedCases(t *testing.T) {
	for _, c := range tartest.Malformed(1) {
		t.Run(c.Name, func(t *testing.T) {
			store := memStore{}
			var skel bytes.Buffer
			_, err := Disassemble(context.Background(), bytes.NewReader(c.Data), store, &skel)
			if err != nil {
				if !errors.Is(err, ErrMalformedTar) {
					t.Fatalf("err = %v, want ErrMalformedTar", err)
				}
				t.Logf("rejected: %v", err)
				return
			}
			var out bytes.Buffer
			if _, err := Assemble(context.Background(), &skel, store, &out); err != nil || !bytes.Equal(out.Bytes(), c.Data) {
				t.Fatalf("accepted but not rebuilt exactly: %v", err)
			}
		})
	}
}

func TestRoundTripRandomLayers(t *testing.T) {
	for _, size := range []int64{64 << 10, 4 << 20} {
		var buf bytes.Buffer
		if err := tartest.Layer(&buf, size, size); err != nil {
			t.Fatal(err)
		}
		_, skel, _ := roundTrip(t, buf.Bytes())
		compareWithArchiveTar(t, buf.Bytes(), skel)
	}
}

func tartestReader(data []byte) *tar.Reader { return tar.NewReader(bytes.NewReader(data)) }
