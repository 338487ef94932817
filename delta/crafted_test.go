package delta

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
)

// craftKey signs every crafted delta, so each goes through the signature
// check as a device's would and fails on what the case broke.
var craftKey = seededKey(61)

// crafted is a delta built from a real one by taking it apart and
// re-serializing it, signed with craftKey.
type crafted struct {
	t     *testing.T
	h     *Header
	blobs [][]byte
}

func takeApart(t *testing.T, d []byte) *crafted {
	t.Helper()
	h, err := format.ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	c := &crafted{t: t, h: h}
	off := h.BodyOffset
	for _, b := range h.Manifest.Blobs {
		c.blobs = append(c.blobs, d[off:off+b.Size])
		off += b.Size
	}
	if off != int64(len(d)) {
		t.Fatalf("delta has %d bytes after its blobs", int64(len(d))-off)
	}
	return c
}

// manifest returns a deep copy of the manifest to edit.
func (c *crafted) manifest() *Manifest {
	js, err := json.Marshal(&c.h.Manifest)
	if err != nil {
		c.t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		c.t.Fatal(err)
	}
	return &m
}

// build writes manifest m (signed) followed by blobs, as they are.
func (c *crafted) build(m *Manifest, blobs [][]byte) []byte {
	c.t.Helper()
	var out bytes.Buffer
	if _, err := format.WriteHeader(&out, m, craftKey); err != nil {
		c.t.Fatal(err)
	}
	for _, b := range blobs {
		out.Write(b)
	}
	return out.Bytes()
}

// edit returns the delta with its manifest edited and the body unchanged.
func (c *crafted) edit(fn func(m *Manifest)) []byte {
	m := c.manifest()
	fn(m)
	return c.build(m, c.blobs)
}

// body returns the delta with the manifest unchanged and the blobs
// (a copy) edited.
func (c *crafted) body(fn func(blobs [][]byte) [][]byte) []byte {
	blobs := make([][]byte, len(c.blobs))
	for i, b := range c.blobs {
		blobs[i] = bytes.Clone(b)
	}
	return c.build(&c.h.Manifest, fn(blobs))
}

// rawManifest signs and frames manifest JSON as given.
func (c *crafted) rawManifest(js []byte) []byte {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		c.t.Fatal(err)
	}
	hdr := enc.EncodeAll(js, nil)
	enc.Close()
	sig, err := sign.Sign(hdr, craftKey)
	if err != nil {
		c.t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := format.WriteFrame(&out, hdr, sig); err != nil {
		c.t.Fatal(err)
	}
	for _, b := range c.blobs {
		out.Write(b)
	}
	return out.Bytes()
}

// craftCase is one hostile delta and what Apply must say about it.
type craftCase struct {
	name  string
	delta []byte
	base  v1.Image // nil: the pair's base
	want  []error  // Apply's error must match each (errors.Is)
	msg   []string // and contain each
}

func ptr(i int) *int { return &i }

