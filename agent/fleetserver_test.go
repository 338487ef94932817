package agent

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/server"
)

// fleetServer is the real rollout server, in-process, for the agent's
// fleet tests: the images are written to an OCI layout under their tags
// (published by reference "oci:LAYOUT:TAG"), deltas use fast encoders and
// the pair's key; rollouts advance after reports and admin actions only.
type fleetServer struct {
	t      *testing.T
	hs     *httptest.Server
	layout string
}

func newFleetServer(t *testing.T, p *pair, images map[string]v1.Image) *fleetServer {
	t.Helper()
	layout := filepath.Join(t.TempDir(), "published")
	for tag, img := range images {
		if err := layerfs.Write(context.Background(), "oci:"+layout+":"+tag, img); err != nil {
			t.Fatal(err)
		}
	}
	fast := delta.DefaultOptions()
	fast.Bsdiff, fast.BsdiffX86, fast.BrotliQuality, fast.Level = false, false, 0, 1
	s, err := server.New(server.Config{
		DiffOptions: fast, StateDir: t.TempDir(), CacheDir: t.TempDir(),
		AdminTokens: []string{"admin-token"}, DeviceTokens: []string{"dev-token"},
		Signers: []crypto.Signer{p.key}, Logger: quietLogger(), RolloutTick: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return &fleetServer{t: t, hs: hs, layout: layout}
}

// URL is the server's base URL.
func (f *fleetServer) URL() string { return f.hs.URL }

// ref is the reference that publishes the image written under tag.
func (f *fleetServer) ref(tag string) string { return "oci:" + f.layout + ":" + tag }

// admin sends an admin request with a JSON body (nil: none), wants the
// status want and decodes the answer into out (nil: ignored).
func (f *fleetServer) admin(method, path string, body any, want int, out any) {
	f.t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	req, _ := http.NewRequest(method, f.hs.URL+path, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer admin-token")
	resp, err := f.hs.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		f.t.Fatalf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			f.t.Fatal(err)
		}
	}
}

// updateAnswered runs a.Update for image until the server's answer is not
// "pending" (the delta is computed on demand), within two minutes.
func updateAnswered(t *testing.T, a *Agent, image string) (*UpdateResult, error) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := a.Update(context.Background(), image)
		if err != nil || res.Updated || res.RolledBack || res.Check == nil || !res.Check.Pending {
			return res, err
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the delta stays pending", image)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// updateTo is updateAnswered that wants an installed update.
func updateTo(t *testing.T, a *Agent, image string) {
	t.Helper()
	res, err := updateAnswered(t, a, image)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated {
		t.Fatalf("no update: %+v", res.Check)
	}
}
