package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// run executes skiff with args and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

func TestMainJob(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "example", dir); err != nil {
		t.Fatal(err)
	}
	upd := filepath.Join(dir, "update.skiff")
	key := filepath.Join(dir, "release")
	if _, _, err := run(t, "key", "generate", "-o", key); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "diff", "--from", "docker-archive:"+dir+"/old.tar", "--to", "docker-archive:"+dir+"/new.tar", "-o", upd, "--sign", key+".key")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wrote " + upd, "reused from the base", "already on the device", "pulling the changed layers"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "inspect", upd, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep deltaReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("inspect -o json: %v\n%s", err, out)
	}
	if len(rep.Layers) != 3 || rep.Reproducible {
		t.Errorf("inspect: %d layers, reproducible %v", len(rep.Layers), rep.Reproducible)
	}
	rebuilt := "docker-archive:" + filepath.Join(dir, "rebuilt.tar")
	if _, _, err := run(t, "apply", "--base", "docker-archive:"+dir+"/old.tar", "--delta", upd, "--output", rebuilt, "--trust", key+".pub"); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "inspect", "--verify", "-o", "json", rebuilt)
	if err != nil {
		t.Fatal(err)
	}
	var got, want imageReport
	json.Unmarshal([]byte(out), &got)
	out, _, _ = run(t, "inspect", "-o", "json", "docker-archive:"+dir+"/new.tar")
	json.Unmarshal([]byte(out), &want)
	if got.ConfigDigest == "" || got.ConfigDigest != want.ConfigDigest || !got.Verified {
		t.Errorf("rebuilt image %s (verified %v), want %s", got.ConfigDigest, got.Verified, want.ConfigDigest)
	}
	// Applying to the target itself: already up to date (TestApplyUpToDate).
	out, _, err = run(t, "apply", "--base", "docker-archive:"+dir+"/new.tar", "--delta", upd, "--output", "docker-archive:"+dir+"/x.tar", "--trust", key+".pub")
	if err != nil || !strings.Contains(out, "already up to date") || !strings.Contains(out, want.ConfigDigest) {
		t.Errorf("apply to the target: %v\n%s", err, out)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"inspect", "--bogus", "x"}, 2, "unknown flag"},
		{[]string{"inspect", "-o", "yaml", "docker-archive:x.tar"}, 2, "table or json"},
		{[]string{"inspect", "nosuch:thing"}, 2, "docker-archive"},
		{[]string{"inspect", "docker-archive:"}, 2, "missing path"},
		{[]string{"diff", "--from", "docker-archive:a", "--to", "oci:", "-o", "x"}, 2, "missing path"},
		{[]string{"inspect", "docker-archive:/does/not/exist.tar"}, 1, "does not exist"},
		{[]string{"diff", "--from", "a", "--to", "b"}, 2, "required flag"},
		{[]string{"diff", "--from", "docker-archive:a", "--to", "docker-archive:b", "-o", "x", "--encoders", "lzma"}, 2, "unknown encoder"},
		{[]string{"apply", "--base", "docker-archive:a", "--delta", "d", "--output", "ftp:x"}, 2, "transport"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, _, err := run(t, c.args...)
			if err == nil {
				t.Fatal("no error")
			}
			if exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("exit %d, error %q; want exit %d and %q", exitCode(err), err, c.code, c.msg)
			}
		})
	}
}

// TestApplyTimes: durations under a second print in ms, not "0.0s".
func TestApplyTimes(t *testing.T) {
	got := applyTimes(40*time.Millisecond, 3*time.Millisecond, 1500*time.Millisecond, 250*time.Microsecond, 10e6)
	want := "base taken apart in 40ms, delta read in 3ms, 10.0 MB of layers rebuilt and hashed in 1.5s (7 MB/s), blobs re-compressed in <1ms"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
