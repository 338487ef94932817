package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/transport"
)

// TestPushPull: skiff push and skiff pull (registry and https) give back
// the delta byte for byte.
func TestPushPull(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "example", dir); err != nil {
		t.Fatal(err)
	}
	upd := filepath.Join(dir, "update.skiff")
	if _, _, err := run(t, "diff", "--from", "docker-archive:"+dir+"/old.tar", "--to", "docker-archive:"+dir+"/new.tar", "-o", upd); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(upd)

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	reg := strings.TrimPrefix(srv.URL, "http://")
	target, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	tref, _ := name.ParseReference(reg+"/app:2", name.Insecure)
	if err := remote.Write(tref, target); err != nil {
		t.Fatal(err)
	}
	tdig, _ := target.Digest()

	out, errOut, err := run(t, "--insecure", "push", upd, "docker://"+reg+"/app:delta", "--subject", "docker://"+reg+"/app:2")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	art := strings.TrimSpace(out)
	if _, err := digest.Parse(art); err != nil || !strings.Contains(errOut, "with subject "+tdig.String()) {
		t.Fatalf("push printed %q / %q", out, errOut)
	}
	found, err := transport.FindDeltas(context.Background(), tref.Context(), tdig)
	if err != nil || len(found) != 1 || found[0].Digest.String() != art {
		t.Fatalf("FindDeltas = %v, %v; want %s", found, err, art)
	}

	got := filepath.Join(dir, "pulled.skiff")
	out, errOut, err = run(t, "--insecure", "pull", "docker://"+reg+"/app@"+art, "-o", got, "--cache", filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if b, _ := os.ReadFile(got); !bytes.Equal(b, want) || !strings.Contains(out, "wrote "+got) {
		t.Fatalf("registry pull: %d bytes, want %d; output %q", len(b), len(want), out)
	}

	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer t0k" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(want))
	}))
	defer hs.Close()
	got2 := filepath.Join(dir, "fetched.skiff")
	out, errOut, err = run(t, "pull", hs.URL+"/d", "-o", got2, "--digest", digest.FromBytes(want).String(), "--limit-rate", "10M", "-H", "Authorization: Bearer t0k")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	if b, _ := os.ReadFile(got2); !bytes.Equal(b, want) || !strings.Contains(out, "verified sha256:") {
		t.Fatalf("https pull: output %q", out)
	}
	// A wrong digest: an error, and no file.
	bad := filepath.Join(dir, "bad.skiff")
	_, _, err = run(t, "pull", hs.URL+"/d", "-o", bad, "--digest", digest.FromString("other").String(), "-H", "Authorization: Bearer t0k")
	if err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("wrong --digest: %v", err)
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Error("file written despite the wrong digest")
	}
}

func TestPushPullUsage(t *testing.T) {
	for _, args := range [][]string{
		{"push", "x.skiff", "oci:/tmp/layout"},
		{"push", "x.skiff"},
		{"pull", "docker://reg/app:1"},
		{"pull", "ftp://host/x", "-o", "f"},
		{"pull", "https://host/x", "-o", "f", "--limit-rate", "fast"},
		{"pull", "https://host/x", "-o", "f", "--digest", "md5:abc"},
		{"pull", "docker://reg/app:1", "-o", "f", "--digest", "sha256:" + strings.Repeat("0", 64)},
		{"pull", "https://host/x", "-o", "f", "--cache", "/tmp/c"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, _, err := run(t, args...)
			if err == nil || exitCode(err) != 2 {
				t.Errorf("err = %v (exit %d), want a usage error", err, exitCode(err))
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "1M": 1 << 20, "500K": 500 << 10, "1.5m": 3 << 19, "20000": 20000, "2G": 2 << 30, "64kb": 64 << 10} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"x", "-1M", "0", "1T"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}