// craftedCases derives hostile deltas from good, a signed delta from base.
func craftedCases(t *testing.T, good []byte, target v1.Image, bsdiffDelta []byte) []craftCase {
	c := takeApart(t, good)
	m0 := &c.h.Manifest
	n := int64(binary.LittleEndian.Uint32(good[8:12]))
	sn := int64(len(c.h.Signature))
	if sn == 0 || len(c.blobs) < 3 {
		t.Fatalf("the tiny pair should give a signed delta with at least 3 blobs (sig %d, blobs %d)", sn, len(c.blobs))
	}
	var cases []craftCase
	add := func(name string, d []byte, want error, msg ...string) {
		cases = append(cases, craftCase{name: name, delta: d, want: []error{want}, msg: msg})
	}
	cut := func(at int64) []byte { return bytes.Clone(good[:at]) }

	// Truncation in the frame, at every blob boundary and inside every blob.
	add("truncated: empty", cut(0), ErrBadDelta, "reading magic")
	add("truncated: inside magic", cut(4), ErrBadDelta, "reading magic")
	add("truncated: inside header length", cut(10), ErrBadDelta, "reading header length")
	add("truncated: at the header", cut(12), ErrBadDelta, "header truncated")
	add("truncated: inside header", cut(12+n/2), ErrBadDelta, "header truncated")
	add("truncated: at the signature length", cut(12+n), ErrBadDelta, "reading signature length")
	add("truncated: inside signature length", cut(14+n), ErrBadDelta, "reading signature length")
	add("truncated: inside signature", cut(16+n+sn/2), ErrBadDelta, "signature truncated")
	off := c.h.BodyOffset
	for i, b := range c.blobs {
		add("truncated: at blob "+strconv.Itoa(i), cut(off), ErrCorrupt, "blob "+strconv.Itoa(i), "truncated")
		add("truncated: inside blob "+strconv.Itoa(i), cut(off+int64(len(b))/2), ErrCorrupt, "blob "+strconv.Itoa(i), "truncated")
		off += int64(len(b))
	}
	add("truncated: last byte", cut(int64(len(good)-1)), ErrCorrupt, "blob "+strconv.Itoa(len(c.blobs)-1), "truncated")
	add("extra trailing byte", append(bytes.Clone(good), 0), ErrBadDelta, "bytes after the last blob")
	add("extra trailing blob", append(bytes.Clone(good), c.blobs[len(c.blobs)-1]...), ErrBadDelta, "bytes after the last blob")

	// Frame fields.
	withByte := func(i int, v byte) []byte { d := bytes.Clone(good); d[i] = v; return d }
	add("unknown container version", withByte(7, 2), ErrBadDelta, "format version 2")
	add("not a delta", withByte(0, 'X'), ErrBadDelta, "not a skiff delta")
	huge := bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge[8:], 0xffffffff)
	add("header length over the limit", huge, ErrLimit, "header of 4294967295 bytes")
	huge = bytes.Clone(good)
	binary.LittleEndian.PutUint32(huge[12+n:], 1<<20)
	add("signature length over the limit", huge, ErrLimit, "signature of 1048576 bytes")
	tampered := bytes.Clone(good)
	tampered[12+n/2] ^= 1
	add("header altered after signing", tampered, sign.ErrBadSignature, "signature")
	add("header is not zstd", c.rawManifestFrame([]byte("not a zstd frame at all")), ErrBadDelta, "manifest")

	// Manifest: versions, unknown fields and encoders.
	add("unknown manifest version", c.edit(func(m *Manifest) { m.Version = format.MaxVersion + 1 }), ErrBadDelta, fmt.Sprintf("manifest version %d", format.MaxVersion+1))
	add("a pack in a version 3 manifest", c.edit(func(m *Manifest) { m.Version = 3 }), ErrBadDelta, "out of order")
	add("manifest version 0", c.edit(func(m *Manifest) { m.Version = 0 }), ErrBadDelta, "manifest version 0")
	js, _ := json.Marshal(m0)
	add("unknown manifest field", c.rawManifest(bytes.Replace(js, []byte(`{"version":1,`), []byte(`{"version":1,"extract_to":"/etc",`), 1)),
		ErrBadDelta, `unknown field "extract_to"`)
	add("manifest is not JSON", c.rawManifest([]byte("{]")), ErrBadDelta, "manifest")
	last := len(m0.Ops) - 1
	add("unknown encoder", c.edit(func(m *Manifest) { m.Ops[last].Encoder = "lzma" }), ErrBadDelta, `unknown encoder "lzma"`)
	add("unknown coder", c.edit(func(m *Manifest) { m.Ops[0].Coder = "xz" }), ErrBadDelta, `coder "xz"`)
	add("target config altered", c.edit(func(m *Manifest) { m.Target.Config = append(m.Target.Config, ' ') }), ErrCorrupt, "target config does not hash")

	// Another base.
	other := digest.FromString("another image")
	add("delta for another config", c.edit(func(m *Manifest) { m.Base.ConfigDigest = other }), ErrBaseMismatch, "the delta needs image "+other.String())
	add("delta for another diff_id", c.edit(func(m *Manifest) { m.Base.DiffIDs[1] = other }), ErrBaseMismatch, "its layer 1 is", "the delta needs "+other.String())
	add("delta for more base layers", c.edit(func(m *Manifest) { m.Base.DiffIDs = append(m.Base.DiffIDs, other) }), ErrBaseMismatch, "(3 layers)")
	add("delta for fewer base layers", c.edit(func(m *Manifest) { m.Base.DiffIDs = m.Base.DiffIDs[:1] }), ErrBaseMismatch, "(1 layers)")
	add("delta for a base with more payloads", c.edit(func(m *Manifest) { m.Base.Payloads++ }), ErrBaseMismatch, "the delta expects 5")
	cases = append(cases, craftCase{name: "applied to the target instead of the base", delta: good, base: target,
		want: []error{ErrBaseMismatch}, msg: []string{"the base given is"}})

	// Indices out of range, negative values.
	add("op base index out of range", c.edit(func(m *Manifest) { m.Ops[0].Base = m.Base.Payloads }), ErrBadDelta, "base payload 4 out of range")
	add("op base index negative", c.edit(func(m *Manifest) { m.Ops[0].Base = -2 }), ErrBadDelta, "base payload -2 out of range")
	add("op blob index out of range", c.edit(func(m *Manifest) { m.Ops[0].Blob = 7 }), ErrBadDelta, "op 0: blob 7 out of range (3 blobs)")
	add("op blob index negative", c.edit(func(m *Manifest) { m.Ops[0].Blob = -1 }), ErrBadDelta, "op 0: blob -1 out of range")
	add("base layer index out of range", c.edit(func(m *Manifest) { m.Layers[0].BaseLayer = ptr(2) }), ErrBadDelta, "layer 0: base layer 2")
	add("base layer index negative", c.edit(func(m *Manifest) { m.Layers[0].BaseLayer = ptr(-1) }), ErrBadDelta, "layer 0: base layer -1")
	add("base layer is another layer", c.edit(func(m *Manifest) { m.Layers[0].BaseLayer = ptr(1) }), ErrBadDelta, "layer 0: base layer 1 is not the same layer")
	add("skeleton blob out of range", c.edit(func(m *Manifest) { m.Layers[1].Skeleton = ptr(9) }), ErrBadDelta, "layer 1: skeleton blob 9 out of range")
	add("skeleton blob negative", c.edit(func(m *Manifest) { m.Layers[1].Skeleton = ptr(-1) }), ErrBadDelta, "layer 1: skeleton blob -1 out of range")
	add("dictionary layer out of range", c.edit(func(m *Manifest) { m.Layers[1].DictLayer = 2 }), ErrBadDelta, "layer 1: dictionary layer 2 out of range")
	add("dictionary layer negative", c.edit(func(m *Manifest) { m.Layers[1].DictLayer = -2 }), ErrBadDelta, "layer 1: dictionary layer -2 out of range")
	add("layer with both base and skeleton", c.edit(func(m *Manifest) { m.Layers[1].BaseLayer = ptr(1) }), ErrBadDelta, "layer 1 needs exactly one of")
	add("layer with neither base nor skeleton", c.edit(func(m *Manifest) { m.Layers[0].BaseLayer = nil }), ErrBadDelta, "layer 0 needs exactly one of")
	add("more layers than diff_ids", c.edit(func(m *Manifest) { m.Layers = append(m.Layers, m.Layers[0]) }), ErrBadDelta, "3 layers for 2 target diff_ids")
	add("base payload count negative", c.edit(func(m *Manifest) { m.Base.Payloads = -1 }), ErrBadDelta, "payloads -1")
	add("layer size negative", c.edit(func(m *Manifest) { m.Layers[1].Size = -1; m.Limits.TotalOutput = m.Layers[0].Size - 1 }),
		ErrBadDelta, "layer 1 has negative size")
	add("blob size negative", c.edit(func(m *Manifest) { m.Blobs[1].Size = -1 }), ErrBadDelta, "blob 1: digest")
	add("window negative", c.edit(func(m *Manifest) { m.Limits.MaxWindow = -1 }), ErrLimit, "zstd window of -1 bytes")
	add("max payload negative", c.edit(func(m *Manifest) { m.Limits.MaxPayload = -1 }), ErrBadDelta, "max_payload -1")

	// Declared sizes that are not the real ones.
	add("blob declared larger", c.edit(func(m *Manifest) { m.Blobs[2].Size++ }), ErrCorrupt, "blob 2", "truncated")
	add("blob declared smaller", c.edit(func(m *Manifest) { m.Blobs[2].Size-- }), ErrCorrupt, "blob 2")
	add("skeleton blob declared larger", c.edit(func(m *Manifest) { m.Blobs[0].Size++ }), ErrCorrupt, "blob 0")
	add("skeleton blob declared smaller", c.edit(func(m *Manifest) { m.Blobs[0].Size-- }), ErrCorrupt, "blob 0")
	add("layer declared larger", c.edit(func(m *Manifest) { m.Layers[1].Size++; m.Limits.TotalOutput++ }), ErrBadDelta, "layer 1", "the delta says 39425")
	add("layer declared smaller", c.edit(func(m *Manifest) { m.Layers[1].Size--; m.Limits.TotalOutput-- }), ErrBadDelta, "layer 1", "the delta says 39423")
	add("reused layer declared larger", c.edit(func(m *Manifest) { m.Layers[0].Size++; m.Limits.TotalOutput++ }), ErrBadDelta, "layer 0", "the delta says 2049")
	add("total output not the layers' sum", c.edit(func(m *Manifest) { m.Limits.TotalOutput++ }), ErrBadDelta, "layers add up to")
	add("max payload below the real one", c.edit(func(m *Manifest) { m.Limits.MaxPayload, m.Limits.MaxExpanded = 100, 100 }), ErrLimit, "over the declared 100")
	add("max skeleton below the real one", c.edit(func(m *Manifest) { m.Limits.MaxSkeleton = 1000 }), ErrLimit, "skeleton", "over the declared")
	add("window below the real one", c.edit(func(m *Manifest) { m.Limits.MaxWindow = 1 << 10 }), ErrLimit, "over the declared window")
	add("target diff_id another layer's", c.edit(func(m *Manifest) { m.Layers[1].DiffID = other; m.Target.DiffIDs[1] = other }), ErrCorrupt, "the target's diff_id is "+other.String())

	// Blob digests, order, duplicates and gaps.
	add("blob digest does not match its bytes", c.edit(func(m *Manifest) { m.Blobs[2].Digest = other }), ErrCorrupt, "blob 2", other.String())
	add("blob bytes altered", c.body(func(b [][]byte) [][]byte { b[2][len(b[2])/2] ^= 0x40; return b }), ErrCorrupt, "blob 2")
	add("skeleton bytes altered", c.body(func(b [][]byte) [][]byte { b[0][len(b[0])/2] ^= 0x40; return b }), ErrCorrupt, "blob 0")
	add("blob bytes duplicated", c.body(func(b [][]byte) [][]byte { return slices.Insert(b, 1, b[1]) }), ErrCorrupt, "blob 2")
	add("blob listed twice", c.build(withManifest(c, func(m *Manifest) { m.Blobs = slices.Insert(m.Blobs, 1, m.Blobs[1]) }),
		slices.Insert(slices.Clone(c.blobs), 1, c.blobs[1])), ErrBadDelta, "4 blobs, skeletons and ops use 3")
	add("blob bytes removed", c.body(func(b [][]byte) [][]byte { return slices.Delete(b, 1, 2) }), ErrCorrupt, "blob 1")
	add("blob entry removed", c.build(withManifest(c, func(m *Manifest) { m.Blobs = slices.Delete(m.Blobs, 1, 2) }),
		slices.Delete(slices.Clone(c.blobs), 1, 2)), ErrBadDelta, "op 0: blob 2 out of range (2 blobs)")
	add("blob and its op removed", c.build(withManifest(c, func(m *Manifest) {
		m.Blobs = slices.Delete(m.Blobs, 1, 2)
		m.Ops = m.Ops[:last]
		for k := range m.Ops {
			m.Ops[k].Blob--
		}
	}), slices.Delete(slices.Clone(c.blobs), 1, 2)), ErrBadDelta, "more new payloads than the 3 ops make")
	add("extra op", c.edit(func(m *Manifest) { m.Ops = slices.Insert(m.Ops, 1, m.Ops[0]) }), ErrBadDelta, "the skeletons need 4 new payloads, the delta has 5 ops")
	add("blobs swapped", c.body(func(b [][]byte) [][]byte { b[1], b[2] = b[2], b[1]; return b }), ErrCorrupt, "blob 1")
	add("blobs and their entries swapped", c.build(withManifest(c, func(m *Manifest) { m.Blobs[1], m.Blobs[2] = m.Blobs[2], m.Blobs[1] }),
		[][]byte{c.blobs[0], c.blobs[2], c.blobs[1]}), ErrCorrupt, "payload")
	add("ops swapped", c.edit(func(m *Manifest) { m.Ops[0], m.Ops[1] = m.Ops[1], m.Ops[0] }), ErrCorrupt, "payload")
	add("pack op on a group blob", c.edit(func(m *Manifest) { m.Ops[last].Blob = 2 }), ErrBadDelta, "plain zstd ops use the pack")
	add("group op on the pack blob", c.edit(func(m *Manifest) { m.Ops[0].Blob = 1 }), ErrBadDelta, "op 0: blob 1 is already")
	add("group op on the skeleton blob", c.edit(func(m *Manifest) { m.Ops[1].Blob = 0 }), ErrBadDelta, "op 1: blob 0 is already")
	add("group with a bsdiff member", c.edit(func(m *Manifest) { m.Ops[1].Encoder = EncBsdiff }), ErrBadDelta, "op 1: blob 2 is already")
	add("skeleton replaced by another valid blob", c.body(func(b [][]byte) [][]byte { b[0] = b[1]; return b }), ErrCorrupt, "blob 0")
	add("skeleton blob is garbage with its digest", replaceBlobSigned(t, c, 0, []byte("garbage, not a zstd frame")), ErrCorrupt, "skeleton of layer 1")
	add("group blob is garbage with its digest", replaceBlobSigned(t, c, 2, bytes.Repeat([]byte{0x28, 0xb5}, 40)), ErrCorrupt, "payload")

	// Ops that may not share a blob doing so (a bsdiff delta).
	cb := takeApart(t, bsdiffDelta)
	bs := slices.IndexFunc(cb.h.Manifest.Ops, func(op Op) bool { return op.Encoder == EncBsdiff })
	if bs < 0 {
		t.Fatalf("the bsdiff delta has no bsdiff op: %+v", cb.h.Manifest.Ops)
	}
	bsBlob := strconv.Itoa(cb.h.Manifest.Ops[bs].Blob)
	add("bsdiff op listed twice", cb.edit(func(m *Manifest) { m.Ops = slices.Insert(m.Ops, bs+1, m.Ops[bs]) }),
		ErrBadDelta, "op "+strconv.Itoa(bs+1)+": blob "+bsBlob+" is already")
	add("bsdiff op on the pack blob", cb.edit(func(m *Manifest) { m.Ops[bs].Blob = 1 }), ErrBadDelta, "op "+strconv.Itoa(bs)+": blob 1 is already")
	add("pack op on the bsdiff blob", cb.edit(func(m *Manifest) {
		for k := range m.Ops {
			if m.Ops[k].Encoder == EncZstd {
				m.Ops[k].Blob = m.Ops[bs].Blob
			}
		}
	}), ErrBadDelta, "plain zstd ops use the pack")
	return cases
}

