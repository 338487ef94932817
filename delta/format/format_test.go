package format

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// minimal is the smallest valid manifest: a target that is its base's
// one layer under another config.
func minimal() *Manifest {
	cfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	layer := digest.FromString("layer")
	zero := 0
	return &Manifest{
		Version: 1,
		Base:    Base{ConfigDigest: digest.FromString("base config"), DiffIDs: []digest.Digest{layer}},
		Target:  Target{Config: cfg, ConfigDigest: digest.FromBytes(cfg), DiffIDs: []digest.Digest{layer}},
		Limits:  Limits{TotalOutput: 1024},
		Layers:  []Layer{{DiffID: layer, Size: 1024, BaseLayer: &zero}},
	}
}

// TestHeaderRoundTrip: what WriteHeader writes, ReadHeader reads back
// the same, leaving the reader at the body.
func TestHeaderRoundTrip(t *testing.T) {
	m := minimal()
	var buf bytes.Buffer
	n, err := WriteHeader(&buf, m)
	if err != nil {
		t.Fatal(err)
	}
	buf.WriteString("body")
	r := bytes.NewReader(buf.Bytes())
	h, err := ReadHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.BodyOffset != n || r.Len() != len("body") {
		t.Errorf("body at %d (%d bytes left), want %d (4 left)", h.BodyOffset, r.Len(), n)
	}
	if h.Manifest.Target.ConfigDigest != m.Target.ConfigDigest || len(h.Manifest.Layers) != 1 || len(h.Signature) != 0 {
		t.Errorf("read back %+v", h.Manifest)
	}
	if _, _, err := ReadVerifiedHeader(bytes.NewReader(buf.Bytes()), Trust{}); err == nil {
		t.Error("an unsigned header verified with no trusted keys")
	}
	if _, _, err := ReadVerifiedHeader(bytes.NewReader(buf.Bytes()), Trust{AllowUnsigned: true}); err != nil {
		t.Errorf("unsigned header with AllowUnsigned: %v", err)
	}
}

// TestValidate: each check refuses what it is there for, with its
// sentinel and a message naming the field.
func TestValidate(t *testing.T) {
	if err := minimal().Validate(); err != nil {
		t.Fatalf("minimal manifest: %v", err)
	}
	one := 1
	cases := []struct {
		name string
		edit func(m *Manifest)
		want error
		msg  string
	}{
		{"version 0", func(m *Manifest) { m.Version = 0 }, ErrBadDelta, "manifest version 0"},
		{"unknown version", func(m *Manifest) { m.Version = MaxVersion + 1 }, ErrBadDelta, "manifest version"},
		{"config altered", func(m *Manifest) { m.Target.Config = append(m.Target.Config, ' ') }, ErrCorrupt, "does not hash"},
		{"window over the limit", func(m *Manifest) { m.Limits.MaxWindow = MaxWindowLimit + 1 }, ErrLimit, "window"},
		{"bad diff_id", func(m *Manifest) { m.Base.DiffIDs[0] = "sha256:xyz" }, ErrBadDelta, "diff_id"},
		{"layer of another base layer", func(m *Manifest) { m.Layers[0].BaseLayer = &one }, ErrBadDelta, "base layer 1"},
		{"sizes do not add up", func(m *Manifest) { m.Limits.TotalOutput++ }, ErrBadDelta, "add up"},
		{"a blob nobody uses", func(m *Manifest) { m.Blobs = []Blob{{Digest: digest.FromString("x"), Size: 1}} }, ErrBadDelta, "1 blobs"},
		{"unknown encoder", func(m *Manifest) { m.Ops = []Op{{Encoder: "lzma"}} }, ErrBadDelta, `unknown encoder "lzma"`},
		{"stream before version 3", func(m *Manifest) { m.Streams = []Stream{{Codec: CodecZstd}} }, ErrBadDelta, "version 3"},
		{"names before version 5", func(m *Manifest) { m.Target.Names = []string{"app:1"} }, ErrBadDelta, "version 5"},
		{"a bad name", func(m *Manifest) { m.Version, m.Target.Names = 5, []string{"App:"} }, ErrBadDelta, `target name "App:"`},
		{"distribution of no layers", func(m *Manifest) { m.Target.Distribution = &Distribution{} }, ErrBadDelta, "distribution has 0 layers"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := minimal()
			c.edit(m)
			err := m.Validate()
			if !errors.Is(err, c.want) || err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("err = %v, want %v saying %q", err, c.want, c.msg)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	var buf bytes.Buffer
	if _, err := WriteHeader(&buf, minimal()); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add(magic[:])
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ReadHeader(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadDelta) && !errors.Is(err, ErrLimit) && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// What it accepts validates, and writes back to a header it
		// accepts again.
		if err := h.Manifest.Validate(); err != nil {
			t.Fatal(err)
		}
		var again bytes.Buffer
		if _, err := WriteHeader(&again, &h.Manifest); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadHeader(bytes.NewReader(again.Bytes())); err != nil {
			t.Fatalf("rewritten header refused: %v", err)
		}
	})
}
