package tlsreload

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/internal/tlstest"
)

func writeFile(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestLoadKeyPairErrors: each unusable pair is refused with ErrFile and a
// message naming the file and the problem.
func TestLoadKeyPairErrors(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "a")
	one, two := ca.Server(t, 1, dir), ca.Server(t, 2, dir)
	open := writeFile(t, dir, "open.key", string(one.KeyPEM), 0o644)
	notPEM := writeFile(t, dir, "garbage.pem", "hello\n", 0o600)
	keyOnly := writeFile(t, dir, "keyonly.pem", string(one.KeyPEM), 0o600)
	certOnly := writeFile(t, dir, "certonly.key", string(one.CertPEM), 0o600)
	for _, tc := range []struct {
		name, cert, key string
		want            []string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), one.KeyFile, []string{"nope.pem", "no such file"}},
		{"missing key", one.CertFile, filepath.Join(dir, "nope.key"), []string{"nope.key", "no such file"}},
		{"cert not PEM", notPEM, one.KeyFile, []string{"garbage.pem", "not PEM"}},
		{"key not PEM", one.CertFile, writeFile(t, dir, "garbage.key", "hello\n", 0o600), []string{"garbage.key", "not PEM"}},
		{"no certificate", keyOnly, one.KeyFile, []string{"keyonly.pem", "holds no certificate", "PRIVATE KEY"}},
		{"no key", one.CertFile, certOnly, []string{"certonly.key", "holds no private key"}},
		{"key of another cert", one.CertFile, two.KeyFile, []string{"server-2.key", "does not match the certificate in", "server-1.pem"}},
		{"key readable by others", one.CertFile, open, []string{"open.key", "0644", "readable by other users"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadKeyPair(tc.cert, tc.key)
			if !errors.Is(err, ErrFile) {
				t.Fatalf("err %v, want ErrFile", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q, want %q in it", err, w)
				}
			}
		})
	}
	c, err := LoadKeyPair(one.CertFile, one.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Leaf == nil || c.Leaf.SerialNumber.Int64() != 1 {
		t.Errorf("Leaf %v, want the certificate of serial 1", c.Leaf)
	}
}

func TestLoadCertPool(t *testing.T) {
	dir := t.TempDir()
	a, b := tlstest.NewCA(t, "a"), tlstest.NewCA(t, "b")
	ra, _ := os.ReadFile(a.CertFile)
	rb, _ := os.ReadFile(b.CertFile)
	bundle := writeFile(t, dir, "bundle.pem", string(ra)+"\n"+string(rb), 0o644)
	pool, err := LoadCertPool(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !pool.Equal(func() *x509.CertPool { p := a.Pool(); p.AddCert(b.Cert); return p }()) {
		t.Error("the pool is not the two CAs of the bundle")
	}
	key := a.Server(t, 3, dir)
	for _, tc := range []struct {
		name, path string
		want       []string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), []string{"nope.pem", "no such file"}},
		{"not PEM", writeFile(t, dir, "x.pem", "x", 0o644), []string{"x.pem", "not PEM"}},
		{"a key, no certificate", key.KeyFile, []string{"server-3.key", "holds no certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadCertPool(tc.path)
			if !errors.Is(err, ErrFile) {
				t.Fatalf("err %v, want ErrFile", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q, want %q in it", err, w)
				}
			}
		})
	}
}