// rawManifestFrame frames hdr (not a zstd frame) as a signed header.
func (c *crafted) rawManifestFrame(hdr []byte) []byte {
	sig, err := sign.Sign(hdr, craftKey)
	if err != nil {
		c.t.Fatal(err)
	}
	var out bytes.Buffer
	format.WriteFrame(&out, hdr, sig)
	for _, b := range c.blobs {
		out.Write(b)
	}
	return out.Bytes()
}

func withManifest(c *crafted, fn func(m *Manifest)) *Manifest {
	m := c.manifest()
	fn(m)
	return m
}

// replaceBlobSigned replaces blob i by b, with a manifest that declares b.
func replaceBlobSigned(t *testing.T, c *crafted, i int, b []byte) []byte {
	m := c.manifest()
	m.Blobs[i] = Blob{Digest: digest.FromBytes(b), Size: int64(len(b))}
	blobs := slices.Clone(c.blobs)
	blobs[i] = b
	return c.build(m, blobs)
}

// unsafeLayers are target layers whose entries would escape the root on
// extraction.
func unsafeLayers(t *testing.T) []struct {
	name, msg string
	layer     []byte
} {
	w := func(hdrs ...tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			data := ""
			if h.Typeflag == tar.TypeReg {
				data = "root::0:0:owned:/root:/bin/sh\n" + h.Name
			}
			h.Mode, h.Size, h.Format = 0o644, int64(len(data)), tar.FormatPAX
			if err := tw.WriteHeader(&h); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(data))
		}
		tw.Close()
		return buf.Bytes()
	}
	reg := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeReg} }
	return []struct {
		name, msg string
		layer     []byte
	}{
		{"absolute entry", `entry "/etc/passwd": path is absolute`, w(reg("app/ok"), reg("/etc/passwd"))},
		{"dot-dot entry", `entry "app/../../etc/passwd": path leaves the root`, w(reg("app/ok"), reg("app/../../etc/passwd"))},
		{"entry through an absolute symlink", `entry "app/etc/passwd": path goes through "app/etc"`,
			w(reg("app/ok"), tar.Header{Name: "app/etc", Linkname: "/etc", Typeflag: tar.TypeSymlink}, reg("app/etc/passwd"))},
		{"entry through a relative symlink", `entry "up/x": path goes through "up"`,
			w(tar.Header{Name: "up", Linkname: "../../..", Typeflag: tar.TypeSymlink}, reg("up/x"))},
		{"hard link leaving the root", `entry "app/shadow": hard link target "../etc/shadow" leaves the root`,
			w(reg("app/ok"), tar.Header{Name: "app/shadow", Linkname: "../etc/shadow", Typeflag: tar.TypeLink})},
		{"hard link to an absolute path", `entry "app/shadow": hard link target "/etc/shadow" is absolute`,
			w(reg("app/ok"), tar.Header{Name: "app/shadow", Linkname: "/etc/shadow", Typeflag: tar.TypeLink})},
	}
}

