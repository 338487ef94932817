package sign

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testKey makes a deterministic key from seed.
func testKey(seed int64) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	rand.New(rand.NewSource(seed)).Read(s)
	return ed25519.NewKeyFromSeed(s)
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestVerify(t *testing.T) {
	oldKey, newKey, other := testKey(1), testKey(2), testKey(3)
	header := []byte("stored header bytes")
	otherHeader := []byte("another delta's header")
	mustSign := func(h []byte, keys ...crypto.Signer) []byte {
		b, err := Sign(h, keys...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := mustSign(header, oldKey)
	flipped := bytes.Clone(good)
	flipped[len(flipped)-1] ^= 1
	flippedID := bytes.Clone(good)
	flippedID[2] ^= 1
	tests := []struct {
		name    string
		sig     []byte
		header  []byte
		trusted []ed25519.PublicKey
		wantID  KeyID
		wantErr error
	}{
		{"signed by the trusted key", good, header, []ed25519.PublicKey{pub(oldKey)}, IDOf(pub(oldKey)), nil},
		{"one of two trusted keys", good, header, []ed25519.PublicKey{pub(other), pub(oldKey)}, IDOf(pub(oldKey)), nil},
		{"rotation: old+new, device trusts old", mustSign(header, oldKey, newKey), header, []ed25519.PublicKey{pub(oldKey)}, IDOf(pub(oldKey)), nil},
		{"rotation: old+new, device trusts new", mustSign(header, oldKey, newKey), header, []ed25519.PublicKey{pub(newKey)}, IDOf(pub(newKey)), nil},
		{"untrusted signer ignored, trusted one verifies", mustSign(header, other, newKey), header, []ed25519.PublicKey{pub(newKey)}, IDOf(pub(newKey)), nil},
		{"unsigned", nil, header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrUnsigned},
		{"wrong key", good, header, []ed25519.PublicKey{pub(other)}, KeyID{}, ErrUntrustedKey},
		{"no trusted keys", good, header, nil, KeyID{}, ErrUntrustedKey},
		{"corrupted signature", flipped, header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
		{"key ID altered", flippedID, header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrUntrustedKey},
		{"signature over another header", mustSign(otherHeader, oldKey), header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
		{"header byte flipped", good, []byte("stored header byteS"), []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
		{"truncated block", good[:len(good)-1], header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
		{"trailing byte", append(bytes.Clone(good), 0), header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
		{"just the version", good[:1], header, []ed25519.PublicKey{pub(oldKey)}, KeyID{}, ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := Verify(tc.sig, tc.header, tc.trusted)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("Verify error = %v, want %v", err, tc.wantErr)
			}
			if id != tc.wantID {
				t.Errorf("Verify = %s, want %s", id, tc.wantID)
			}
		})
	}
}

func TestParse(t *testing.T) {
	k := testKey(1)
	good, err := Sign([]byte("h"), k)
	if err != nil {
		t.Fatal(err)
	}
	dup := append(bytes.Clone(good), good[2:]...)
	dup[1] = 2
	tests := []struct {
		name string
		b    []byte
		want string // substring of the error; "" = parses
	}{
		{"one signature", good, ""},
		{"empty", nil, "not signed"},
		{"version 2", append([]byte{2}, good[1:]...), "version 2"},
		{"zero signatures", []byte{1, 0}, "0 signatures"},
		{"too many", append([]byte{1, MaxEntries + 1}, make([]byte, (MaxEntries+1)*entrySize)...), "33 signatures"},
		{"count beyond the bytes", []byte{1, 2, 0, 0}, "2 signatures need 146"},
		{"same key twice", dup, "signs twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			blk, err := Parse(tc.b)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if blk.Entries[0].KeyID != IDOf(pub(k)) {
					t.Errorf("key ID %s, want %s", blk.Entries[0].KeyID, IDOf(pub(k)))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestAppend(t *testing.T) {
	a, b, c := testKey(1), testKey(2), testKey(3)
	h := []byte("header")
	s1, err := Sign(h, a)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		replace bool
		keys    []crypto.Signer
		want    []KeyID
	}{
		{"adds a key", false, []crypto.Signer{b}, []KeyID{IDOf(pub(a)), IDOf(pub(b))}},
		{"same key replaces its entry", false, []crypto.Signer{a}, []KeyID{IDOf(pub(a))}},
		{"replace drops the others", true, []crypto.Signer{c}, []KeyID{IDOf(pub(c))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Append(s1, h, tc.replace, tc.keys...)
			if err != nil {
				t.Fatal(err)
			}
			blk, err := Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			got := blk.KeyIDs()
			if len(got) != len(tc.want) {
				t.Fatalf("signers %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("signers %v, want %v", got, tc.want)
				}
			}
			for _, k := range []ed25519.PrivateKey{a, b, c} {
				id, err := Verify(out, h, []ed25519.PublicKey{pub(k)})
				in := false
				for _, w := range tc.want {
					in = in || w == IDOf(pub(k))
				}
				if in != (err == nil) || (in && id != IDOf(pub(k))) {
					t.Errorf("key %s: Verify = %s, %v", IDOf(pub(k)), id, err)
				}
			}
		})
	}
	if _, err := Append(nil, h, false); !errors.Is(err, ErrKey) {
		t.Errorf("no signers: %v", err)
	}
	if _, err := Append([]byte{9}, h, false, a); !errors.Is(err, ErrBadSignature) {
		t.Errorf("malformed existing block: %v", err)
	}
}

func TestMessage(t *testing.T) {
	h := []byte("header")
	s := sha256.Sum256(h)
	want := append([]byte("skiff-delta-v1\x00"), s[:]...)
	if got := Message(h); !bytes.Equal(got, want) {
		t.Errorf("Message = %x, want %x", got, want)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "release")
	id, err := GenerateKeyFiles(name, rand.New(rand.NewSource(7)))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(name + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	priv, err := LoadPrivateKey(name + ".key")
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKey(name + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pk.Equal(priv.Public()) || IDOf(pk) != id || len(id.String()) != 16 {
		t.Fatalf("loaded keys do not match: id %s, pub %x, priv.pub %x", id, pk, priv.Public())
	}
	if _, err := GenerateKeyFiles(name, nil); err == nil {
		t.Error("GenerateKeyFiles overwrote existing key files")
	}
	bad := []struct {
		name, file, content string
		load                func(string) error
	}{
		{"public key as private", name + ".pub", "", func(p string) error { _, err := LoadPrivateKey(p); return err }},
		{"private key as public", name + ".key", "", func(p string) error { _, err := LoadPublicKey(p); return err }},
		{"not PEM", filepath.Join(dir, "junk"), "hello", func(p string) error { _, err := LoadPublicKey(p); return err }},
		{"missing", filepath.Join(dir, "nope.pub"), "", func(p string) error { _, err := LoadPublicKey(p); return err }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if tc.content != "" {
				os.WriteFile(tc.file, []byte(tc.content), 0o644)
			}
			if err := tc.load(tc.file); !errors.Is(err, ErrKey) {
				t.Errorf("error = %v, want ErrKey", err)
			}
		})
	}
}

// TestOpenSSLKeys: keys made by openssl load, and their IDs are the sha256
// of the PKIX encoding openssl prints.
func TestOpenSSLKeys(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("no openssl")
	}
	dir := t.TempDir()
	key, pubf := filepath.Join(dir, "k.key"), filepath.Join(dir, "k.pub")
	if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", key).CombinedOutput(); err != nil {
		t.Skipf("openssl without ed25519: %v %s", err, out)
	}
	if out, err := exec.Command("openssl", "pkey", "-in", key, "-pubout", "-out", pubf).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	der, err := exec.Command("openssl", "pkey", "-in", key, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := LoadPublicKey(pubf)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(der)
	if got, want := IDOf(pk).String(), strings.ToLower(strings.TrimSpace(hexString(s[:8]))); got != want {
		t.Errorf("key ID %s, want %s", got, want)
	}
	sig, err := Sign([]byte("h"), priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(sig, []byte("h"), []ed25519.PublicKey{pk}); err != nil {
		t.Error(err)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		sb.WriteByte(digits[c>>4])
		sb.WriteByte(digits[c&15])
	}
	return sb.String()
}

// FuzzParseSignature: Parse never panics, and what parses encodes back to
// the same bytes.
func FuzzParseSignature(f *testing.F) {
	one, _ := Sign([]byte("h"), testKey(1))
	two, _ := Sign([]byte("h"), testKey(1), testKey(2))
	for _, s := range [][]byte{nil, {1}, {1, 0}, {1, 1}, {2, 1}, one, two, one[:len(one)-1], append(bytes.Clone(one), 0)} {
		f.Add(s)
	}
	trusted := []ed25519.PublicKey{pub(testKey(1))}
	f.Fuzz(func(t *testing.T, b []byte) {
		blk, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrUnsigned) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Parse error without a sentinel: %v", err)
			}
			return
		}
		out, err := blk.MarshalBinary()
		if err != nil {
			t.Fatalf("a parsed block does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip changed the block")
		}
		if _, err := Verify(b, []byte("h"), trusted); err != nil && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrUntrustedKey) {
			t.Fatalf("Verify error without a sentinel: %v", err)
		}
	})
}
