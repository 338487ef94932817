package layerfs

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxLoadResponse caps how much of the engine's answer to an image load is
// read (it is a short JSON stream of progress and status messages).
const maxLoadResponse = 4 << 20

// engineHost describes where the engine is looked for, for error messages.
func engineHost() string {
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return "DOCKER_HOST=" + h
	}
	return client.DefaultDockerHost + " (DOCKER_HOST is unset)"
}

// dialEngine connects to the Docker Engine named by the environment
// (DOCKER_HOST, DOCKER_API_VERSION, DOCKER_CERT_PATH, DOCKER_TLS_VERIFY),
// negotiates the API version and checks that it answers.
func dialEngine(ctx context.Context, r Ref) (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: engine client for %s: %v: %w", r, engineHost(), err, ErrEngine)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("%s: Docker Engine not reachable at %s: %v: %w", r, engineHost(), err, ErrEngine)
	}
	return cli, nil
}

// openDaemon saves the image from the engine into a temporary file (removed
// by Close) and opens it as a docker-archive. The image is saved by the ID
// the engine reports for r.Name, so a tag moved meanwhile cannot mix two
// images; with the containerd image store, an index is saved for the
// engine's platform only.
func openDaemon(ctx context.Context, r Ref, o *refOptions) (_ *Image, err error) {
	cli, err := dialEngine(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	defer cli.Close()
	di, err := InspectDaemon(ctx, cli, r.Name)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	var saveOpts []client.ImageSaveOption
	if di.ContainerdStore && di.ManifestDigest != di.EngineID {
		// An index: save only the manifest of the engine's platform.
		insp, err := cli.ImageInspect(ctx, di.EngineID)
		if err != nil {
			return nil, fmt.Errorf("open %s: inspect in engine at %s: %v: %w", r, engineHost(), err, ErrEngine)
		}
		saveOpts = append(saveOpts, client.ImageSaveWithPlatforms(ocispec.Platform{OS: insp.Os, Architecture: insp.Architecture, Variant: insp.Variant}))
	}

	f, err := os.CreateTemp(o.tempDir, "skiff-docker-daemon-*.tar")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r, err)
	}
	tmp := f.Name()
	cleanup := func() error { return os.Remove(tmp) }
	defer func() {
		if err != nil {
			_ = cleanup()
		}
	}()
	rc, err := cli.ImageSave(ctx, []string{di.EngineID}, saveOpts...)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: save from engine at %s: %v: %w", r, engineHost(), err, ErrEngine)
	}
	_, err = io.Copy(f, rc)
	rc.Close()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: save from engine at %s: %w", r, engineHost(), err)
	}
	img, err := openDockerArchive(r, tmp, "")
	if err != nil {
		return nil, err
	}
	return &Image{Image: img, Ref: r, cleanup: cleanup}, nil
}

