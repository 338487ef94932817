package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
)

// TestApplyOutputChecks: an --output that would replace the base is
// refused without --replace-base, and a missing output directory or an
// unreachable engine or registry is reported before any work (the delta
// named here does not even exist, so reaching it would say so).
func TestApplyOutputChecks(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	base := filepath.Join(dir, "old.tar")
	os.WriteFile(base, []byte("the base"), 0o644)
	os.Mkdir(filepath.Join(dir, "layout"), 0o755)
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(dir, "no-docker.sock"))
	for _, tc := range []struct {
		name, base, output string
		code               int
		want               string
	}{
		{"same archive", "docker-archive:" + base, "docker-archive:" + base, 2, "--replace-base"},
		{"same archive spelt otherwise", "docker-archive:" + base, "docker-archive:./old.tar:app:2", 2, "--replace-base"},
		{"archive as oci-archive", "docker-archive:" + base, "oci-archive:" + base, 2, "--replace-base"},
		{"same layout tag", "oci:layout:v1", "oci:" + filepath.Join(dir, "layout") + ":v1", 2, "--replace-base"},
		{"same engine tag", "docker-daemon:app:1", "docker-daemon:docker.io/library/app:1", 2, "--replace-base"},
		{"same registry tag", "docker://reg.example/app:1", "docker://reg.example/app:1", 2, "--replace-base"},
		{"missing directory", "docker-archive:" + base, "docker-archive:" + filepath.Join(dir, "nope", "new.tar"), 1, "directory " + filepath.Join(dir, "nope") + " does not exist"},
		{"no engine", "docker-archive:" + base, "docker-daemon:app:2", 1, "Docker Engine not reachable"},
		{"no registry", "docker-archive:" + base, "docker://127.0.0.1:1/app:2", 1, "registry 127.0.0.1:1"},
		// Not the base: on to the delta, which is missing.
		{"another layout tag", "oci:layout:v1", "oci:layout:v2", 1, "missing.skiff"},
		{"another archive", "docker-archive:" + base, "docker-archive:new.tar", 1, "missing.skiff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, "apply", "--base", tc.base, "--delta", "missing.skiff", "--output", tc.output, "--allow-unsigned")
			if err == nil || exitCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v (exit %d), want exit %d and %q", err, exitCode(err), tc.code, tc.want)
			}
		})
	}
	if b, _ := os.ReadFile(base); string(b) != "the base" {
		t.Errorf("the base changed: %q", b)
	}
}

// TestApplyReplaceBase: with --replace-base, an output that is the base is
// written (here: the layout tag the base had moves to the target).
func TestApplyReplaceBase(t *testing.T) {
	from, to, _ := smallPair(t)
	upd := filepath.Join(t.TempDir(), "u.skiff")
	if _, errOut, err := run(t, "diff", "--from", from, "--to", to, "-o", upd, "--level", "1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	args := []string{"apply", "--base", from, "--delta", upd, "--output", from, "--allow-unsigned"}
	if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "--replace-base") {
		t.Fatalf("output = base without --replace-base: %v", err)
	}
	if _, _, err := run(t, append(args, "--replace-base")...); err != nil {
		t.Fatal(err)
	}
	config := func(ref string) string {
		out, _, err := run(t, "inspect", "-o", "json", ref)
		if err != nil {
			t.Fatal(err)
		}
		var rep imageReport
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		return rep.ConfigDigest
	}
	if got, want := config(from), config(to); got != want {
		t.Errorf("the replaced base has config %s, want the target's %s", got, want)
	}
}

// TestDiffOutputMissingDir: -o in a missing directory is reported by the
// user's path, not a temporary name, before the images are read (these do
// not exist).
func TestDiffOutputMissingDir(t *testing.T) {
	out := filepath.Join(t.TempDir(), "nope", "u.skiff")
	_, _, err := run(t, "diff", "--from", "docker-archive:/nonexistent/a.tar", "--to", "docker-archive:/nonexistent/b.tar", "-o", out)
	if err == nil || !strings.Contains(err.Error(), out) || strings.Contains(err.Error(), ".tmp-") || strings.Contains(err.Error(), "a.tar") {
		t.Errorf("err %v, want one naming %s", err, out)
	}
}