// TestCraftedDeltas: hostile and broken deltas made from a real one are
// refused with the right sentinel and a message naming the problem,
// nothing is written outside the work directory, and the heap stays
// bounded.
func TestCraftedDeltas(t *testing.T) {
	ctx := context.Background()
	base, target := tinyPair(t)
	diff := func(target v1.Image, opts Options) ([]byte, error) {
		opts.Signers = []crypto.Signer{craftKey}
		var buf bytes.Buffer
		_, err := Diff(ctx, base, target, &buf, opts)
		return buf.Bytes(), err
	}
	// The legacy cases break the blob layout of manifest versions 1-2 (a
	// pack, one blob per patch); solidCases those of version 3's streams.
	legacy := DefaultOptions()
	legacy.Solid = false
	good, err := diff(target, legacy)
	if err != nil {
		t.Fatal(err)
	}
	solid, err := diff(target, noKeep())
	if err != nil {
		t.Fatal(err)
	}
	kept, err := diff(target, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer func(old int64) { maxInterleavedTry = old }(maxInterleavedTry)
	maxInterleavedTry = -1
	columnar, err := diff(target, noKeep())
	if err != nil {
		t.Fatal(err)
	}
	maxInterleavedTry = 256 << 10
	bsOpts := legacy
	bsOpts.ZstdDict = false
	bsDelta, err := diff(target, bsOpts)
	if err != nil {
		t.Fatal(err)
	}
	trust := []ed25519.PublicKey{pubOf(craftKey)}
	// The good deltas apply: every case below differs from them only in
	// what it breaks.
	for _, d := range [][]byte{good, bsDelta, solid, kept, columnar} {
		res, err := Apply(ctx, base, bytes.NewReader(d), ApplyOptions{WorkDir: t.TempDir(), TrustedKeys: trust})
		if err != nil {
			t.Fatalf("the good delta does not apply: %v", err)
		}
		res.Close()
	}
	cases := craftedCases(t, good, target, bsDelta)
	cases = append(cases, solidCases(t, solid)...)
	cases = append(cases, columnarCases(t, columnar)...)
	cases = append(cases, keepCases(t, kept)...)

	// Targets with unsafe paths: diff refuses them; forced through the
	// test hook, Apply refuses the delta.
	shared := imagetest.LayerTar(t, imagetest.File{Name: "etc/os-release", Data: "ID=skiff\nVERSION=1\n"})
	for _, u := range unsafeLayers(t) {
		evil := imagetest.Image(t, shared, u.layer)
		t.Run("diff refuses/"+u.name, func(t *testing.T) {
			_, err := diff(evil, DefaultOptions())
			if !errors.Is(err, layerfs.ErrUnsafePath) || !strings.Contains(err.Error(), "layer 1") || !strings.Contains(err.Error(), u.msg) {
				t.Fatalf("diff: err = %v, want ErrUnsafePath naming layer 1 and saying %s", err, u.msg)
			}
		})
		opts := DefaultOptions()
		opts.allowUnsafePaths = true
		d, err := diff(evil, opts)
		if err != nil {
			t.Fatalf("%s: diff with the check off: %v", u.name, err)
		}
		cases = append(cases, craftCase{name: "unsafe target path: " + u.name, delta: d,
			want: []error{ErrBadDelta, layerfs.ErrUnsafePath}, msg: []string{"layer 1", u.msg}})
	}

	rejected := 0
	for _, tc := range cases {
		ok := t.Run(tc.name, func(t *testing.T) {
			b := tc.base
			if b == nil {
				b = base
			}
			check := func(err error) {
				t.Helper()
				if err == nil {
					t.Fatal("Apply accepted the delta")
				}
				for _, w := range tc.want {
					if !errors.Is(err, w) {
						t.Errorf("err = %v, want it to match %v", err, w)
					}
				}
				for _, s := range tc.msg {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("err = %q, want it to say %q", err, s)
					}
				}
			}
			// With a work directory of the caller's: nothing is written
			// beside it.
			parent := t.TempDir()
			work := filepath.Join(parent, "work")
			if err := os.Mkdir(work, 0o755); err != nil {
				t.Fatal(err)
			}
			before := listTree(t, parent)
			peak := watchHeap(t)
			res, err := Apply(ctx, b, bytes.NewReader(tc.delta), ApplyOptions{WorkDir: work, TrustedKeys: trust})
			if max := peak(); max > 96<<20 {
				t.Errorf("heap peaked at %d MiB", max>>20)
			}
			if err == nil {
				res.Close()
			}
			check(err)
			for _, p := range listTree(t, parent) {
				if !slices.Contains(before, p) && p != "work" && !strings.HasPrefix(p, "work/") {
					t.Errorf("Apply wrote %s outside its work directory", p)
				}
			}
			// With a work directory of Apply's own: it is removed.
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			_, err = Apply(ctx, b, bytes.NewReader(tc.delta), ApplyOptions{TrustedKeys: trust})
			check(err)
			if left := listTree(t, tmp); len(left) > 0 {
				t.Errorf("a failed Apply left %v in its temporary directory's parent", left)
			}
			if !t.Failed() {
				t.Logf("refused: %v", err)
			}
		})
		if ok {
			rejected++
		}
	}
	t.Logf("crafted deltas rejected: %d of %d", rejected, len(cases))
}

