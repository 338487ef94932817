package delta

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
	"github.com/skiff-dev/skiff/internal/example"
)

func seededKey(seed int64) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	rand.New(rand.NewSource(seed)).Read(s)
	return ed25519.NewKeyFromSeed(s)
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// reframe rebuilds delta d with its header bytes and signature block
// replaced (nil: keep d's).
func reframe(t *testing.T, d, raw, sig []byte) []byte {
	t.Helper()
	h, err := format.ReadHeader(bytes.NewReader(d))
	if err != nil {
		t.Fatal(err)
	}
	if raw == nil {
		raw = h.Raw
	}
	if sig == nil {
		sig = h.Signature
	}
	var out bytes.Buffer
	if _, err := format.WriteFrame(&out, raw, sig); err != nil {
		t.Fatal(err)
	}
	out.Write(d[h.BodyOffset:])
	return out.Bytes()
}

// untouchedImage fails the test when anything of the base is read.
type untouchedImage struct {
	t *testing.T
	v1.Image
}

func (u untouchedImage) touched(what string) {
	u.t.Errorf("the base's %s was read before the signature was checked", what)
}
func (u untouchedImage) ConfigName() (v1.Hash, error) {
	u.touched("config name")
	return u.Image.ConfigName()
}
func (u untouchedImage) RawConfigFile() ([]byte, error) {
	u.touched("config")
	return u.Image.RawConfigFile()
}
func (u untouchedImage) ConfigFile() (*v1.ConfigFile, error) {
	u.touched("config")
	return u.Image.ConfigFile()
}
func (u untouchedImage) Layers() ([]v1.Layer, error) {
	u.touched("layers")
	return u.Image.Layers()
}
func (u untouchedImage) Manifest() (*v1.Manifest, error) {
	u.touched("manifest")
	return u.Image.Manifest()
}
func (u untouchedImage) RawManifest() ([]byte, error) {
	u.touched("manifest")
	return u.Image.RawManifest()
}
func (u untouchedImage) Digest() (v1.Hash, error) {
	u.touched("digest")
	return u.Image.Digest()
}
func (u untouchedImage) MediaType() (types.MediaType, error) {
	u.touched("media type")
	return u.Image.MediaType()
}
func (u untouchedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	u.touched("layers")
	return u.Image.LayerByDiffID(h)
}
func (u untouchedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	u.touched("layers")
	return u.Image.LayerByDigest(h)
}

