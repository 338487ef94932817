package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/agent"
	"github.com/skiff-dev/skiff/layerfs"
)

// TestAgentApplyAndStatus: the air-gapped path end to end through the CLI:
// a device holding example/app:1 in an OCI layout applies a delta file and
// reports its state.
func TestAgentApplyAndStatus(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "example", dir); err != nil {
		t.Fatal(err)
	}
	upd := filepath.Join(dir, "update.skiff")
	key := filepath.Join(dir, "release")
	if _, _, err := run(t, "key", "generate", "-o", key); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "diff", "--from", "docker-archive:"+dir+"/old.tar", "--to", "docker-archive:"+dir+"/new.tar", "-o", upd, "--sign", key+".key"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	images := filepath.Join(dir, "device")
	old, err := layerfs.Open(ctx, "docker-archive:"+dir+"/old.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := layerfs.Write(ctx, "oci:"+images+":app:stable", old); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("state_dir: "+state+"\ntrusted_keys: ['"+key+".pub']\nimages:\n  - name: app\n    engine: oci:"+images+"\n    ref: app:stable\n"+
		"    hook: echo $SKIFF_CONFIG_DIGEST > "+dir+"/hook.out\n"+
		"    source: {server: http://127.0.0.1:9, token: t, channel: stable}\n"), 0o644)

	out, _, err := run(t, "agent", "status", "--config", cfg)
	if err != nil || !strings.Contains(out, "no state yet") {
		t.Errorf("status before: %q, %v", out, err)
	}
	out, _, err = run(t, "agent", "apply", upd, "--config", cfg, "--image", "app")
	if err != nil {
		t.Fatal(err)
	}
	newImg, _ := layerfs.Open(ctx, "docker-archive:"+dir+"/new.tar")
	defer newImg.Close()
	want, _ := newImg.ConfigName()
	if !strings.Contains(out, "app: updated") || !strings.Contains(out, want.String()) {
		t.Errorf("apply output: %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "hook.out")); strings.TrimSpace(string(b)) != want.String() {
		t.Errorf("hook wrote %q", b)
	}
	out, _, err = run(t, "agent", "status", "--state-dir", state, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var st agent.State
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, out)
	}
	if s := st.Images["app"]; s == nil || s.Current.ConfigDigest != want.String() || s.LastUpdate.IsZero() || len(s.Previous) != 1 {
		t.Errorf("status: %s", out)
	}
	out, _, _ = run(t, "agent", "status", "--config", cfg)
	if !strings.Contains(out, "current:     "+want.String()) {
		t.Errorf("status text: %s", out)
	}
	// The same delta again: the device already runs its target, which is
	// no error (as a re-run after a kill past the load).
	out, _, err = run(t, "agent", "apply", upd, "--config", cfg, "--image", "app")
	if err != nil || !strings.Contains(out, "already runs the delta's target "+want.String()) {
		t.Errorf("second apply: %v\n%s", err, out)
	}
}

func TestAgentBadInput(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("state_dir: "+dir+"\nimages:\n  - name: app\n    engine: oci:"+dir+"/img\n    ref: app:1\n"+
		"    source: {server: http://127.0.0.1:9, token: t, channel: stable}\n"), 0o644)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("state_dir: "+dir+"\nimages:\n  - name: app\n    engine: podman\n"), 0o644)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"agent", "apply", "x.skiff", "--config", cfg, "--image", "nope"}, 2, `"nope" (configured: app)`},
		{[]string{"agent", "apply", "x.skiff", "--config", cfg}, 2, "required flag"},
		{[]string{"agent", "status", "--config", cfg, "-o", "yaml"}, 2, "--format table or json"},
		{[]string{"agent", "check", "--config", cfg, "--image", "nope"}, 2, "nope"},
		{[]string{"agent", "check", "--config", bad}, 1, `engine: "podman"`},
		{[]string{"agent", "run", "--config", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml"},
		{[]string{"agent", "apply", filepath.Join(dir, "missing.skiff"), "--config", cfg, "--image", "app"}, 1, "missing.skiff"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args[:2], " "), func(t *testing.T) {
			_, _, err := run(t, c.args...)
			if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v (exit %d), want exit %d naming %q", err, exitCode(err), c.code, c.msg)
			}
		})
	}
}
