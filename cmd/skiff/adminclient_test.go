package main

import (
	"strings"
	"testing"
)

// TestAdminClientFlags: `skiff fleet devices` and every `skiff rollout`
// command take the same server, token and TLS flags, checked alike.
func TestAdminClientFlags(t *testing.T) {
	t.Setenv("SKIFF_ADMIN_TOKEN", "adm-token-0123456789")
	for _, args := range [][]string{
		{"fleet", "devices"},
		{"rollout", "status"},
		{"rollout", "abort", "r1"},
	} {
		args = append(args, "--server", "https://127.0.0.1:1", "--client-cert", "c.pem")
		_, _, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "--client-cert and --client-key go together") || exitCode(err) != 2 {
			t.Errorf("%v: %v (exit %d), want the usage error", args, err, exitCode(err))
		}
	}
}