func TestApplySignatures(t *testing.T) {
	ctx := context.Background()
	oldImg, newImg, err := example.Images()
	if err != nil {
		t.Fatal(err)
	}
	oldKey, newKey, other := seededKey(1), seededKey(2), seededKey(3)
	diff := func(from, to v1.Image, signers ...crypto.Signer) []byte {
		t.Helper()
		opts := DefaultOptions()
		opts.Level, opts.BrotliQuality = 1, 0
		opts.Signers = signers
		var buf bytes.Buffer
		if _, err := Diff(ctx, from, to, &buf, opts); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	unsigned := diff(oldImg, newImg)
	signed := diff(oldImg, newImg, oldKey)
	both := diff(oldImg, newImg, oldKey, newKey)
	reverse := diff(newImg, oldImg, oldKey)

	hs, err := format.ReadHeader(bytes.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	hr, err := format.ReadHeader(bytes.NewReader(reverse))
	if err != nil {
		t.Fatal(err)
	}
	hu, err := format.ReadHeader(bytes.NewReader(unsigned))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hs.Raw, hu.Raw) || !bytes.Equal(signed[hs.BodyOffset:], unsigned[hu.BodyOffset:]) {
		t.Fatal("signing changed the header or the body")
	}
	badSig := bytes.Clone(hs.Signature)
	badSig[len(badSig)-5] ^= 0x10
	flippedRaw := bytes.Clone(hs.Raw)
	flippedRaw[len(flippedRaw)/2] ^= 1
	short := hs.Signature[:len(hs.Signature)-1]

	trust := func(keys ...ed25519.PrivateKey) []ed25519.PublicKey {
		var out []ed25519.PublicKey
		for _, k := range keys {
			out = append(out, pubOf(k))
		}
		return out
	}
	tests := []struct {
		name          string
		delta         []byte
		trusted       []ed25519.PublicKey
		allowUnsigned bool
		wantBy        string
		wantErr       error
	}{
		{"signed, trusted", signed, trust(oldKey), false, sign.IDOf(pubOf(oldKey)).String(), nil},
		{"unsigned refused by default", unsigned, nil, false, "", sign.ErrUnsigned},
		{"unsigned refused with trusted keys", unsigned, trust(oldKey), false, "", sign.ErrUnsigned},
		{"unsigned allowed", unsigned, nil, true, "", nil},
		{"unsigned allowed with trusted keys", unsigned, trust(oldKey), true, "", nil},
		{"signed, no trusted keys", signed, nil, false, "", sign.ErrUntrustedKey},
		{"signed, unverifiable but allowed", signed, nil, true, "", nil},
		{"wrong key", signed, trust(other), false, "", sign.ErrUntrustedKey},
		{"wrong key, even with allow-unsigned", signed, trust(other), true, "", sign.ErrUntrustedKey},
		{"corrupted signature", reframe(t, signed, nil, badSig), trust(oldKey), false, "", sign.ErrBadSignature},
		{"signature over another header", reframe(t, signed, nil, hr.Signature), trust(oldKey), false, "", sign.ErrBadSignature},
		{"truncated signature block", reframe(t, signed, nil, short), trust(oldKey), false, "", sign.ErrBadSignature},
		{"header byte flipped after signing", reframe(t, signed, flippedRaw, nil), trust(oldKey), false, "", sign.ErrBadSignature},
		{"two signatures, one trusted", both, trust(other, newKey), false, sign.IDOf(pubOf(newKey)).String(), nil},
		{"rotation: device trusts the old key", both, trust(oldKey), false, sign.IDOf(pubOf(oldKey)).String(), nil},
		{"rotation: device trusts the new key", both, trust(newKey), false, sign.IDOf(pubOf(newKey)).String(), nil},
		{"rotation: new key only, device still on the old", diff(oldImg, newImg, newKey), trust(oldKey), false, "", sign.ErrUntrustedKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			base := v1.Image(oldImg)
			if tc.wantErr != nil {
				base = untouchedImage{t, oldImg}
			}
			res, err := Apply(ctx, base, bytes.NewReader(tc.delta), ApplyOptions{WorkDir: work, TrustedKeys: tc.trusted, AllowUnsigned: tc.allowUnsigned})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Apply error = %v, want %v", err, tc.wantErr)
				}
				if ents, _ := os.ReadDir(work); len(ents) != 0 {
					t.Errorf("a refused delta left %d entries in the work directory", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			defer res.Close()
			if res.SignedBy != tc.wantBy {
				t.Errorf("SignedBy = %q, want %q", res.SignedBy, tc.wantBy)
			}
			want, _ := newImg.ConfigName()
			if got, err := res.Image.ConfigName(); err != nil || got != want {
				t.Errorf("image %s, want %s (%v)", got, want, err)
			}
		})
	}
}

func TestResign(t *testing.T) {
	ctx := context.Background()
	oldImg, newImg, err := example.Images()
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := seededKey(1), seededKey(2), seededKey(3)
	opts := DefaultOptions()
	opts.Level, opts.BrotliQuality, opts.Signers = 1, 0, []crypto.Signer{a}
	var buf bytes.Buffer
	if _, err := Diff(ctx, oldImg, newImg, &buf, opts); err != nil {
		t.Fatal(err)
	}
	orig := buf.Bytes()
	h0, err := format.ReadHeader(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		replace bool
		key     ed25519.PrivateKey
		ids     []string
		refused []ed25519.PrivateKey
	}{
		{"add a key", false, b, []string{sign.IDOf(pubOf(a)).String(), sign.IDOf(pubOf(b)).String()}, []ed25519.PrivateKey{c}},
		{"replace", true, c, []string{sign.IDOf(pubOf(c)).String()}, []ed25519.PrivateKey{a, b}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			h, err := format.Resign(ctx, bytes.NewReader(orig), &out, tc.replace, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if h.HeaderDigest() != h0.HeaderDigest() {
				t.Errorf("header digest changed: %s, was %s", h.HeaderDigest(), h0.HeaderDigest())
			}
			if !bytes.Equal(out.Bytes()[h.BodyOffset:], orig[h0.BodyOffset:]) {
				t.Error("blobs changed")
			}
			back, err := format.ReadHeader(bytes.NewReader(out.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			ids, err := back.SignatureKeyIDs()
			if err != nil || len(ids) != len(tc.ids) {
				t.Fatalf("signers %v (%v), want %v", ids, err, tc.ids)
			}
			for i := range ids {
				if ids[i] != tc.ids[i] {
					t.Fatalf("signers %v, want %v", ids, tc.ids)
				}
			}
			for _, k := range tc.refused {
				if _, _, err := format.ReadVerifiedHeader(bytes.NewReader(out.Bytes()), Trust{Keys: []ed25519.PublicKey{pubOf(k)}}); !errors.Is(err, sign.ErrUntrustedKey) {
					t.Errorf("key %s: %v, want ErrUntrustedKey", sign.IDOf(pubOf(k)), err)
				}
			}
			res, err := Apply(ctx, oldImg, bytes.NewReader(out.Bytes()), ApplyOptions{WorkDir: t.TempDir(), TrustedKeys: []ed25519.PublicKey{pubOf(tc.key)}})
			if err != nil {
				t.Fatalf("Apply of the re-signed delta: %v", err)
			}
			res.Close()
		})
	}
	var out bytes.Buffer
	if _, err := format.Resign(ctx, bytes.NewReader(orig[:len(orig)-1]), &out, false, b); !errors.Is(err, ErrBadDelta) {
		t.Errorf("Resign of a truncated delta: %v, want ErrBadDelta", err)
	}
}
