package layerfs

import (
	"context"
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// annotationRefName is the OCI annotation an oci: REF matches.
const annotationRefName = "org.opencontainers.image.ref.name"

// maxIndexDepth bounds how many nested indexes an OCI layout may chain.
const maxIndexDepth = 8

// Image is an opened image. Its v1.Image methods read lazily from where the
// reference points (for docker:// with the context given to Open). Close
// removes the temporary files Open made (an extracted oci-archive, an image
// saved from the engine); the image must not be read after Close.
type Image struct {
	v1.Image
	// Ref is the parsed reference the image was opened from.
	Ref Ref

	cleanup   func() error
	closeOnce sync.Once
	closeErr  error
}

// Close removes the image's temporary files. It is safe to call more than
// once.
func (i *Image) Close() error {
	i.closeOnce.Do(func() {
		if i.cleanup != nil {
			i.closeErr = i.cleanup()
		}
	})
	return i.closeErr
}

// Open opens the image a reference names (see ParseRef for the syntax).
// Errors name the reference and wrap one of ErrBadReference,
// ErrImageNotFound, ErrAmbiguous, ErrNotImage, ErrUnsafeArchive or
// ErrEngine where one applies. The caller must Close the image.
func Open(ctx context.Context, ref string, opts ...Option) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	o, err := makeRefOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	img, err := openRef(ctx, r, o)
	if err != nil || o.platform == nil {
		return img, err
	}
	if err := checkPlatform(img, *o.platform); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

// checkPlatform refuses an image whose config names another platform than
// the one asked for (WithPlatform): an index picks by platform, but a
// single-platform image is what it is, and a device must not get an image
// it cannot run. A config variant is compared only where both name one
// (arm64 configs often leave v8 out).
func checkPlatform(img *Image, want v1.Platform) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("open %s: config: %w", img.Ref, err)
	}
	if cf.OS == "" && cf.Architecture == "" {
		return nil // nothing to compare (some hand-made images)
	}
	got := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	if got.OS != want.OS || got.Architecture != want.Architecture ||
		(got.Variant != "" && want.Variant != "" && got.Variant != want.Variant) {
		return fmt.Errorf("open %s: the image is for %s, not the platform %s asked for: %w", img.Ref, got.String(), want.String(), ErrPlatformMismatch)
	}
	return nil
}

// openRef opens r by its transport.
func openRef(ctx context.Context, r Ref, o *refOptions) (*Image, error) {
	switch r.Transport {
	case TransportDockerArchive:
		img, err := openDockerArchive(r, r.Path, r.Name)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportOCI:
		img, err := openOCILayout(r, r.Path, o)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportOCIArchive:
		return openOCIArchive(ctx, r, o)
	case TransportRegistry:
		img, err := openRegistry(ctx, r, o)
		if err != nil {
			return nil, err
		}
		return &Image{Image: img, Ref: r}, nil
	case TransportDaemon:
		return openDaemon(ctx, r, o)
	}
	// ParseRef accepts only the transports above.
	return nil, fmt.Errorf("open %s: unhandled transport %q: %w", r, r.Transport, ErrBadReference)
}

// Write writes img where a reference points:
//
//   - docker-archive: a `docker save` tar, written to a temporary file
//     beside PATH and renamed over it; TAG, if given, becomes its RepoTag;
//   - oci: DIR is created as a layout if needed; the image replaces any
//     entry with the same ref.name annotation (REF), or with the same
//     digest and no ref.name when REF is absent;
//   - oci-archive: a tar of a fresh layout holding the image, written
//     atomically like docker-archive;
//   - docker://: pushed with remote.Write;
//   - docker-daemon: loaded into the engine; its image ID is checked to be
//     the config digest of img.
func Write(ctx context.Context, ref string, img v1.Image, opts ...Option) error {
	r, err := ParseRef(ref)
	if err != nil {
		return err
	}
	o, err := makeRefOptions(opts)
	if err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	switch r.Transport {
	case TransportDockerArchive:
		return writeDockerArchive(ctx, r, img, o.names)
	case TransportOCI:
		return writeOCILayout(ctx, r, r.Path, img)
	case TransportOCIArchive:
		return writeOCIArchive(ctx, r, img, o)
	case TransportRegistry:
		return writeRegistry(ctx, r, img, o)
	case TransportDaemon:
		return writeDaemon(ctx, r, img)
	}
	return fmt.Errorf("write %s: unhandled transport %q: %w", r, r.Transport, ErrBadReference)
}

// writeOCILayout is in ocilayout.go.

// ---------------------------------------------------------------- helpers
