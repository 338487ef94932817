package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/delta/sign"
)

// TestSignatures: the agent applies only deltas signed by a key of
// trusted_keys, unless allow_unsigned; a refused delta changes nothing.
func TestSignatures(t *testing.T) {
	p := testPair(t)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := sign.GenerateKeyFiles(other, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		delta   []byte
		edit    func(c *Config)
		wantErr error
		hint    string
	}{
		{"signed, trusted", p.forward, nil, nil, ""},
		{"unsigned refused", p.unsigned, nil, sign.ErrUnsigned, "trusted_keys"},
		{"no trusted keys", p.forward, func(c *Config) { c.TrustedKeys = nil }, sign.ErrUntrustedKey, "trusted_keys"},
		{"another key trusted", p.forward, func(c *Config) { c.TrustedKeys = []string{other + ".pub"} }, sign.ErrUntrustedKey, "trusted_keys"},
		{"rotation: old and new key trusted", p.forward, func(c *Config) { c.TrustedKeys = append(c.TrustedKeys, other+".pub") }, nil, ""},
		{"unsigned with allow_unsigned", p.unsigned, func(c *Config) { c.AllowUnsigned = true }, nil, ""},
		{"allow_unsigned, no keys: signed accepted unverified", p.forward, func(c *Config) { c.TrustedKeys, c.AllowUnsigned = nil, true }, nil, ""},
		{"allow_unsigned does not excuse a wrong key", p.forward, func(c *Config) { c.TrustedKeys, c.AllowUnsigned = []string{other + ".pub"}, true }, sign.ErrUntrustedKey, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, p)
			c := d.config(t, serverSource("http://127.0.0.1:9"), "")
			if tc.edit != nil {
				tc.edit(c)
			}
			a := newAgent(t, c)
			res, err := a.ApplyFile(context.Background(), "web", writeFile(t, d.dir, "fw.skiff", tc.delta))
			if tc.wantErr == nil {
				if err != nil || !res.Updated || d.running(t).ID != p.newID {
					t.Fatalf("apply: %+v, %v", res, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.hint) {
				t.Fatalf("apply error = %v, want %v mentioning %q", err, tc.wantErr, tc.hint)
			}
			if d.running(t).ID != p.oldID {
				t.Error("a refused delta changed the running image")
			}
			if ents, _ := os.ReadDir(c.WorkDir); len(ents) != 0 {
				t.Errorf("a refused delta left %d entries in the work dir", len(ents))
			}
		})
	}
}

func TestTrustedKeysConfig(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	c := d.config(t, serverSource("http://127.0.0.1:9"), "")
	c.TrustedKeys = []string{filepath.Join(d.dir, "missing.pub")}
	if _, err := New(c); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "missing.pub") {
		t.Errorf("missing trusted key file: %v", err)
	}
	y := "state_dir: /s\ntrusted_keys: [keys/release.pub]\nimages:\n  - {name: web, engine: docker, ref: web:1, source: {server: http://h, token: t, channel: c}}\n"
	if _, err := ParseConfig([]byte(y)); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "trusted_keys[0]") {
		t.Errorf("relative trusted key path: %v", err)
	}
}
