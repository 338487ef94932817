package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/buildinfo"
)

func TestVersion(t *testing.T) {
	formats := fmt.Sprintf("manifest versions %d to %d", format.MinVersion, format.MaxVersion)
	out, _, err := run(t, "version")
	if err != nil || !strings.Contains(out, "release ") || !strings.Contains(out, formats) || !strings.Contains(out, "go1.") {
		t.Fatalf("skiff version: %v\n%s", err, out)
	}
	out, _, err = run(t, "--version")
	if err != nil || !strings.HasPrefix(out, "skiff "+buildinfo.Get().Short()) || !strings.Contains(out, fmt.Sprintf("%d to %d", format.MinVersion, format.MaxVersion)) {
		t.Fatalf("skiff --version: %v\n%s", err, out)
	}
	out, _, err = run(t, "version", "--format", "json")
	var in buildinfo.Info
	if err != nil || json.Unmarshal([]byte(out), &in) != nil || in.ManifestMax != format.MaxVersion || in.Platform == "" {
		t.Fatalf("skiff version --format json: %v\n%s", err, out)
	}
	if _, _, err := run(t, "version", "extra"); err == nil {
		t.Fatal("skiff version extra: want a usage error")
	}
}
