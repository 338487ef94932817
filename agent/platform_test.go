package agent

import (
	"errors"
	"runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/skiff-dev/skiff/layerfs"
)

// TestCheckPlatform: the agent refuses to load an image for another
// platform than its own (the config's platform, else what it runs on),
// and lets through one whose config names none.
func TestCheckPlatform(t *testing.T) {
	t.Parallel()
	p := testPair(t)
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, serverSource("http://127.0.0.1:9"), ""))
	cf, err := p.new.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		os, arch, variant, platform string
		ok                          bool
	}{
		{runtime.GOOS, runtime.GOARCH, "", "", true},
		{"linux", "riscv64", "", "", runtime.GOARCH == "riscv64"},
		{"linux", "arm64", "v8", "linux/arm64", true},
		{"linux", "arm", "v6", "linux/arm/v7", false},
		{"linux", "amd64", "", "linux/arm64", false},
		{"", "", "", "linux/arm64", true},
	} {
		c := cf.DeepCopy()
		c.OS, c.Architecture, c.Variant = tc.os, tc.arch, tc.variant
		img, err := mutate.ConfigFile(p.new, c)
		if err != nil {
			t.Fatal(err)
		}
		a.cfg.Platform = tc.platform
		err = a.checkPlatform(img)
		if ok := err == nil; ok != tc.ok || (err != nil && !errors.Is(err, layerfs.ErrPlatformMismatch)) {
			t.Errorf("%s/%s/%s on %q: %v, want ok=%v", tc.os, tc.arch, tc.variant, tc.platform, err, tc.ok)
		}
	}
}
