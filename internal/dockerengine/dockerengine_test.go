package dockerengine

import (
	"context"
	"strings"
	"testing"
)

func TestDialUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	_, err := Dial(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not reachable at DOCKER_HOST=unix:///nonexistent/docker.sock") {
		t.Errorf("err %v, want one naming DOCKER_HOST", err)
	}
}
