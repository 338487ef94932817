package layerfs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/ctxio"
	"github.com/skiff-dev/skiff/internal/flock"
)

// Writing into an OCI image layout is ordered so that a kill, a power cut
// or a full disk at any point leaves the layout usable: every blob is
// written to a temporary file in its directory, fsynced, checked against
// its digest and renamed; the blob directory is fsynced; only then is
// index.json replaced, atomically (temporary file, fsync, rename, fsync of
// the layout directory). index.json is thus the old one or the new one,
// and every blob it names is whole. A failed write leaves at worst blobs no
// entry references. The whole write holds an exclusive flock on the layout
// directory (where the platform has flock), which is also what an agent
// takes before removing entries and unreferenced blobs.

const (
	ociLayoutFile    = "oci-layout"
	ociLayoutContent = "{\n    \"imageLayoutVersion\": \"1.0.0\"\n}" // as ggcr writes it
	ociIndexFile     = "index.json"
	// ociBlobTempPrefix starts the names of blobs being written.
	ociBlobTempPrefix = ".tmp-"
)

// writeOCILayout writes img into the OCI layout at dir (created if
// needed). The image replaces any entry with the same ref.name annotation
// (r.Name), or with the same digest and no ref.name when r.Name is empty.
func writeOCILayout(ctx context.Context, r Ref, dir string, img v1.Image) error {
	if err := ensureOCILayout(dir); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	unlock, err := flock.Dir(ctx, dir, nil)
	if err != nil {
		return fmt.Errorf("write %s: lock %s: %w", r, dir, err)
	}
	defer unlock()
	if err := writeOCIImageBlobs(ctx, dir, img); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		return fmt.Errorf("write %s: descriptor: %w", r, err)
	}
	desc := *d
	annotations := map[string]string{}
	for k, v := range desc.Annotations {
		annotations[k] = v
	}
	var replaces func(v1.Descriptor) bool
	if r.Name != "" {
		annotations[annotationRefName] = r.Name
		replaces = func(o v1.Descriptor) bool { return o.Annotations[annotationRefName] == r.Name }
	} else {
		replaces = func(o v1.Descriptor) bool { return o.Digest == desc.Digest && o.Annotations[annotationRefName] == "" }
	}
	desc.Annotations = nil
	if len(annotations) > 0 {
		desc.Annotations = annotations
	}
	// Nothing is on disk yet that an index names: the last chance to stop
	// without a trace but unreferenced blobs.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	err = editOCIIndex(dir, func(im *v1.IndexManifest) error {
		keep := make([]v1.Descriptor, 0, len(im.Manifests)+1)
		for _, o := range im.Manifests {
			if !replaces(o) {
				keep = append(keep, o)
			}
		}
		im.Manifests = append(keep, desc)
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}

// ensureOCILayout makes dir an OCI layout with an empty index unless it
// has an index.json. A directory holding anything but what an interrupted
// creation leaves (oci-layout, blobs/) is refused with ErrNotImage.
func ensureOCILayout(dir string) error {
	fi, err := os.Stat(filepath.Join(dir, ociIndexFile))
	switch {
	case err == nil && fi.Mode().IsRegular():
		return nil
	case err == nil:
		return fmt.Errorf("%s/%s is not a file: %w", dir, ociIndexFile, ErrNotImage)
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := atomicfile.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
			return err
		}
	case err != nil:
		return fmt.Errorf("%s: %w", dir, err)
	}
	for _, e := range entries {
		if n := e.Name(); n != ociLayoutFile && n != "blobs" {
			return fmt.Errorf("%s exists, is not empty and is not an OCI layout (no index.json): %w", dir, ErrNotImage)
		}
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, ociLayoutFile), []byte(ociLayoutContent)); err != nil {
		return err
	}
	return writeOCIIndex(dir, &v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{}})
}

// editOCIIndex reads dir/index.json, lets edit change it and replaces it
// atomically. The caller holds the layout's lock.
func editOCIIndex(dir string, edit func(*v1.IndexManifest) error) error {
	b, err := os.ReadFile(filepath.Join(dir, ociIndexFile))
	if err != nil {
		return err
	}
	im, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s/%s: %v: %w", dir, ociIndexFile, err, ErrNotImage)
	}
	if err := edit(im); err != nil {
		return err
	}
	return writeOCIIndex(dir, im)
}