// writeDaemon loads img into the engine as r.Name (which must be NAME:TAG):
// a docker-archive is streamed from tarball.Write through a pipe into the
// engine's load endpoint, then the loaded image's ID is checked to be the
// config digest of img.
func writeDaemon(ctx context.Context, r Ref, img v1.Image) error {
	if imageIDRe.MatchString(r.Name) || strings.Contains(r.Name, "@") {
		return fmt.Errorf("write %s: loading into the engine needs NAME:TAG, not an ID or digest: %w", r, ErrBadReference)
	}
	tag, err := name.NewTag(r.Name)
	if err != nil {
		return fmt.Errorf("write %s: tag %q: %v: %w", r, r.Name, err, ErrBadReference)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("write %s: config digest: %w", r, err)
	}
	cli, err := dialEngine(ctx, r)
	if err != nil {
		return fmt.Errorf("write %w", err)
	}
	defer cli.Close()

	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := tarball.Write(tag, img, pw)
		pw.CloseWithError(err)
		werr <- err
	}()
	msg, loadErr := engineLoad(ctx, cli, pr)
	// Unblock the writer if the engine stopped reading early.
	loadDone := errors.New("engine stopped reading the archive")
	pr.CloseWithError(loadDone)
	if err := <-werr; err != nil && (loadErr == nil || !errors.Is(err, loadDone)) {
		// A failure to produce the archive is the root cause of any load
		// error; an engine that reported success without reading it all
		// is an error too.
		return fmt.Errorf("write %s: stream docker-archive to engine at %s: %v: %w", r, engineHost(), err, ErrEngine)
	}
	if loadErr != nil {
		return fmt.Errorf("write %s: load into engine at %s: %v: %w", r, engineHost(), loadErr, ErrEngine)
	}

	got, err := InspectDaemon(ctx, cli, r.Name)
	if err != nil {
		return fmt.Errorf("write %s: engine at %s does not show the loaded image (load said %q): %w", r, engineHost(), msg, err)
	}
	if got.ConfigDigest != cfg.String() {
		return fmt.Errorf("write %s: engine image %s has config digest %s, want %s: %w", r, got.EngineID, got.ConfigDigest, cfg, ErrImageIDMismatch)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("write %s: config: %w", r, err)
	}
	want := make([]string, len(cf.RootFS.DiffIDs))
	for i, d := range cf.RootFS.DiffIDs {
		want[i] = d.String()
	}
	if got.DiffIDs != nil && strings.Join(got.DiffIDs, ",") != strings.Join(want, ",") {
		return fmt.Errorf("write %s: engine image %s has diff_ids %v, want %v: %w", r, got.EngineID, got.DiffIDs, want, ErrImageIDMismatch)
	}
	return nil
}

// engineLoad posts a docker-archive to the engine and reads its JSON
// message stream, returning the status text or the first error it reports.
func engineLoad(ctx context.Context, cli *client.Client, archive io.Reader) (string, error) {
	res, err := cli.ImageLoad(ctx, archive, client.ImageLoadWithQuiet(true))
	if err != nil {
		return "", err
	}
	defer res.Close()
	dec := json.NewDecoder(io.LimitReader(res, maxLoadResponse))
	var status []string
	for {
		var m struct {
			Stream      string `json:"stream"`
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			return strings.Join(status, "; "), fmt.Errorf("unreadable engine response: %v", err)
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return strings.Join(status, "; "), errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return strings.Join(status, "; "), errors.New(m.Error)
		}
		if s := strings.TrimSpace(m.Stream + m.Status); s != "" {
			status = append(status, s)
		}
	}
	return strings.Join(status, "; "), nil
}

// DaemonImage is an image as a Docker Engine holds it, named by what does
// not depend on the engine's image store: its config digest and diff_ids.
//
// The classic (graph driver) store's image ID is the config digest. The
// containerd image store's is the digest of the stored manifest or index
// (inspect also returns it as Descriptor), and `image inspect <config
// digest>` finds nothing there; the config digest is then read from the
// manifest.
type DaemonImage struct {
	// EngineID is the engine's own image ID: the config digest (classic
	// store) or the manifest or index digest (containerd store). Engine
	// calls (tag, save, remove) take it.
	EngineID string
	// ConfigDigest is the digest of the image config.
	ConfigDigest string
	// ManifestDigest is the digest of the stored manifest of the engine's
	// platform (containerd store); "" for the classic store, which keeps
	// no manifest.
	ManifestDigest string
	// DiffIDs are the uncompressed layer digests, in order.
	DiffIDs     []string
	RepoTags    []string
	RepoDigests []string
	// ContainerdStore: the engine uses the containerd image store.
	ContainerdStore bool
}

// maxManifestBlob bounds a blob of a saved image that is read as a
// manifest or index; bigger blobs are layers and skipped.
const maxManifestBlob = 4 << 20

