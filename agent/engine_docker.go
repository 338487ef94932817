package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
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
	_ restorer        = (*DockerEngine)(nil)
	_ leftoverRemover = (*DockerEngine)(nil)
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

// Inspect asks the engine about ref. The ID is the config digest on
// either image store (layerfs.InspectDaemon); with the containerd image
// store the manifest digest is known too.
func (e *DockerEngine) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	cli, err := e.dial(ctx)
	if err != nil {
		return ImageInfo{}, err
	}
	defer cli.Close()
	di, err := inspectDocker(ctx, cli, ref)
	if err != nil {
		return ImageInfo{}, err
	}
	return ImageInfo{ID: di.ConfigDigest, DiffIDs: di.DiffIDs, ManifestDigest: di.ManifestDigest, RepoDigests: di.RepoDigests}, nil
}

// inspectDocker is layerfs.InspectDaemon with the agent's errors.
func inspectDocker(ctx context.Context, cli *client.Client, ref string) (layerfs.DaemonImage, error) {
	di, err := layerfs.InspectDaemon(ctx, cli, ref)
	if errors.Is(err, layerfs.ErrImageNotFound) {
		return di, fmt.Errorf("docker image %s: %w", ref, ErrNoImage)
	}
	if err != nil {
		return di, fmt.Errorf("docker image %s: %w", ref, err)
	}
	return di, nil
}

// Base saves the image from the engine (docker-daemon:REF).
func (e *DockerEngine) Base(ctx context.Context, ref string) (v1.Image, func() error, error) {
	var opts []layerfs.Option
	if e.TempDir != "" {
		opts = append(opts, layerfs.WithTempDir(e.TempDir))
	}
	img, err := layerfs.Open(ctx, "docker-daemon:"+ref, opts...)
	if errors.Is(err, layerfs.ErrImageNotFound) {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoImage, err)
	}
	if err != nil {
		return nil, nil, err
	}
	return img, img.Close, nil
}

// Load loads img into the engine as ref; layerfs checks that the loaded
// image has img's config digest and diff_ids. The image ref named before
// is tagged with its retained name (REF-skiff-<12 hex of its config
// digest>) first, so that it stays reachable and Remove can later drop
// exactly that name.
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
	old, err := inspectDocker(ctx, cli, ref)
	switch {
	case err == nil && old.ConfigDigest != newID.String():
		retained = retainedName(ref, old.ConfigDigest)
		if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: old.EngineID, Target: retained}); err != nil {
			return fmt.Errorf("keep the replaced image %s as %s: %v: %w", old.ConfigDigest, retained, err, layerfs.ErrEngine)
		}
	case err != nil && !errors.Is(err, ErrNoImage):
		return err
	}
	if err := layerfs.Write(ctx, "docker-daemon:"+ref, img); err != nil {
		if retained != "" {
			// If ref still names the old image, the retained name is
			// redundant: untag it (the image keeps ref).
			uctx := context.WithoutCancel(ctx)
			if now, ierr := inspectDocker(uctx, cli, ref); ierr == nil && now.EngineID == old.EngineID {
				cli.ImageRemove(uctx, retained, client.ImageRemoveOptions{})
			}
		}
		return err
	}
	return nil
}

// Restore puts previous back under ref after a failed load: ref is tagged
// onto the retained image again and the retained name dropped; the image
// the failed load left is removed if no name refers to it any more (with
// previous "" ref itself is removed).
func (e *DockerEngine) Restore(ctx context.Context, ref, previous string) error {
	cli, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	failed, ferr := inspectDocker(ctx, cli, ref)
	if ferr != nil && !errors.Is(ferr, ErrNoImage) {
		return ferr
	}
	if previous == "" {
		if ferr == nil {
			if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				return fmt.Errorf("remove docker image %s: %v: %w", ref, err, layerfs.ErrEngine)
			}
		}
		return nil
	}
	if ferr == nil && failed.ConfigDigest == previous {
		return nil
	}
	retained := retainedName(ref, previous)
	prev, err := inspectDocker(ctx, cli, retained)
	if err != nil {
		return fmt.Errorf("the replaced image: %w", err)
	}
	if prev.ConfigDigest != previous {
		return fmt.Errorf("docker image %s is %s, not %s: %w", retained, prev.ConfigDigest, previous, ErrNoImage)
	}
	if _, err := cli.ImageTag(ctx, client.ImageTagOptions{Source: prev.EngineID, Target: ref}); err != nil {
		return fmt.Errorf("tag %s as %s again: %v: %w", previous, ref, err, layerfs.ErrEngine)
	}
	var errs []error
	if _, err := cli.ImageRemove(ctx, retained, client.ImageRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("untag %s: %v: %w", retained, err, layerfs.ErrEngine))
	}
	if ferr == nil && failed.EngineID != prev.EngineID {
		// The failed image, if nothing else names it now.
		if now, err := inspectDocker(ctx, cli, failed.EngineID); err == nil && len(now.RepoTags) == 0 {
			// A container the hook started from it keeps it (a conflict)
			// until the hook runs for previous: RemoveLeftover then.
			if _, err := cli.ImageRemove(ctx, failed.EngineID, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
				errs = append(errs, fmt.Errorf("remove the failed image %s: %v: %w", failed.EngineID, err, layerfs.ErrEngine))
			}
		}
	}
	return errors.Join(errs...)
}