// TestApplyUpToDate: a delta applied to its own target says "already up
// to date", exits 0 and writes nothing, from a file or standard input;
// another wrong base is still refused with both images named.
func TestApplyUpToDate(t *testing.T) {
	from, to, _ := smallPair(t)
	dir := t.TempDir()
	upd := filepath.Join(dir, "u.skiff")
	if _, errOut, err := run(t, "diff", "--from", from, "--to", to, "-o", upd, "--level", "1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	config := func(ref string) string {
		out, _, err := run(t, "inspect", "--format", "json", ref)
		if err != nil {
			t.Fatal(err)
		}
		var rep imageReport
		json.Unmarshal([]byte(out), &rep)
		return rep.ConfigDigest
	}
	target := config(to)
	output := filepath.Join(dir, "out.tar")
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"file", []string{"--delta", upd}, ""},
		{"stdin", []string{"--delta", "-"}, upd},
		{"json", []string{"--delta", upd, "--format", "json"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.stdin != "" {
				f, err := os.Open(tc.stdin)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				old := os.Stdin
				os.Stdin = f
				defer func() { os.Stdin = old }()
			}
			args := append([]string{"apply", "--base", to, "-o", "docker-archive:" + output, "--allow-unsigned"}, tc.args...)
			out, _, err := run(t, args...)
			if err != nil {
				t.Fatalf("apply to the target: %v", err)
			}
			if tc.name == "json" {
				var rep applyReport
				if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.UpToDate || rep.ConfigDigest != target {
					t.Errorf("json: %v %+v\n%s", err, rep, out)
				}
			} else if want := "already up to date: " + to + " is the delta's target (" + target + ")"; !strings.Contains(out, want) {
				t.Errorf("output %q lacks %q", out, want)
			}
			if _, err := os.Stat(output); !os.IsNotExist(err) {
				t.Errorf("--output written: %v", err)
			}
		})
	}
	// Any other base is still refused, naming both images.
	other := "oci:" + filepath.Join(dir, "other") + ":v1"
	img := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "etc/other", Data: "another image\n"}))
	if err := layerfs.Write(context.Background(), other, img); err != nil {
		t.Fatal(err)
	}
	_, _, err := run(t, "apply", "--base", other, "--delta", upd, "-o", "docker-archive:"+output, "--allow-unsigned")
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "another base image") || !strings.Contains(err.Error(), config(from)) {
		t.Errorf("another base: %v", err)
	}
}

// TestInspectDeltaSumsToFile: inspect counts a blob shared by several ops
// (the zstd pack, a zstd-dict group) once: header, skeletons and encoder
// bytes add up to the file (zstd-dict groups were counted per member).
func TestInspectDeltaSumsToFile(t *testing.T) {
	from, to, _ := smallPair(t)
	upd := filepath.Join(t.TempDir(), "u.skiff")
	if _, errOut, err := run(t, "diff", "--from", from, "--to", to, "-o", upd, "--level", "1"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	out, _, err := run(t, "inspect", "--format", "json", upd)
	if err != nil {
		t.Fatal(err)
	}
	var rep deltaReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	// The per-encoder file counts have diff's name, "ops".
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatal(err)
	}
	diffOut, _, err := run(t, "diff", "--from", from, "--to", to, "-o", filepath.Join(t.TempDir(), "v.skiff"), "--level", "1", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var diffKeys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(diffOut), &diffKeys); err != nil {
		t.Fatalf("diff --format json: %v\n%s", err, diffOut)
	}
	if keys["ops"] == nil || diffKeys["ops"] == nil {
		t.Errorf("inspect and diff JSON should both name the per-encoder counts \"ops\": inspect %v, diff %v", len(keys["ops"]), len(diffKeys["ops"]))
	}
	f, _ := os.Open(upd)
	defer f.Close()
	h, err := format.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	sum := h.BodyOffset
	for _, l := range rep.Layers {
		sum += l.SkeletonBytes
	}
	for _, n := range rep.EncoderBytes {
		sum += n
	}
	for _, st := range rep.Streams {
		sum += st.Bytes
	}
	if sum != rep.Size {
		t.Errorf("header %d + skeletons + encoders %v = %d, file is %d", h.BodyOffset, rep.EncoderBytes, sum, rep.Size)
	}
}

// TestApplyWritesTargetNames: names given to diff (--name) are carried in
// the delta and become the RepoTags of a docker-archive output that
// names no tag; one that names a tag keeps its own.
func TestApplyWritesTargetNames(t *testing.T) {
	from, to, _ := smallPair(t)
	dir := t.TempDir()
	upd := filepath.Join(dir, "u.skiff")
	if _, errOut, err := run(t, "diff", "--from", from, "--to", to, "-o", upd, "--level", "1",
		"--name", "registry.example/app:2", "--name", "app:latest"); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if _, _, err := run(t, "diff", "--from", from, "--to", to, "-o", filepath.Join(dir, "bad.skiff"), "--name", "app:"); exitCode(err) != 2 {
		t.Errorf("--name app: err %v (exit %d), want a usage error", err, exitCode(err))
	}
	repoTags := func(archive string) []string {
		t.Helper()
		f, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("no manifest.json in %s: %v", archive, err)
			}
			if h.Name != "manifest.json" {
				continue
			}
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&m); err != nil || len(m) != 1 {
				t.Fatalf("manifest.json: %v (%d entries)", err, len(m))
			}
			slices.Sort(m[0].RepoTags)
			return m[0].RepoTags
		}
	}
	for _, tc := range []struct {
		output string
		want   []string
	}{
		{"out.tar", []string{"app:latest", "registry.example/app:2"}},
		{"out.tar:mine:1", []string{"mine:1"}},
	} {
		p := filepath.Join(dir, strings.Split(tc.output, ":")[0])
		os.Remove(p)
		if _, errOut, err := run(t, "apply", "--base", from, "--delta", upd, "--output", "docker-archive:"+filepath.Join(dir, tc.output), "--allow-unsigned"); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if got := repoTags(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: RepoTags %v, want %v", tc.output, got, tc.want)
		}
	}
}
