package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// PEM block types of key files.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// maxKeyFile bounds what a key file may hold.
const maxKeyFile = 64 << 10

// MarshalPrivateKey encodes key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKey encodes key as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKey(key ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

func decodePEM(b []byte, want string) ([]byte, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: no PEM block (want %q)", ErrKey, want)
	}
	if blk.Type != want {
		return nil, fmt.Errorf("%w: a %q PEM block, want %q", ErrKey, blk.Type, want)
	}
	return blk.Bytes, nil
}

// ParsePrivateKey parses a PKCS#8 "PRIVATE KEY" PEM block holding an
// ed25519 key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	der, err := decodePEM(b, pemPrivate)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T private key, skiff signs with ed25519", ErrKey, k)
	}
	return ek, nil
}

// ParsePublicKey parses a PKIX "PUBLIC KEY" PEM block holding an ed25519
// key.
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	der, err := decodePEM(b, pemPublic)
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T public key, skiff verifies ed25519", ErrKey, k)
	}
	return ek, nil
}

func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKey, path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is over %d bytes, not a key file", ErrKey, path, maxKeyFile)
	}
	return b, nil
}

// LoadPrivateKey reads a private key file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKey reads a public key file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// LoadPublicKeys reads every public key file in paths.
func LoadPublicKeys(paths ...string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, p := range paths {
		k, err := LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// GenerateKeyFiles makes a new key pair from random (nil: crypto/rand) and
// writes it as NAME.key (private, mode 0600) and NAME.pub (public, 0644).
// It refuses to overwrite either file.
func GenerateKeyFiles(name string, random io.Reader) (KeyID, error) {
	if random == nil {
		random = rand.Reader
	}
	pub, priv, err := ed25519.GenerateKey(random)
	if err != nil {
		return KeyID{}, fmt.Errorf("%w: %v", ErrKey, err)
	}
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		return KeyID{}, err
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		return KeyID{}, err
	}
	for _, f := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{name + ".key", privPEM, 0o600}, {name + ".pub", pubPEM, 0o644}} {
		if err := writeNew(f.path, f.data, f.mode); err != nil {
			if f.mode == 0o644 {
				os.Remove(name + ".key") // no half pair
			}
			return KeyID{}, err
		}
	}
	return IDOf(pub), nil
}

// writeNew writes data to a new file at path (refusing an existing one),
// synced before it is closed.
func writeNew(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}
