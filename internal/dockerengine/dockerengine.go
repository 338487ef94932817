package dockerengine

import (
	"context"
	"fmt"
	"os"

	"github.com/moby/moby/client"
)

// Host describes where the engine is looked for, for error messages.
func Host() string {
	if h := os.Getenv(client.EnvOverrideHost); h != "" {
		return "DOCKER_HOST=" + h
	}
	return client.DefaultDockerHost + " (DOCKER_HOST is unset)"
}

// Dial connects to the engine, negotiates the API version and checks that
// it answers. The caller closes the client.
func Dial(ctx context.Context) (*client.Client, error) {
	cli, err := client.New(client.FromEnv)
	if err != nil {
		return nil, fmt.Errorf("engine client for %s: %v", Host(), err)
	}
	if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		cli.Close()
		return nil, fmt.Errorf("Docker Engine not reachable at %s: %w", Host(), err)
	}
	return cli, nil
}