// listTree lists every path under dir, relative and slash-separated.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// columnarCases derives hostile deltas from good, a version 5 delta
// whose one stream is columnar.
func columnarCases(t *testing.T, good []byte) []craftCase {
	c := takeApart(t, good)
	if len(c.h.Manifest.Streams) != 1 || len(c.h.Manifest.Streams[0].Regions) != format.NumRegions {
		t.Fatalf("want one columnar stream: %+v", c.h.Manifest.Streams)
	}
	regions := c.h.Manifest.Streams[0].Regions
	var cases []craftCase
	add := func(name string, d []byte, want error, msg ...string) {
		cases = append(cases, craftCase{name: "columnar: " + name, delta: d, want: []error{want}, msg: msg})
	}
	edit := func(fn func(r []int64, m *Manifest)) []byte {
		return c.edit(func(m *Manifest) { fn(m.Streams[0].Regions, m) })
	}
	// The first region with bytes and the next one after it.
	first := slices.IndexFunc(regions, func(n int64) bool { return n > 0 })
	add("in a version 4 manifest", edit(func(_ []int64, m *Manifest) { m.Version, m.Limits.Scratch = 4, 0 }), ErrBadDelta, "needs manifest version 5")
	add("a region missing", c.edit(func(m *Manifest) { m.Streams[0].Regions = m.Streams[0].Regions[1:] }), ErrBadDelta, "regions")
	add("a region negative", edit(func(r []int64, _ *Manifest) { r[0] = -1 }), ErrBadDelta, "region 0")
	add("regions over the output", edit(func(r []int64, m *Manifest) { r[1] = m.Limits.TotalOutput; r[2] = m.Limits.TotalOutput }), ErrLimit, "spill")
	add("a byte moved between regions", edit(func(r []int64, _ *Manifest) { r[first]--; r[first+1]++ }), ErrCorrupt)
	add("regions longer than the stream", edit(func(r []int64, _ *Manifest) { r[first] += 1000 }), ErrCorrupt)
	add("literals declared longer", edit(func(r []int64, _ *Manifest) { r[format.RegionLiterals]++ }), ErrCorrupt)
	add("literals declared shorter", edit(func(r []int64, _ *Manifest) { r[format.RegionLiterals]-- }), ErrCorrupt)
	add("read as interleaved", c.edit(func(m *Manifest) { m.Streams[0].Regions = nil }), ErrCorrupt)
	return cases
}

