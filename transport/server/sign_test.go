package server

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"math/rand"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/sign"
)

func testSigner(seed int64) ed25519.PrivateKey {
	s := make([]byte, ed25519.SeedSize)
	rand.New(rand.NewSource(seed)).Read(s)
	return ed25519.NewKeyFromSeed(s)
}

// TestSignedDeltas: with Signers the server's deltas verify against the
// signer's public key; a server restarted with another key computes its
// cached deltas again rather than serve ones its devices would refuse.
func TestSignedDeltas(t *testing.T) {
	stateDir, cacheDir := t.TempDir(), t.TempDir()
	imgs := versions(t, 2)
	refs := writeLayout(t, t.TempDir(), imgs)
	k1, k2 := testSigner(1), testSigner(2)
	pub := func(k ed25519.PrivateKey) []ed25519.PublicKey {
		return []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
	}
	dev := device(t, imgs[0], "stable", "web")
	steps := []struct {
		name     string
		key      ed25519.PrivateKey
		computed float64
	}{
		{"first key", k1, 1},
		{"same key after a restart: cached", k1, 0},
		{"another key: computed again", k2, 1},
	}
	for i, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			ts := newTestServer(t, stateDir, cacheDir, func(c *Config) { c.Signers = []crypto.Signer{st.key} })
			defer ts.Close()
			if i == 0 {
				ts.publish("stable", "web", refs[0])
				ts.publish("stable", "web", refs[1])
			}
			resp := ts.waitDelta(dev)
			if resp.Delta == nil {
				t.Fatalf("%+v", resp)
			}
			if got := testutil.ToFloat64(ts.metrics.computations.WithLabelValues("ok")); got != st.computed {
				t.Errorf("computed %v deltas, want %v", got, st.computed)
			}
			data := ts.do("GET", resp.Delta.URL, deviceToken, nil).Body.Bytes()
			res, err := delta.Apply(context.Background(), imgs[0], bytes.NewReader(data), delta.ApplyOptions{WorkDir: t.TempDir(), TrustedKeys: pub(st.key)})
			if err != nil {
				t.Fatalf("apply with the server's key trusted: %v", err)
			}
			res.Close()
			other := k2
			if st.key.Equal(k2) {
				other = k1
			}
			if _, err := delta.Apply(context.Background(), imgs[0], bytes.NewReader(data), delta.ApplyOptions{WorkDir: t.TempDir(), TrustedKeys: pub(other)}); !errors.Is(err, sign.ErrUntrustedKey) {
				t.Errorf("apply trusting another key: %v, want ErrUntrustedKey", err)
			}
		})
	}
}
