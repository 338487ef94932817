package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
	"github.com/skiff-dev/skiff/transport/server"
)

// smallPair writes two small versions of an app (a text file edited in
// place, a binary with a few bytes flipped, a new file) as tags v1 and v2
// of an OCI layout and returns their references.
func smallPair(t *testing.T) (from, to string, imgs [2]v1.Image) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	shared := imagetest.LayerTar(t, imagetest.File{Name: "etc/os-release", Data: "ID=skiff\n"})
	text := strings.Repeat("skiff ships exact deltas to devices on thin links. ", 800)
	lib := imagetest.Noise(15, 1, 48<<10)
	var refs [2]string
	for i := range 2 {
		l := bytes.Clone(lib)
		body := []byte(text)
		if i == 1 {
			l[1000] ^= 0xff
			l[30000] ^= 0x55
			copy(body[5000:], "an edit in version two")
		}
		files := []imagetest.File{
			{Name: "app/readme.txt", Data: string(body)},
			{Name: "app/lib/libx.so", Data: string(l)},
		}
		if i == 1 {
			files = append(files, imagetest.File{Name: "app/new.txt", Data: "new in v2\n"})
		}
		imgs[i] = imagetest.Image(t, shared, imagetest.LayerTar(t, files...))
		refs[i] = fmt.Sprintf("oci:%s:v%d", dir, i+1)
		if err := layerfs.Write(context.Background(), refs[i], imgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	return refs[0], refs[1], imgs
}

// TestDiffDefaultsAreServers: skiff diff's flags, left at their defaults,
// give delta.DefaultOptions() — the options skiff serve computes with —
// apart from the per-call fields. (The CLI capped encoders at 192 MiB, the
// server at 256 MiB: files of 20-27 MB got different bsdiff chunking.)
func TestDiffDefaultsAreServers(t *testing.T) {
	for _, to := range []string{"docker-archive:new.tar", "oci:layout:v2", "docker://reg.example/app:2"} {
		t.Run(to, func(t *testing.T) {
			o := &diffOptions{}
			cmd := &cobra.Command{}
			o.AddFlags(cmd)
			if err := cmd.Flags().Parse([]string{"--from", "docker-archive:old.tar", "--to", to, "-o", "x"}); err != nil {
				t.Fatal(err)
			}
			got, err := o.deltaOptions()
			if err != nil {
				t.Fatal(err)
			}
			want := delta.DefaultOptions()
			want.Manifest = !strings.HasPrefix(to, "docker-archive:")
			if diff := cmp.Diff(want, got, cmpopts.IgnoreUnexported(delta.Options{}), cmpopts.IgnoreFields(delta.Options{}, "Jobs")); diff != "" {
				t.Errorf("skiff diff's default options (-server +cli):\n%s", diff)
			}
		})
	}
}

// TestDiffServeSameDelta: skiff diff and skiff serve's server, each with
// its defaults, make byte-identical deltas for one pair.
func TestDiffServeSameDelta(t *testing.T) {
	from, to, imgs := smallPair(t)
	file := filepath.Join(t.TempDir(), "cli.skiff")
	if _, errOut, err := run(t, "diff", "--from", from, "--to", to, "-o", file); err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	cli, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	o := &serveOptions{stateDir: filepath.Join(dir, "state"), cacheDir: filepath.Join(dir, "cache"), maxDiffs: 1, retryAfter: time.Second}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(o.serverConfig(&globalOptions{}, log, []string{"adm"}, []string{"dev"}, nil, nil, -1))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	do := func(method, path, token string, body any) *httptest.ResponseRecorder {
		t.Helper()
		var r io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			r = bytes.NewReader(b)
		}
		req := httptest.NewRequest(method, path, r)
		req.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		return w
	}
	// The server diffs from images it published: v1, then v2.
	for _, ref := range []string{from, to} {
		if w := do("PUT", api.PathTargets+"stable/app", "adm", api.PublishRequest{Ref: ref}); w.Code != http.StatusOK {
			t.Fatalf("publish %s: %d %s", ref, w.Code, w.Body)
		}
	}
	cfg, _ := imgs[0].ConfigFile()
	cd, _ := imgs[0].ConfigName()
	check := api.CheckRequest{Device: "d1", Channel: "stable", Image: "app", ConfigDigest: cd.String()}
	for _, d := range cfg.RootFS.DiffIDs {
		check.DiffIDs = append(check.DiffIDs, d.String())
	}
	var resp api.CheckResponse
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		w := do("POST", api.PathCheck, "dev", check)
		if w.Code != http.StatusOK {
			t.Fatalf("check: %d %s", w.Code, w.Body)
		}
		resp = api.CheckResponse{}
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		if !resp.Pending {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("delta still pending after 60s")
		}
	}
	if resp.Delta == nil {
		t.Fatalf("no delta: %+v", resp)
	}
	w := do("GET", resp.Delta.URL, "dev", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("download: %d", w.Code)
	}
	if got := w.Body.Bytes(); !bytes.Equal(got, cli) {
		t.Errorf("skiff serve's delta (%d bytes) differs from skiff diff's (%d bytes)", len(got), len(cli))
	}
}