// keepCases derives hostile deltas from good, a version 6 delta of the
// tiny pair: base layer 0's payload is read by target layer 1 (a copy),
// base layer 1's are the ops' bases.
func keepCases(t *testing.T, good []byte) []craftCase {
	c := takeApart(t, good)
	if c.h.Manifest.Version != 6 || len(c.h.Manifest.Base.Keep) != 2 || c.h.Manifest.Base.Keep[0] == "" || c.h.Manifest.Base.Keep[1] == "" {
		t.Fatalf("want a version 6 delta keeping payloads of both base layers: version %d, keep %q", c.h.Manifest.Version, c.h.Manifest.Base.Keep)
	}
	var cases []craftCase
	add := func(name string, d []byte, want error, msg ...string) {
		cases = append(cases, craftCase{name: "keep: " + name, delta: d, want: []error{want}, msg: msg})
	}
	setKeep := func(i int, b []byte) []byte {
		return c.edit(func(m *Manifest) { m.Base.Keep[i] = base64.RawStdEncoding.EncodeToString(b) })
	}
	add("in a version 5 manifest", c.edit(func(m *Manifest) { m.Version = 5 }), ErrBadDelta, "needs manifest version 6")
	add("one base layer short", c.edit(func(m *Manifest) { m.Base.Keep = m.Base.Keep[:1] }), ErrBadDelta, "1 entries for 2 base layers")
	add("not base64", c.edit(func(m *Manifest) { m.Base.Keep[0] = "!!" }), ErrBadDelta, "base keep 0")
	add("padded", c.edit(func(m *Manifest) { m.Base.Keep[0] += "==" }), ErrBadDelta, "base keep 0")
	add("a zero byte at the end", setKeep(0, []byte{1, 0}), ErrBadDelta, "ends in a zero byte")
	add("a payload the layer lacks", setKeep(0, []byte{1, 0, 0, 0x80}), ErrBadDelta, "marks payload 31 of base layer 0, which has 1")
	add("a reused file not kept", setKeep(0, nil), ErrBadDelta, "target layer 1 reads base payload", "does not keep")
	add("ops' bases not kept", setKeep(1, nil), ErrBadDelta, "reads base payload", "does not keep")
	return cases
}