// writeOCIIndex replaces dir/index.json with im, atomically.
func writeOCIIndex(dir string, im *v1.IndexManifest) error {
	if im.Manifests == nil {
		im.Manifests = []v1.Descriptor{}
	}
	b, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ociIndexFile), b)
}

// writeOCIImageBlobs writes the layers, config and manifest of img into
// the layout's blobs and fsyncs their directory.
func writeOCIImageBlobs(ctx context.Context, dir string, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("layers: %w", err)
	}
	dirs := map[string]bool{}
	for i, l := range layers {
		dg, err := l.Digest()
		if errors.Is(err, stream.ErrNotComputed) {
			dg = v1.Hash{Algorithm: "sha256"} // named after what is written
		} else if err != nil {
			return fmt.Errorf("layer %d: digest: %w", i, err)
		}
		size, err := l.Size()
		if errors.Is(err, stream.ErrNotComputed) {
			size = -1
		} else if err != nil {
			return fmt.Errorf("layer %d: size: %w", i, err)
		}
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if err := writeOCIBlob(ctx, dir, dg, size, rc); err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, dg, err)
		}
		dirs[dg.Algorithm] = true
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("config digest: %w", err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := writeOCIBlob(ctx, dir, cfgName, int64(len(cfg)), io.NopCloser(bytes.NewReader(cfg))); err != nil {
		return fmt.Errorf("config %s: %w", cfgName, err)
	}
	dirs[cfgName.Algorithm] = true
	md, err := img.Digest()
	if err != nil {
		return fmt.Errorf("manifest digest: %w", err)
	}
	m, err := img.RawManifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if err := writeOCIBlob(ctx, dir, md, int64(len(m)), io.NopCloser(bytes.NewReader(m))); err != nil {
		return fmt.Errorf("manifest %s: %w", md, err)
	}
	dirs[md.Algorithm] = true
	// The renames must be durable before an index names the blobs.
	for alg := range dirs {
		if err := atomicfile.SyncDir(filepath.Join(dir, "blobs", alg)); err != nil {
			return err
		}
	}
	if err := atomicfile.SyncDir(filepath.Join(dir, "blobs")); err != nil {
		return err
	}
	return atomicfile.SyncDir(dir)
}

// writeOCIBlob writes the blob rc holds as blobs/ALG/HEX: to a temporary
// file, fsynced, checked against want (and size, if ≥ 0), then renamed. A
// blob already there is kept if it hashes to want (an image shares most
// blobs with the one it replaces: they are read, not written); one that
// does not (damaged, or left by another writer) is replaced. An empty
// want.Hex names the blob after what was written.
func writeOCIBlob(ctx context.Context, dir string, want v1.Hash, size int64, rc io.ReadCloser) (err error) {
	defer rc.Close()
	if want.Algorithm == "" {
		want.Algorithm = "sha256"
	}
	alg := digest.Algorithm(want.Algorithm)
	if !alg.Available() {
		return fmt.Errorf("digest algorithm %q is not supported", want.Algorithm)
	}
	bdir := filepath.Join(dir, "blobs", want.Algorithm)
	if want.Hex != "" {
		if err := alg.Validate(want.Hex); err != nil {
			return fmt.Errorf("digest %s: %w", want, err)
		}
		if blobIntact(filepath.Join(bdir, want.Hex), alg, want.Hex, size) {
			return nil
		}
	}
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(bdir, ociBlobTempPrefix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	h := alg.Digester()
	n, err := io.Copy(io.MultiWriter(ctxio.Writer(ctx, f), h.Hash()), rc)
	if err != nil {
		return err
	}
	if size >= 0 && n != size {
		return fmt.Errorf("wrote %d bytes, want %d: %w", n, size, ErrDigestMismatch)
	}
	got := h.Digest()
	if want.Hex != "" && got.Encoded() != want.Hex {
		return fmt.Errorf("the content hashes to %s: %w", got, ErrDigestMismatch)
	}
	if err := rc.Close(); err != nil { // a stream layer computes its digest here
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(bdir, got.Encoded()))
}

// blobIntact reports whether the file at path is a regular file of size
// bytes (any, if size < 0) whose digest is alg:hex.
func blobIntact(path string, alg digest.Algorithm, hex string, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || (size >= 0 && fi.Size() != size) {
		return false
	}
	h := alg.Digester()
	if _, err := io.Copy(h.Hash(), f); err != nil {
		return false
	}
	return h.Digest().Encoded() == hex
}