// configCache maps a manifest or index digest (plus platform) to the config
// digest it names: content addressed, so an entry never goes stale. Only
// filled, never changed; guarded by its mutex.
var configCache = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// InspectDaemon describes the image the engine holds under nameOrID (a
// name, the engine's ID, or a config digest: the containerd store, which
// does not know images by it, is searched). The error wraps
// ErrImageNotFound when the engine has no such image.
func InspectDaemon(ctx context.Context, cli *client.Client, nameOrID string) (DaemonImage, error) {
	di, err := inspectDaemon(ctx, cli, nameOrID)
	if !errors.Is(err, ErrImageNotFound) || !imageIDRe.MatchString(nameOrID) {
		return di, err
	}
	want := nameOrID
	if !strings.HasPrefix(want, "sha256:") {
		want = "sha256:" + want
	}
	list, lerr := cli.ImageList(ctx, client.ImageListOptions{All: true})
	if lerr != nil {
		return DaemonImage{}, fmt.Errorf("list images in engine at %s: %v: %w", engineHost(), lerr, ErrEngine)
	}
	for _, s := range list.Items {
		if s.ID == want {
			continue // asked already
		}
		d, ierr := inspectDaemon(ctx, cli, s.ID)
		if ierr == nil && d.ConfigDigest == want {
			return d, nil
		}
	}
	return di, err
}

func inspectDaemon(ctx context.Context, cli *client.Client, nameOrID string) (DaemonImage, error) {
	insp, err := cli.ImageInspect(ctx, nameOrID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return DaemonImage{}, fmt.Errorf("image %q is not in the engine at %s: %w", nameOrID, engineHost(), ErrImageNotFound)
		}
		return DaemonImage{}, fmt.Errorf("inspect %s in engine at %s: %v: %w", nameOrID, engineHost(), err, ErrEngine)
	}
	if insp.ID == "" {
		return DaemonImage{}, fmt.Errorf("inspect %s: engine at %s reported no image ID: %w", nameOrID, engineHost(), ErrEngine)
	}
	di := DaemonImage{EngineID: insp.ID, RepoTags: insp.RepoTags, RepoDigests: insp.RepoDigests}
	if insp.RootFS.Layers != nil {
		di.DiffIDs = append([]string{}, insp.RootFS.Layers...)
	}
	if insp.Descriptor == nil || !isManifestOrIndex(insp.Descriptor.MediaType) {
		di.ConfigDigest = insp.ID
		return di, nil
	}
	di.ContainerdStore = true
	plat := ocispec.Platform{OS: insp.Os, Architecture: insp.Architecture, Variant: insp.Variant}
	manifest := insp.Descriptor.Digest.String()
	var platforms []ocispec.Platform
	if isIndex(insp.Descriptor.MediaType) {
		// The engine describes the manifest of its own platform (the
		// top-level fields); find that manifest among the index's.
		mi, err := cli.ImageInspect(ctx, insp.ID, client.ImageInspectWithManifests(true))
		if err != nil {
			return DaemonImage{}, fmt.Errorf("inspect the manifests of %s in engine at %s: %v: %w", nameOrID, engineHost(), err, ErrEngine)
		}
		manifest = ""
		for _, m := range mi.Manifests {
			if m.Kind != image.ManifestKindImage || !m.Available || m.ImageData == nil {
				continue
			}
			p := m.ImageData.Platform
			if p.OS == plat.OS && p.Architecture == plat.Architecture && (plat.Variant == "" || p.Variant == plat.Variant) {
				manifest = m.ID
				break
			}
		}
		if manifest == "" {
			return DaemonImage{}, fmt.Errorf("inspect %s: index %s has no available manifest for %s/%s: %w", nameOrID, insp.ID, plat.OS, plat.Architecture, ErrEngine)
		}
		platforms = []ocispec.Platform{plat}
	}
	di.ManifestDigest = manifest
	cfg, err := daemonConfigDigest(ctx, cli, insp.ID, manifest, platforms)
	if err != nil {
		return DaemonImage{}, fmt.Errorf("config digest of %s (%s): %w", nameOrID, insp.ID, err)
	}
	di.ConfigDigest = cfg
	return di, nil
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

