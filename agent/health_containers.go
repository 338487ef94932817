package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ContainerStatus is one container of an image, as its engine reports it.
type ContainerStatus struct {
	// Name is the container's name or ID.
	Name string
	// State is the engine's word for it: running, exited, restarting,
	// created, paused, … (containerd: the task's status, "" with no task).
	State string
	// Health is the status of the container's health check (Docker's
	// HEALTHCHECK): "" without one, else starting, healthy or unhealthy.
	Health string
}

// containerLister is an engine that lists the containers of an image, for
// health.containers.
type containerLister interface {
	// Containers lists the containers whose image is id (a config digest),
	// running or not.
	Containers(ctx context.Context, id string) ([]ContainerStatus, error)
}

// errNoContainers: health.containers found no container of the target.
var errNoContainers = errors.New("no container uses the image")

// containersHealthy is nil when at least one container uses the image and
// every one of them is running, and healthy where it has a health check.
// A check still starting fails this try (the check is tried again until
// its timeout).
func containersHealthy(id string, cs []ContainerStatus) error {
	if len(cs) == 0 {
		return fmt.Errorf("%w %s", errNoContainers, shortID(id))
	}
	var bad []string
	for _, c := range cs {
		switch {
		case !strings.EqualFold(c.State, "running"):
			state := c.State
			if state == "" {
				state = "not started"
			}
			bad = append(bad, fmt.Sprintf("%s is %s", c.Name, state))
		case c.Health == "" || c.Health == "healthy" || c.Health == "none":
		case c.Health == "starting":
			bad = append(bad, fmt.Sprintf("%s: health check starting", c.Name))
		default:
			bad = append(bad, fmt.Sprintf("%s is %s", c.Name, c.Health))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("containers of %s: %s", shortID(id), strings.Join(bad, "; "))
	}
	return nil
}

// checkContainers checks the containers of target on im's engine.
func (a *Agent) checkContainers(ctx context.Context, im *ImageConfig, target string) error {
	l, ok := a.engines[im.Name].(containerLister)
	if !ok {
		return fmt.Errorf("the %s engine cannot list containers (health.containers)", im.Engine)
	}
	cs, err := l.Containers(ctx, target)
	if err != nil {
		return err
	}
	return containersHealthy(target, cs)
}

func shortID(id string) string {
	if h, ok := strings.CutPrefix(id, "sha256:"); ok && len(h) >= 12 {
		return h[:12]
	}
	return id
}
