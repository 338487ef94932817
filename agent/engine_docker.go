package agent

import (
	"context"
	"errors"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/layerfs"
)

// DockerEngine keeps images in a Docker Engine, reached through DOCKER_HOST
// (and DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY). Images are
// read and loaded through layerfs's docker-daemon: transport; a replaced
// image stays in the engine, untagged, under its ID.
type DockerEngine struct {
	// TempDir holds the base image saved from the engine while it is used.
	TempDir string
}

var _ Engine = (*DockerEngine)(nil)

func (e *DockerEngine) dial(ctx context.Context) (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("docker engine client: %w", err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("docker engine not reachable: %v: %w", err, layerfs.ErrEngine)
	}
	return cli, nil
}

// Inspect asks the engine about ref.
func (e *DockerEngine) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	cli, err := e.dial(ctx)
	if err != nil {
		return ImageInfo{}, err
	}
	defer cli.Close()
	insp, err := cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return ImageInfo{}, fmt.Errorf("docker image %s: %w", ref, ErrNoImage)
		}
		return ImageInfo{}, fmt.Errorf("docker image %s: %v: %w", ref, err, layerfs.ErrEngine)
	}
	info := ImageInfo{ID: insp.ID, DiffIDs: insp.RootFS.Layers, RepoDigests: insp.RepoDigests}
	return info, nil
}

// Base saves the image from the engine (docker-daemon:REF).
func (e *DockerEngine) Base(ctx context.Context, ref string) (v1.Image, func() error, error) {
	var opts []layerfs.Option
	if e.TempDir != "" {
		opts = append(opts, layerfs.WithTempDir(e.TempDir))
	}
	img, err := layerfs.Open(ctx, "docker-daemon:"+ref, opts...)
	if errors.Is(err, layerfs.ErrImageNotFound) {
		return nil, nil, fmt.Errorf("%w: %v", ErrNoImage, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return img, img.Close, nil
}

// Load loads img into the engine as ref; layerfs checks that the engine's
// image ID is img's config digest.
func (e *DockerEngine) Load(ctx context.Context, img v1.Image, ref string) error {
	return layerfs.Write(ctx, "docker-daemon:"+ref, img)
}

// Remove deletes image id (untagged, not forced: the engine refuses to
// remove an image a container uses).
func (e *DockerEngine) Remove(ctx context.Context, id string) error {
	cli, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.ImageRemove(ctx, id, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker image %s: %w", id, ErrNoImage)
		}
		return fmt.Errorf("remove docker image %s: %v: %w", id, err, layerfs.ErrEngine)
	}
	return nil
}

// InUse lists the image IDs of all containers, running or not.
func (e *DockerEngine) InUse(ctx context.Context) (map[string]bool, error) {
	cli, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list docker containers: %v: %w", err, layerfs.ErrEngine)
	}
	used := map[string]bool{}
	for _, c := range res.Items {
		used[c.ImageID] = true
	}
	return used, nil
}
