package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ImageInfo is what an engine knows about an image it holds.
type ImageInfo struct {
	// ID is the config digest ("sha256:…", the Docker image ID).
	ID string `json:"id"`
	// DiffIDs are the uncompressed layer digests, in order.
	DiffIDs []string `json:"diff_ids"`
	// ManifestDigest is the digest of the image manifest, "" when the
	// engine does not know it (an image loaded from a docker-archive).
	ManifestDigest string `json:"manifest_digest,omitempty"`
	// RepoDigests are NAME@DIGEST records of where the image came from (a
	// registry manifest or index digest), as Docker keeps them.
	RepoDigests []string `json:"repo_digests,omitempty"`
}

// Engine is where the device's images live.
//
// Load must keep the image it replaces under ref reachable by its ID, so
// that Remove can prune it later (or an operator roll back to it).
type Engine interface {
	// Inspect describes the image ref names; the error wraps ErrNoImage
	// if there is none.
	Inspect(ctx context.Context, ref string) (ImageInfo, error)
	// Base opens the image ref names as a delta base. The image is valid
	// until cleanup is called.
	Base(ctx context.Context, ref string) (img v1.Image, cleanup func() error, err error)
	// Load stores img under ref, replacing what ref named.
	Load(ctx context.Context, img v1.Image, ref string) error
	// Remove deletes the image with ID id (a config digest) that Load
	// replaced.
	Remove(ctx context.Context, id string) error
	// InUse returns the IDs of the images that containers use.
	InUse(ctx context.Context) (map[string]bool, error)
}

// retainedRemover is an engine that can remove the retained name of one
// ref only (prune uses it when an engine has it): an image several refs
// share loses only the name the agent gave it for this ref.
type retainedRemover interface {
	RemoveRetained(ctx context.Context, ref, id string) error
}

// restorer is an engine that can undo a load whose result failed its
// checks: ref names the image previous (a config digest; "" = nothing)
// again, the retained name Load gave it is dropped, and the image the
// failed load added is removed unless other names refer to it.
type restorer interface {
	Restore(ctx context.Context, ref, previous string) error
}

// leftoverRemover is an engine whose Restore may leave the failed image
// while a container uses it (Docker): after the hook ran for the
// previous image, RemoveLeftover removes the image id (a config digest)
// if no name refers to it.
type leftoverRemover interface {
	RemoveLeftover(ctx context.Context, id string) error
}

// ErrNotOurs: an image the agent replaced now has names it did not give
// it; it is left to whoever gave them, and the agent forgets it.
var ErrNotOurs = errors.New("the image has names the agent did not give it")

// EngineOptions configure the engines NewEngine makes.
type EngineOptions struct {
	Containerd ContainerdConfig
	// Platform picks the image of a multi-platform index (OS/ARCH[/VARIANT]).
	Platform string
	// TempDir holds temporary files (a base saved from the engine).
	TempDir string
}

// NewEngine makes the engine of a spec: docker, containerd or oci:DIR.
func NewEngine(spec string, o EngineOptions) (Engine, error) {
	kind, dir := EngineKind(spec)
	switch kind {
	case EngineDocker:
		return &DockerEngine{TempDir: o.TempDir}, nil
	case EngineContainerd:
		return NewContainerdEngine(o.Containerd, o.Platform), nil
	case EngineOCI:
		return &OCIEngine{Dir: dir, Platform: o.Platform}, nil
	}
	return nil, fmt.Errorf("%w: engine %q: want docker, containerd or oci:DIR", ErrConfig, spec)
}

// retainedName is the name under which an engine without image IDs
// (containerd, OCI layout) keeps the image that ref named before a load:
// REF-skiff-<first 12 hex digits of its ID>.
func retainedName(ref, id string) string {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return ref + "-skiff-" + hex
}

// isRetainedName reports whether n is a retainedName of image id.
func isRetainedName(n, id string) bool {
	hex := strings.TrimPrefix(id, "sha256:")
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return strings.HasSuffix(n, "-skiff-"+hex)
}

// imageInfo reads an ImageInfo from a v1.Image.
func imageInfo(img v1.Image) (ImageInfo, error) {
	cfg, err := img.ConfigName()
	if err != nil {
		return ImageInfo{}, fmt.Errorf("config digest: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return ImageInfo{}, fmt.Errorf("config: %w", err)
	}
	md, err := img.Digest()
	if err != nil {
		return ImageInfo{}, fmt.Errorf("manifest digest: %w", err)
	}
	info := ImageInfo{ID: cfg.String(), ManifestDigest: md.String()}
	for _, d := range cf.RootFS.DiffIDs {
		info.DiffIDs = append(info.DiffIDs, d.String())
	}
	return info, nil
}
