package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertFile is the CA certificate as a PEM file.
	CertFile string
}

// Pair is an issued certificate and its key, in memory and as PEM files.
type Pair struct {
	Cert              *x509.Certificate
	TLS               tls.Certificate
	CertPEM, KeyPEM   []byte
	CertFile, KeyFile string
}

// NewCA makes a CA called name and writes its certificate to
// t.TempDir()/NAME-ca.pem.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), name+"-ca.pem")
	write(t, f, pemCert(der), 0o644)
	return &CA{Cert: cert, key: key, CertFile: f}
}

// Server issues a certificate for 127.0.0.1 and localhost with serial
// and writes it to DIR/server-SERIAL.pem and DIR/server-SERIAL.key.
func (ca *CA) Server(t testing.TB, serial int64, dir string) *Pair {
	t.Helper()
	return ca.issue(t, serial, dir, "server", x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate called "device-SERIAL" and writes
// it to DIR/client-SERIAL.pem and DIR/client-SERIAL.key.
func (ca *CA) Client(t testing.TB, serial int64, dir string) *Pair {
	t.Helper()
	return ca.issue(t, serial, dir, "client", x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issue(t testing.TB, serial int64, dir, kind string, usage x509.ExtKeyUsage) *Pair {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "device-" + big.NewInt(serial).String()},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.Subject.CommonName = "127.0.0.1"
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{Cert: cert, CertPEM: pemCert(der), KeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
	p.TLS, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	name := kind + "-" + big.NewInt(serial).String()
	p.CertFile, p.KeyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	write(t, p.CertFile, p.CertPEM, 0o644)
	write(t, p.KeyFile, p.KeyPEM, 0o600)
	return p
}

// Pool is a certificate pool of the CA alone.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Install writes p's certificate and key over certFile and keyFile (a
// rotation in place), the key 0600.
func (p *Pair) Install(t testing.TB, certFile, keyFile string) {
	t.Helper()
	write(t, certFile, p.CertPEM, 0o644)
	write(t, keyFile, p.KeyPEM, 0o600)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// write replaces path with b and sets its mode (WriteFile keeps the mode
// of a file that exists).
func write(t testing.TB, path string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
