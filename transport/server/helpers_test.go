package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"io"
	"log"
	"log/slog"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport/api"
)

const (
	adminToken  = "admin-secret-token"
	deviceToken = "device-secret-token"
)

// versions returns n images of one app, each a small edit of the one
// before, built from a seeded generator.
func versions(t testing.TB, n int) []v1.Image {
	t.Helper()
	rng := rand.New(rand.NewSource(5))
	words := strings.Fields("skiff ships exact deltas to devices on thin links over cellular satellite and lora gateways")
	var text strings.Builder
	for text.Len() < 40<<10 {
		text.WriteString(words[rng.Intn(len(words))])
		text.WriteByte(' ')
	}
	lib := make([]byte, 24<<10)
	rng.Read(lib)
	shared := imagetest.LayerTar(t, imagetest.File{Name: "etc/os-release", Data: "ID=skiff\nVERSION=1\n"})
	var out []v1.Image
	for i := range n {
		body := []byte(text.String())
		copy(body[1000*i+500:], fmt.Sprintf("edit number %d", i))
		l := append([]byte{}, lib...)
		l[4096*i+7] ^= 0xff
		out = append(out, imagetest.Image(t, shared, imagetest.LayerTar(t,
			imagetest.File{Name: "app/readme.txt", Data: string(body)},
			imagetest.File{Name: "app/config.yaml", Data: fmt.Sprintf("level: info\nversion: %d\n", i)},
			imagetest.File{Name: "app/lib/libx.so", Data: string(l)},
		)))
	}
	return out
}

// writeLayout writes imgs as tags v1, v2, ... of an OCI layout in dir and
// returns their references.
func writeLayout(t testing.TB, dir string, imgs []v1.Image) []string {
	t.Helper()
	var refs []string
	for i, img := range imgs {
		ref := fmt.Sprintf("oci:%s:v%d", dir, i+1)
		if err := layerfs.Write(context.Background(), ref, img); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, ref)
	}
	return refs
}

type testServer struct {
	*Server
	t        testing.TB
	stateDir string
	cacheDir string
}

func newTestServer(t testing.TB, stateDir, cacheDir string, mod func(*Config)) *testServer {
	t.Helper()
	cfg := Config{
		StateDir:     stateDir,
		CacheDir:     cacheDir,
		AdminTokens:  []string{adminToken},
		DeviceTokens: []string{deviceToken, "another-device-token"},
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		RefOptions:   []layerfs.Option{layerfs.WithInsecure(true)},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testServer{Server: s, t: t, stateDir: stateDir, cacheDir: cacheDir}
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// do runs one request against the handler.
func (ts *testServer) do(method, path, token string, body any, hdr ...string) *httptest.ResponseRecorder {
	ts.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			ts.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req := httptest.NewRequest(method, path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, req)
	return w
}

func (ts *testServer) publish(channel, image, ref string) api.Target {
	ts.t.Helper()
	w := ts.do("PUT", api.PathTargets+channel+"/"+image, adminToken, api.PublishRequest{Ref: ref})
	if w.Code != http.StatusOK {
		ts.t.Fatalf("publish %s: %d %s", ref, w.Code, w.Body)
	}
	var tg api.Target
	if err := json.Unmarshal(w.Body.Bytes(), &tg); err != nil {
		ts.t.Fatal(err)
	}
	return tg
}

func (ts *testServer) check(req api.CheckRequest) api.CheckResponse {
	ts.t.Helper()
	w := ts.do("POST", api.PathCheck, deviceToken, req)
	if w.Code != http.StatusOK {
		ts.t.Fatalf("check %+v: %d %s", req, w.Code, w.Body)
	}
	var resp api.CheckResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		ts.t.Fatal(err)
	}
	return resp
}

// waitDelta checks until the answer is no longer pending.
func (ts *testServer) waitDelta(req api.CheckRequest) api.CheckResponse {
	ts.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp := ts.check(req)
		if !resp.Pending {
			// The computation stores the delta, where this check found it,
			// before it counts itself in the metrics: let it finish.
			for testutil.ToFloat64(ts.metrics.inflight) > 0 {
				if time.Now().After(deadline) {
					ts.t.Fatalf("a computation still in progress after 60s")
				}
				time.Sleep(5 * time.Millisecond)
			}
			return resp
		}
		if resp.RetryAfter <= 0 {
			ts.t.Fatalf("pending answer without retry_after: %+v", resp)
		}
		if time.Now().After(deadline) {
			ts.t.Fatalf("delta still pending after 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// device describes what a device runs.
func device(t testing.TB, img v1.Image, channel, image string) api.CheckRequest {
	t.Helper()
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	req := api.CheckRequest{Device: "dev-1", Channel: channel, Image: image, ConfigDigest: cfg.String()}
	for _, d := range cf.RootFS.DiffIDs {
		req.DiffIDs = append(req.DiffIDs, d.String())
	}
	return req
}

func configDigest(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// quietLogger keeps ggcr's registry quiet in tests.
var quietLogger = log.New(io.Discard, "", 0)