// RemoveLeftover removes the image id (a config digest) if no name
// refers to it: what Restore had to leave while a container used it.
func (e *DockerEngine) RemoveLeftover(ctx context.Context, id string) error {
	cli, err := e.dial(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	res, err := cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return fmt.Errorf("list docker images: %v: %w", err, layerfs.ErrEngine)
	}
	for _, im := range res.Items {
		if slices.ContainsFunc(im.RepoTags, func(t string) bool { return t != "<none>:<none>" }) {
			continue // named (Docker 20.10 lists an unnamed image as <none>:<none>)
		}
		di, err := inspectDocker(ctx, cli, im.ID)
		if err != nil || di.ConfigDigest != id || len(di.RepoTags) > 0 {
			continue
		}
		if _, err := cli.ImageRemove(ctx, di.EngineID, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("remove the failed image %s: %v: %w", di.EngineID, err, layerfs.ErrEngine)
		}
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
	insp, err := e.findImage(ctx, cli, ref, id)
	if err != nil {
		return err
	}
	names, byID, err := dockerRemoval(ref, id, insp.ConfigDigest, insp.RepoTags)
	if err != nil {
		return err
	}
	if byID {
		names = []string{insp.EngineID}
	}
	var errs []error
	for _, n := range names {
		if _, err := cli.ImageRemove(ctx, n, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove docker image %s (%s): %v: %w", n, id, err, layerfs.ErrEngine))
		}
	}
	return errors.Join(errs...)
}

// findImage finds the image of config digest id: by that ID (the classic
// store), else by ref's retained name of it, else (ref "" or that name
// gone) among all images, by retained names of id and then by config
// digest (the containerd store knows images only by their manifest).
func (e *DockerEngine) findImage(ctx context.Context, cli *client.Client, ref, id string) (layerfs.DaemonImage, error) {
	if di, err := inspectDocker(ctx, cli, id); err == nil && di.ConfigDigest == id {
		return di, nil
	} else if err != nil && !errors.Is(err, ErrNoImage) {
		return di, err
	}
	if ref != "" {
		if di, err := inspectDocker(ctx, cli, retainedName(ref, id)); err == nil && di.ConfigDigest == id {
			return di, nil
		} else if err != nil && !errors.Is(err, ErrNoImage) {
			return di, err
		}
	}
	list, err := cli.ImageList(ctx, client.ImageListOptions{All: true})
	if err != nil {
		return layerfs.DaemonImage{}, fmt.Errorf("list docker images: %v: %w", err, layerfs.ErrEngine)
	}
	// Images with a retained name of id first: they are likely it.
	var first, rest []string
	for _, s := range list.Items {
		named := false
		for _, t := range s.RepoTags {
			named = named || isRetainedName(t, id)
		}
		if named {
			first = append(first, s.ID)
		} else {
			rest = append(rest, s.ID)
		}
	}
	for _, eid := range append(first, rest...) {
		di, err := inspectDocker(ctx, cli, eid)
		if err == nil && di.ConfigDigest == id {
			return di, nil
		}
	}
	return layerfs.DaemonImage{}, fmt.Errorf("docker image %s: %w", id, ErrNoImage)
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

// InUse lists the config digests of the images of all containers, running
// or not (the containerd store gives containers' images by manifest or
// index digest: each is resolved).
func (e *DockerEngine) InUse(ctx context.Context) (map[string]bool, error) {
	cli, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	cs, configs, err := dockerContainers(ctx, cli)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, c := range cs {
		used[c.ImageID] = true
		if cfg := configs[c.ImageID]; cfg != "" {
			used[cfg] = true
		}
	}
	return used, nil
}

// dockerContainers lists all containers that have an image, running or
// not, and the config digest of each of their image IDs ("" for an image
// that is gone; the containerd store's image ID is a manifest digest).
func dockerContainers(ctx context.Context, cli *client.Client) ([]container.Summary, map[string]string, error) {
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, nil, fmt.Errorf("list docker containers: %v: %w", err, layerfs.ErrEngine)
	}
	var cs []container.Summary
	configs := map[string]string{}
	for _, c := range res.Items {
		if c.ImageID == "" {
			continue
		}
		cs = append(cs, c)
		if _, done := configs[c.ImageID]; done {
			continue
		}
		di, err := inspectDocker(ctx, cli, c.ImageID)
		switch {
		case errors.Is(err, ErrNoImage):
			configs[c.ImageID] = ""
		case err != nil:
			return nil, nil, err
		default:
			configs[c.ImageID] = di.ConfigDigest
		}
	}
	return cs, configs, nil
}

// Containers lists the containers of the image id (a config digest),
// running or not, with the state and health check status the engine
// reports for each.
func (e *DockerEngine) Containers(ctx context.Context, id string) ([]ContainerStatus, error) {
	cli, err := e.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	cs, configs, err := dockerContainers(ctx, cli)
	if err != nil {
		return nil, err
	}
	var out []ContainerStatus
	for _, c := range cs {
		if configs[c.ImageID] != id && c.ImageID != id {
			continue
		}
		ci, err := cli.ContainerInspect(ctx, c.ID, client.ContainerInspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("inspect docker container %s: %v: %w", c.ID, err, layerfs.ErrEngine)
		}
		st := ContainerStatus{Name: strings.TrimPrefix(ci.Container.Name, "/")}
		if st.Name == "" {
			st.Name = c.ID
		}
		if s := ci.Container.State; s != nil {
			st.State = string(s.Status)
			if s.Health != nil {
				st.Health = string(s.Health.Status)
			}
		}
		out = append(out, st)
	}
	return out, nil
}
