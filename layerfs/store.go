package layerfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// Ingester takes in payloads. Ingest reads exactly size bytes from r, keeps
// them (or not) and returns their sha256.
type Ingester interface {
	Ingest(ctx context.Context, r io.Reader, size int64) (digest.Digest, error)
}

// Provider gives payloads back by digest.
type Provider interface {
	Open(ctx context.Context, d digest.Digest) (io.ReadCloser, error)
}

// Discard is an Ingester that only hashes: for counting and inspecting.
type Discard struct{}

var _ Ingester = Discard{}

// Ingest hashes size bytes of r.
func (Discard) Ingest(_ context.Context, r io.Reader, size int64) (digest.Digest, error) {
	h := sha256.New()
	if _, err := io.CopyN(h, r, size); err != nil {
		return "", noEOF(err)
	}
	return digest.NewDigest(digest.SHA256, h), nil
}

// Store is a content store on disk: blobs/sha256/<hex>, written through a
// temporary file and renamed into place, so a blob that exists is complete.
type Store struct {
	root string
	sync bool
}

var (
	_ Ingester = (*Store)(nil)
	_ Provider = (*Store)(nil)
)

// StoreOption configures a Store.
type StoreOption func(*Store) error

// WithSync makes the store fsync every blob and its directory before it
// counts as written (for devices that may lose power). Default off.
func WithSync(on bool) StoreOption {
	return func(s *Store) error { s.sync = on; return nil }
}

// smallBlob payloads are read into memory to skip writing what exists.
const smallBlob = 64 << 10

// OpenStore opens (creating it if needed) a content store rooted at dir.
func OpenStore(dir string, opts ...StoreOption) (*Store, error) {
	s := &Store{root: dir}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{s.blobDir(), s.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("content store %s: %w", dir, err)
		}
	}
	return s, nil
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) tmpDir() string  { return filepath.Join(s.root, "tmp") }

// Path returns where the blob with digest d is (or would be) stored.
func (s *Store) Path(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return "", fmt.Errorf("content store: bad digest %q", d)
	}
	return filepath.Join(s.blobDir(), d.Encoded()), nil
}

// Has reports whether the store holds d.
func (s *Store) Has(d digest.Digest) bool {
	p, err := s.Path(d)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Open returns the blob d; it is an *os.File (seekable, ReaderAt).
func (s *Store) Open(_ context.Context, d digest.Digest) (io.ReadCloser, error) {
	p, err := s.Path(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s: %w", d, ErrPayloadNotFound)
	}
	return f, err
}

// List returns the digests of the blobs the store holds, in no order.
func (s *Store) List() ([]digest.Digest, error) {
	ents, err := os.ReadDir(s.blobDir())
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	var ds []digest.Digest
	for _, e := range ents {
		if d := digest.NewDigestFromEncoded(digest.SHA256, e.Name()); e.Type().IsRegular() && d.Validate() == nil {
			ds = append(ds, d)
		}
	}
	return ds, nil
}

// Remove deletes the blob d; a blob that is not there is no error.
func (s *Store) Remove(d digest.Digest) error {
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// Ingest stores size bytes of r and returns their digest.
func (s *Store) Ingest(ctx context.Context, r io.Reader, size int64) (digest.Digest, error) {
	if size <= smallBlob {
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", noEOF(err)
		}
		d := digest.FromBytes(buf)
		if s.Has(d) {
			return d, nil
		}
		return d, s.commit(d, bytes.NewReader(buf), size)
	}
	return s.ingestLarge(r, size)
}

// Put stores a blob whose digest is known, verifying it; a blob already
// present is not written again.
func (s *Store) Put(ctx context.Context, d digest.Digest, r io.Reader, size int64) error {
	if s.Has(d) {
		return nil
	}
	return s.commit(d, r, size)
}

func (s *Store) ingestLarge(r io.Reader, size int64) (digest.Digest, error) {
	f, err := os.CreateTemp(s.tmpDir(), "ingest-")
	if err != nil {
		return "", fmt.Errorf("content store: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		return "", noEOF(err)
	}
	d := digest.NewDigest(digest.SHA256, h)
	if s.Has(d) {
		return d, nil
	}
	return d, s.publish(f, d)
}

// commit writes r (size bytes, expected digest d) through a temp file.
func (s *Store) commit(d digest.Digest, r io.Reader, size int64) error {
	f, err := os.CreateTemp(s.tmpDir(), "ingest-")
	if err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), r, size); err != nil {
		return fmt.Errorf("content store: writing %s: %w", d, noEOF(err))
	}
	if got := digest.NewDigest(digest.SHA256, h); got != d {
		return fmt.Errorf("content store: blob is %s, expected %s: %w", got, d, ErrDigestMismatch)
	}
	return s.publish(f, d)
}

// publish renames a complete temp file into place.
func (s *Store) publish(f *os.File, d digest.Digest) error {
	if s.sync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("content store: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	p, err := s.Path(d)
	if err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("content store: %w", err)
	}
	if s.sync {
		return atomicfile.SyncDir(s.blobDir())
	}
	return nil
}