func isManifestOrIndex(mt string) bool {
	return isIndex(mt) || mt == ocispec.MediaTypeImageManifest || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

// daemonConfigDigest reads the config digest that manifest names from the
// engine's save stream of image id. The stream is closed as soon as the
// manifest blob has been read; Docker 28 writes the blobs in digest order,
// so at worst the whole image is read (the Engine API has no call for one
// blob). The answer is cached for the process (content addressed).
func daemonConfigDigest(ctx context.Context, cli *client.Client, id, manifest string, platforms []ocispec.Platform) (string, error) {
	key := manifest
	configCache.Lock()
	cfg, ok := configCache.m[key]
	configCache.Unlock()
	if ok {
		return cfg, nil
	}
	var opts []client.ImageSaveOption
	if len(platforms) > 0 {
		opts = append(opts, client.ImageSaveWithPlatforms(platforms...))
	}
	rc, err := cli.ImageSave(ctx, []string{id}, opts...)
	if err != nil {
		return "", fmt.Errorf("save from engine at %s: %v: %w", engineHost(), err, ErrEngine)
	}
	defer rc.Close()
	cfg, err = configFromSave(rc, manifest)
	if err != nil {
		return "", err
	}
	configCache.Lock()
	configCache.m[key] = cfg
	configCache.Unlock()
	return cfg, nil
}

// configFromSave reads a saved image (OCI layout with manifest.json, as the
// containerd store writes it) until it has the blob of manifest, and
// returns the config digest that manifest names (or, in an archive without
// manifest blobs, the config manifest.json names).
func configFromSave(r io.Reader, manifest string) (string, error) {
	want, err := digest.Parse(manifest)
	if err != nil {
		return "", fmt.Errorf("manifest digest %q: %v: %w", manifest, err, ErrEngine)
	}
	tr := tar.NewReader(r)
	var legacy string // manifest.json's Config, if seen
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("read the saved image: %v: %w", err, ErrEngine)
		}
		n := strings.TrimPrefix(h.Name, "./")
		switch {
		case n == "blobs/"+want.Algorithm().String()+"/"+want.Encoded():
			if h.Size > maxManifestBlob {
				return "", fmt.Errorf("manifest %s is %d bytes: %w", want, h.Size, ErrEngine)
			}
			b, err := io.ReadAll(io.LimitReader(tr, maxManifestBlob))
			if err != nil {
				return "", fmt.Errorf("read manifest %s: %v: %w", want, err, ErrEngine)
			}
			if digest.FromBytes(b) != want {
				return "", fmt.Errorf("manifest blob %s does not match its digest: %w", want, ErrEngine)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(b, &m); err != nil || m.Config.Digest == "" {
				return "", fmt.Errorf("manifest %s names no config (%v): %w", want, err, ErrEngine)
			}
			if err := m.Config.Digest.Validate(); err != nil {
				return "", fmt.Errorf("manifest %s: config digest: %v: %w", want, err, ErrEngine)
			}
			return m.Config.Digest.String(), nil
		case n == "manifest.json" && h.Size <= maxManifestBlob:
			var m []struct{ Config string }
			b, _ := io.ReadAll(io.LimitReader(tr, maxManifestBlob))
			if json.Unmarshal(b, &m) == nil && len(m) == 1 {
				legacy = m[0].Config
			}
		}
	}
	// No manifest blob (an engine that saves docker-archives only): the
	// single image's config file is named by its digest.
	if p := strings.TrimPrefix(legacy, "blobs/"); p != legacy || strings.HasSuffix(legacy, ".json") {
		p = strings.TrimSuffix(strings.Replace(p, "/", ":", 1), ".json")
		if !strings.Contains(p, ":") {
			p = "sha256:" + p
		}
		if d, err := digest.Parse(p); err == nil {
			return d.String(), nil
		}
	}
	return "", fmt.Errorf("the saved image has no manifest %s: %w", want, ErrEngine)
}
