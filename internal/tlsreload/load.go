package tlsreload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/skiff-dev/skiff/internal/secretfile"
)

// ErrFile: a TLS file is missing, unreadable or does not hold what it
// should; the message names the file.
var ErrFile = errors.New("unusable TLS file")

// maxFile bounds what a certificate, key or CA bundle file may hold.
const maxFile = 1 << 20

func readPEM(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFile, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrFile, path, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("%w: %s is over %d bytes", ErrFile, path, maxFile)
	}
	if blk, _ := pem.Decode(b); blk == nil {
		return nil, fmt.Errorf("%w: %s is not PEM (want -----BEGIN ...----- blocks)", ErrFile, path)
	}
	return b, nil
}

// certificates parses the CERTIFICATE blocks of a PEM file.
func certificates(path string, b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var other []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			other = append(other, blk.Type)
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: certificate %d: %v", ErrFile, path, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: %s holds no certificate (PEM blocks: %s)", ErrFile, path, strings.Join(other, ", "))
	}
	return certs, nil
}

// LoadKeyPair reads a certificate file (the certificate, then any
// intermediates) and its private key file. It refuses a key file other
// users may read (secretfile). The certificate's Leaf is set.
func LoadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := readPEM(certFile)
	if err != nil {
		return nil, err
	}
	if _, err := certificates(certFile, certPEM); err != nil {
		return nil, err
	}
	if err := secretfile.Check(keyFile); err != nil {
		return nil, fmt.Errorf("%w: private key %w", ErrFile, err)
	}
	keyPEM, err := readPEM(keyFile)
	if err != nil {
		return nil, err
	}
	if !hasKey(keyPEM) {
		return nil, fmt.Errorf("%w: %s holds no private key (want a PRIVATE KEY block)", ErrFile, keyFile)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return nil, fmt.Errorf("%w: the private key in %s does not match the certificate in %s", ErrFile, keyFile, certFile)
		}
		return nil, fmt.Errorf("%w: %s, %s: %v", ErrFile, certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrFile, certFile, err)
		}
	}
	return &c, nil
}

func hasKey(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			return true
		}
	}
}

// LoadCertPool reads a bundle of PEM CA certificates into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	b, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	certs, err := certificates(path, bytes.TrimSpace(b))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
