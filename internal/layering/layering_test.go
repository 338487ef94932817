package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/skiff-dev/skiff/"

// forbidden lists, per package, packages it must not depend on, even
// indirectly (prefixes: "delta/" is every package under delta).
var forbidden = map[string][]string{
	"layerfs":          {"delta", "delta/", "transport", "agent", "cmd/"},
	"delta/format":     {"delta", "delta/bsdiff", "delta/exefilter", "delta/zsections", "delta/gnugzip", "layerfs", "transport", "agent", "github.com/andybalholm/brotli"},
	"delta":            {"transport", "agent", "cmd/"},
	"transport":        {"delta", "delta/bsdiff", "delta/exefilter", "delta/zsections", "transport/server", "agent", "github.com/andybalholm/brotli"},
	"transport/server": {"agent", "cmd/"},
	"agent":            {"transport/server", "cmd/"},
}

func TestLayering(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	for pkg, bans := range forbidden {
		out, err := exec.Command("go", "list", "-deps", module+pkg).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, ban := range bans {
				full := ban
				if !strings.Contains(ban, ".") {
					full = module + ban
				}
				if dep == full || (strings.HasSuffix(full, "/") && strings.HasPrefix(dep, full)) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