// solidCases derives hostile deltas from good, a version 3 delta with one
// solid stream (blob 1, after the skeleton).
func solidCases(t *testing.T, good []byte) []craftCase {
	c := takeApart(t, good)
	if len(c.h.Manifest.Streams) != 1 || c.h.Manifest.Streams[0].Blob != 1 || len(c.h.Manifest.Streams[0].Ops) < 2 {
		t.Fatalf("the tiny pair should give one stream of 2 ops or more in blob 1: %+v", c.h.Manifest.Streams)
	}
	var cases []craftCase
	add := func(name string, d []byte, want error, msg ...string) {
		cases = append(cases, craftCase{name: "stream: " + name, delta: d, want: []error{want}, msg: msg})
	}
	edit := func(fn func(s *Stream, m *Manifest)) []byte {
		return c.edit(func(m *Manifest) { fn(&m.Streams[0], m) })
	}
	add("unknown skeleton codec", c.edit(func(m *Manifest) {
		for i := range m.Layers {
			if m.Layers[i].Skeleton != nil {
				m.Layers[i].SkeletonCodec = "lz4"
			}
		}
	}), ErrBadDelta, "skeleton codec")
	add("unknown codec", edit(func(s *Stream, _ *Manifest) { s.Codec = "lz4" }), ErrBadDelta, `unknown codec "lz4"`)
	add("window over the declared limit", edit(func(s *Stream, m *Manifest) { s.Window = m.Limits.MaxWindow * 2 }), ErrLimit, "window")
	add("no ops", edit(func(s *Stream, _ *Manifest) { s.Ops = nil }), ErrBadDelta, "has no ops")
	add("op listed twice", edit(func(s *Stream, _ *Manifest) { s.Ops = append(s.Ops, s.Ops[0]) }), ErrBadDelta, "already in a stream")
	add("op out of range", edit(func(s *Stream, m *Manifest) { s.Ops[0] = len(m.Ops) }), ErrBadDelta, "out of range")
	add("op left out", edit(func(s *Stream, _ *Manifest) { s.Ops = s.Ops[1:] }), ErrBadDelta, "belongs to a stream")
	add("members swapped", edit(func(s *Stream, _ *Manifest) { s.Ops[0], s.Ops[1] = s.Ops[1], s.Ops[0] }), ErrCorrupt)
	add("in a version 2 manifest", edit(func(_ *Stream, m *Manifest) { m.Version, m.Limits.Scratch = 2, 0 }), ErrBadDelta, "version 3")
	add("blob out of order", edit(func(s *Stream, _ *Manifest) { s.Blob = 0 }), ErrBadDelta, "out of order")
	add("stream blob truncated", c.body(func(b [][]byte) [][]byte { b[1] = b[1][:len(b[1])/2]; return b }), ErrCorrupt)
	add("stream blob altered", c.body(func(b [][]byte) [][]byte { b[1][len(b[1])/2] ^= 0x40; return b }), ErrCorrupt)
	add("new executable in a version 3 manifest", edit(func(s *Stream, m *Manifest) {
		m.Version, m.Limits.Scratch = 3, 0
		m.Ops[s.Ops[0]].Encoder, m.Ops[s.Ops[0]].Base = EncBsdiffX86, -1
	}), ErrBadDelta, "version 4")
	// Lean skeletons (version 5).
	rebuilt := -1
	for i, l := range c.h.Manifest.Layers {
		if l.Skeleton != nil {
			rebuilt = i
		}
	}
	if c.h.Manifest.Version < 5 || rebuilt < 0 || c.h.Manifest.Layers[rebuilt].DictLayer < 0 {
		t.Fatalf("the tiny pair should make a version 5 or later delta with a lean skeleton against a base layer: version %d, layer %d", c.h.Manifest.Version, rebuilt)
	}
	add("lean skeleton in a version 4 manifest", c.edit(func(m *Manifest) { m.Version, m.Limits.Scratch = 4, 0 }), ErrCorrupt, "lean record")
	add("skeleton delta against no base layer in version 4", c.edit(func(m *Manifest) {
		m.Version, m.Layers[rebuilt].DictLayer, m.Limits.Scratch = 4, -1, 0
	}), ErrBadDelta, "needs manifest version 5")
	add("skeleton delta read against no base layer", c.edit(func(m *Manifest) {
		m.Layers[rebuilt].DictLayer, m.Layers[rebuilt].SkeletonPlain = -1, true
	}), ErrCorrupt, "skeleton of layer")
	add("scratch space over the free space", c.edit(func(m *Manifest) { m.Limits.Scratch = 1 << 60 }), ErrLimit, "scratch space", "is free")
	add("scratch space declared in version 4", c.edit(func(m *Manifest) { m.Version = 4 }), ErrBadDelta, "a version 5 limit")
	add("made payload without its op", edit(func(s *Stream, m *Manifest) {
		last := len(m.Ops) - 1
		i := slices.Index(s.Ops, last)
		if i < 0 {
			t.Fatal("the last op is not in the stream")
		}
		s.Ops = slices.Delete(s.Ops, i, i+1)
		m.Ops = m.Ops[:last]
	}), ErrBadDelta, "new payloads")
	add("plain member read as a new executable", edit(func(s *Stream, m *Manifest) {
		for _, k := range s.Ops {
			if m.Ops[k].Encoder == EncZstd {
				m.Ops[k].Encoder = EncBsdiffX86
				return
			}
		}
		t.Fatal("the tiny pair's stream has no plain member")
	}), ErrCorrupt)
	if c.h.Manifest.Streams[0].Codec == CodecBrotli {
		add("brotli window smaller than the stream's", edit(func(s *Stream, _ *Manifest) { s.Window = 1 << 10 }), ErrCorrupt, "window")
	}
	return cases
}
