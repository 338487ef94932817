package layerfs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// docker://: a registry (go-containerregistry's remote package).

func registryRef(r Ref, o *refOptions) (name.Reference, error) {
	var nopts []name.Option
	if o.insecure {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(r.Name, nopts...)
	if err != nil {
		return nil, fmt.Errorf("%s: registry reference %q: %v: %w", r, r.Name, err, ErrBadReference)
	}
	return ref, nil
}

func remoteOptions(ctx context.Context, o *refOptions) []remote.Option {
	ropts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithPlatform(o.platformOrDefault()),
	}
	return ropts
}

func openRegistry(ctx context.Context, r Ref, o *refOptions) (v1.Image, error) {
	ref, err := registryRef(r, o)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	img, err := remote.Image(ref, remoteOptions(ctx, o)...)
	if err != nil {
		if isRegistryNotFound(err) {
			return nil, fmt.Errorf("open %s: %s is not in the registry: %v: %w", r, ref, err, ErrImageNotFound)
		}
		if strings.Contains(err.Error(), "no child with platform") {
			return nil, fmt.Errorf("open %s: %v: %w", r, err, ErrImageNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	return img, nil
}

func isRegistryNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}

func writeRegistry(ctx context.Context, r Ref, img v1.Image, o *refOptions) error {
	ref, err := registryRef(r, o)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	if err := remote.Write(ref, img, remoteOptions(ctx, o)...); err != nil {
		return fmt.Errorf("write %s: %w", r, err)
	}
	return nil
}
