package layerfs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"
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
// images.
func openDaemon(ctx context.Context, r Ref, o *refOptions) (_ *Image, err error) {
	cli, err := dialEngine(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	defer cli.Close()
	insp, err := cli.ImageInspect(ctx, r.Name)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return nil, fmt.Errorf("open %s: image %q is not in the engine at %s: %w", r, r.Name, engineHost(), ErrImageNotFound)
		}
		return nil, fmt.Errorf("open %s: inspect in engine at %s: %v: %w", r, engineHost(), err, ErrEngine)
	}
	if insp.ID == "" {
		return nil, fmt.Errorf("open %s: engine at %s reported no image ID: %w", r, engineHost(), ErrEngine)
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
	rc, err := cli.ImageSave(ctx, []string{insp.ID})
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

	insp, err := cli.ImageInspect(ctx, r.Name)
	if err != nil {
		return fmt.Errorf("write %s: engine at %s does not show the loaded image (load said %q): %v: %w", r, engineHost(), msg, err, ErrEngine)
	}
	if insp.ID != cfg.String() {
		return fmt.Errorf("write %s: engine image ID %s, want config digest %s: %w", r, insp.ID, cfg, ErrImageIDMismatch)
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
