package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/client"

	"github.com/skiff-dev/skiff/layerfs"
)

// DockerEngine keeps images in a Docker Engine, reached through DOCKER_HOST
// (and DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY). Images are
// read and loaded through layerfs's docker-daemon: transport; a replaced
// image stays in the engine under its retained name REF-skiff-<12 hex>.
type DockerEngine struct {
	// TempDir holds the base image saved from the engine while it is used.
	TempDir string
}

var (
	_ Engine          = (*DockerEngine)(nil)
	_ retainedRemover = (*DockerEngine)(nil)
)

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
// image ID is img's config digest. The image ref named before is tagged
// with its retained name (REF-skiff-<12 hex of its ID>) first, so that it
// stays reachable and Remove can later drop exactly that name.
func (e *DockerEngine) Load(ctx context.Context, img v1.Image, ref string) error {
	newID, err := img.ConfigName()
	if err != nil {
		return err
	}
	cli, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	retained := ""
	old, err := cli.ImageInspect(ctx, ref)
	switch {
	case err == nil && old.ID != newID.String():
		retained = retainedName(ref, old.ID)
		if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: old.ID, Target: retained}); err != nil {
			return fmt.Errorf("keep the replaced image %s as %s: %v: %w", old.ID, retained, err, layerfs.ErrEngine)
		}
	case err != nil && !cerrdefs.IsNotFound(err):
		return fmt.Errorf("docker image %s: %v: %w", ref, err, layerfs.ErrEngine)
	}
	if err := layerfs.Write(ctx, "docker-daemon:"+ref, img); err != nil {
		if retained != "" {
			// If ref still names the old image, the retained name is
			// redundant: untag it (the image keeps ref).
			uctx := context.WithoutCancel(ctx)
			if now, ierr := cli.ImageInspect(uctx, ref); ierr == nil && now.ID == old.ID {
				cli.ImageRemove(uctx, retained, client.ImageRemoveOptions{})
			}
		}
		return err
	}
	return nil
}

// Remove drops the retained names of image id (any REF-skiff-<12 hex>);
// see RemoveRetained.
func (e *DockerEngine) Remove(ctx context.Context, id string) error {
	return e.removeRetained(ctx, "", id)
}

// RemoveRetained drops ref's retained name of image id: the engine only
// untags it if other names refer to the image, and deletes the image when
// it was the last (never forced: an image a container uses stays). An
// image without any name (one an older agent left untagged) is removed by
// its ID. An image that has only names the agent did not give it is kept
// (ErrNotOurs).
func (e *DockerEngine) RemoveRetained(ctx context.Context, ref, id string) error {
	return e.removeRetained(ctx, ref, id)
}

func (e *DockerEngine) removeRetained(ctx context.Context, ref, id string) error {
	cli, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	insp, err := cli.ImageInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return fmt.Errorf("docker image %s: %w", id, ErrNoImage)
		}
		return fmt.Errorf("docker image %s: %v: %w", id, err, layerfs.ErrEngine)
	}
	names, byID, err := dockerRemoval(ref, id, insp.ID, insp.RepoTags)
	if err != nil {
		return err
	}
	if byID {
		names = []string{insp.ID}
	}
	var errs []error
	for _, n := range names {
		if _, err := cli.ImageRemove(ctx, n, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove docker image %s (%s): %v: %w", n, id, err, layerfs.ErrEngine))
		}
	}
	return errors.Join(errs...)
}

// dockerRemoval decides how to remove image id (inspected: its ID is got,
// its names tags): the names to untag, ref's retained name if ref is set
// and any retained name of id otherwise; or, if the image has no name at
// all, the image itself by ID. An image with only names of others is not
// removed (ErrNotOurs).
func dockerRemoval(ref, id, got string, tags []string) (names []string, byID bool, err error) {
	if got != id {
		return nil, false, fmt.Errorf("docker image %s: the engine has %s under that ID: %w", id, got, ErrNoImage)
	}
	for _, t := range tags {
		if !isRetainedName(t, id) {
			continue
		}
		if ref != "" && !sameDockerName(t, retainedName(ref, id)) {
			continue
		}
		names = append(names, t)
	}
	switch {
	case len(names) > 0:
		return names, false, nil
	case len(tags) == 0:
		return nil, true, nil
	}
	return nil, false, fmt.Errorf("docker image %s is also %s: kept: %w", id, strings.Join(tags, ", "), ErrNotOurs)
}

// sameDockerName reports whether two image names are one for Docker
// (docker.io/library/web:x is web:x; a name without tag is :latest).
func sameDockerName(a, b string) bool {
	na, err := name.NewTag(a)
	if err != nil {
		return a == b
	}
	nb, err := name.NewTag(b)
	if err != nil {
		return a == b
	}
	return na.Name() == nb.Name()
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
