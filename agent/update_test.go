package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "crypto/sha256"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/transport"
	"github.com/skiff-dev/skiff/transport/api"
)

// fakeServer implements the contract's POST /v1/check and GET
// /v1/deltas/{digest} for one (channel, image), offering delta for the base
// it names.
type fakeServer struct {
	t            *testing.T
	p            *pair
	delta        []byte // what GET /v1/deltas/{digest} serves
	checks       atomic.Int32
	fetchedBytes atomic.Int64
	lastReq      api.CheckRequest
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer dev-token" {
		w.WriteHeader(http.StatusUnauthorized)
		json.NewEncoder(w).Encode(api.Error{Error: "unknown token"})
		return
	}
	dg := digest.FromBytes(f.delta)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == api.PathCheck:
		f.checks.Add(1)
		var req api.CheckRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		f.lastReq = req
		resp := api.CheckResponse{Target: &api.Target{Ref: "oci:/nowhere:web", ConfigDigest: f.p.newID, ManifestDigest: f.p.newManifest}}
		switch req.ConfigDigest {
		case f.p.newID:
		case f.p.oldID:
			resp.Update = true
			resp.Delta = &api.Delta{URL: api.PathDeltas + dg.String(), Digest: dg.String(), Size: int64(len(f.delta))}
		default:
			resp.Update = true
		}
		json.NewEncoder(w).Encode(resp)
	case r.Method == http.MethodGet && r.URL.Path == api.PathDeltas+dg.String():
		cw := &countingWriter{ResponseWriter: w, n: &f.fetchedBytes}
		http.ServeContent(cw, r, "", time.Time{}, bytes.NewReader(f.delta))
	default:
		http.NotFound(w, r)
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return c.ResponseWriter.Write(b)
}

func serverSource(url string) string {
	return "server: " + url + "\ntoken: dev-token\nchannel: stable"
}

// TestUpdateFromServer: check-in with the running image, fetch the delta,
// apply it to the OCI layout's image, load, verify, hook, keep the old one.
func TestUpdateFromServer(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	fs := &fakeServer{t: t, p: p, delta: p.forward}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
	ctx := context.Background()

	cr, err := a.Check(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !cr.Update || cr.Delta == nil || cr.Target.ConfigDigest != p.newID || cr.Current.ID != p.oldID {
		t.Fatalf("check: %+v", cr)
	}
	if fs.lastReq.Device != "test-device" || fs.lastReq.Channel != "stable" || fs.lastReq.Image != "web" || len(fs.lastReq.DiffIDs) != 3 {
		t.Errorf("check request: %+v", fs.lastReq)
	}

	res, err := a.Update(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated || res.Via != "delta" || res.From != p.oldID || res.To.ConfigDigest != p.newID {
		t.Fatalf("update: %+v", res)
	}
	if got := fs.fetchedBytes.Load(); got != int64(len(p.forward)) {
		t.Errorf("fetched %d bytes, the delta has %d", got, len(p.forward))
	}
	info := d.running(t)
	if info.ID != p.newID || info.ManifestDigest != p.newManifest {
		t.Errorf("running %s (manifest %s), want %s (%s)", info.ID, info.ManifestDigest, p.newID, p.newManifest)
	}
	// The replaced image is kept (keep: 1 by default).
	kept, err := (&OCIEngine{Dir: d.images}).Inspect(ctx, retainedName("web:stable", p.oldID))
	if err != nil || kept.ID != p.oldID {
		t.Errorf("replaced image not kept: %v %+v", err, kept)
	}
	env := d.hookEnv(t)
	wantEnv := map[string]string{
		"SKIFF_IMAGE": "web", "SKIFF_REF": "web:stable", "SKIFF_CONFIG_DIGEST": p.newID,
		"SKIFF_MANIFEST_DIGEST": p.newManifest, "SKIFF_PREVIOUS_DIGEST": p.oldID,
	}
	if diff := cmp.Diff(wantEnv, env); diff != "" {
		t.Errorf("hook env (-want +got):\n%s", diff)
	}
	st, err := a.Status()
	if err != nil {
		t.Fatal(err)
	}
	s := st.Images["web"]
	if s.Current.ConfigDigest != p.newID || s.LastUpdate.IsZero() || s.LastCheck.IsZero() || s.LastError != "" ||
		s.Available != nil || !cmp.Equal(s.Previous, []string{p.oldID}) {
		t.Errorf("state: %+v", s)
	}
	// Nothing left in the work directory.
	if left, _ := filepath.Glob(filepath.Join(a.cfg.WorkDir, "deltas", "*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	// Up to date now.
	res, err = a.Update(ctx, "web")
	if err != nil || res.Updated || res.Check.Update {
		t.Errorf("second update: %+v, %v", res, err)
	}
}

// TestServerErrors: a wrong token and a delta for another base.
func TestServerErrors(t *testing.T) {
	p := testPair(t)
	ctx := context.Background()
	t.Run("token", func(t *testing.T) {
		d := newDevice(t, p)
		srv := httptest.NewServer(&fakeServer{t: t, p: p, delta: p.forward})
		defer srv.Close()
		a := newAgent(t, d.config(t, "server: "+srv.URL+"\ntoken: wrong\nchannel: stable", ""))
		_, err := a.Check(ctx, "web")
		if !errors.Is(err, ErrServer) || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "unknown token") {
			t.Fatalf("err = %v", err)
		}
		st, _ := a.Status()
		if !strings.Contains(st.Images["web"].LastError, "401") {
			t.Errorf("last_error %q", st.Images["web"].LastError)
		}
	})
	t.Run("wrong-delta", func(t *testing.T) {
		d := newDevice(t, p)
		// The server hands out a delta made for another base image.
		srv := httptest.NewServer(&fakeServer{t: t, p: p, delta: p.backward})
		defer srv.Close()
		a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
		before, _ := os.ReadFile(filepath.Join(d.images, "index.json"))
		_, err := a.Update(ctx, "web")
		if !errors.Is(err, format.ErrBaseMismatch) {
			t.Fatalf("err = %v, want ErrBaseMismatch", err)
		}
		after, _ := os.ReadFile(filepath.Join(d.images, "index.json"))
		if !bytes.Equal(before, after) || d.running(t).ID != p.oldID {
			t.Error("the layout changed")
		}
		st, _ := a.Status()
		if s := st.Images["web"]; !strings.Contains(s.LastError, "another base") || s.Current.ConfigDigest != p.oldID || !s.LastUpdate.IsZero() {
			t.Errorf("state: %+v", s)
		}
		if _, err := os.Stat(d.hookOut); err == nil {
			t.Error("the hook ran")
		}
	})
	t.Run("no-delta", func(t *testing.T) {
		d := newDevice(t, p)
		// The device runs an image the server does not know.
		if err := (&OCIEngine{Dir: d.images}).Load(ctx, p.new, "web:stable"); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(&fakeServer{t: t, p: p, delta: p.forward})
		defer srv.Close()
		fs := srv.Config.Handler.(*fakeServer)
		fs.p = &pair{oldID: p.oldID, newID: "sha256:" + strings.Repeat("ab", 32)}
		a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
		_, err := a.Update(ctx, "web")
		if !errors.Is(err, ErrNoDelta) || !strings.Contains(err.Error(), "allow_full_pull") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestUpdateFromRegistry: HEAD the tag, find the delta artifact (pushed by
// transport.Push with the target manifest as subject) in the deltas
// repository, pull it, apply, load, prune (keep: 0).
func TestUpdateFromRegistry(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	if err := remote.Write(imagetest.Ref(t, host+"/web:stable"), p.new); err != nil {
		t.Fatal(err)
	}
	deltaPath := writeFile(t, d.dir, "fw.skiff", p.forward)
	subject := transport.TargetSubject(&p.forwardHeaderRaw.Manifest)
	if subject == nil || subject.Digest.String() != p.newManifest {
		t.Fatalf("subject %v, want the target manifest %s", subject, p.newManifest)
	}
	if _, err := transport.Push(ctx, deltaPath, imagetest.Ref(t, host+"/web-deltas:1-2"), subject); err != nil {
		t.Fatal(err)
	}
	src := "registry: docker://" + host + "/web\ntag: stable\ndeltas: docker://" + host + "/web-deltas\ninsecure: true"
	a := newAgent(t, d.config(t, src, "    keep: 0\n"))

	cr, err := a.Check(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !cr.Update || cr.Delta == nil || cr.Target.ManifestDigest != p.newManifest || !strings.Contains(cr.Delta.Artifact, "/web-deltas@sha256:") {
		t.Fatalf("check: %+v %+v", cr, cr.Delta)
	}
	res, err := a.Update(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated || res.To.ManifestDigest != p.newManifest || !cmp.Equal(res.Pruned, []string{p.oldID}) {
		t.Fatalf("update: %+v", res)
	}
	if info := d.running(t); info.ID != p.newID || info.ManifestDigest != p.newManifest {
		t.Errorf("running %+v", info)
	}
	if _, err := (&OCIEngine{Dir: d.images}).Inspect(ctx, retainedName("web:stable", p.oldID)); !errors.Is(err, ErrNoImage) {
		t.Errorf("old image not pruned: %v", err)
	}
	// Blobs only the old image used are gone.
	oldLayers, _ := p.old.Manifest()
	for _, l := range oldLayers.Layers[1:] {
		if _, err := os.Stat(filepath.Join(d.images, "blobs", "sha256", l.Digest.Hex)); err == nil {
			t.Errorf("old layer blob %s left", l.Digest)
		}
	}
	st, _ := a.Status()
	if s := st.Images["web"]; len(s.Previous) != 0 || s.Current.ManifestDigest != p.newManifest {
		t.Errorf("state %+v", s)
	}
	// The registry HEAD now matches what runs.
	if cr, err := a.Check(ctx, "web"); err != nil || cr.Update {
		t.Errorf("after the update: %+v, %v", cr, err)
	}
	d.hookEnv(t)
}

// TestRegistryNoDelta: without a matching delta the agent reports; with
// allow_full_pull it pulls the target whole.
func TestRegistryNoDelta(t *testing.T) {
	p := testPair(t)
	ctx := context.Background()
	reg := httptest.NewServer(registry.New(registry.WithReferrersSupport(true)))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	if err := remote.Write(imagetest.Ref(t, host+"/web:stable"), p.new); err != nil {
		t.Fatal(err)
	}
	src := "registry: docker://" + host + "/web\ntag: stable\ninsecure: true"
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, src, ""))
	if _, err := a.Update(ctx, "web"); !errors.Is(err, ErrNoDelta) {
		t.Fatalf("err = %v, want ErrNoDelta", err)
	}
	if d.running(t).ID != p.oldID {
		t.Fatal("image changed")
	}
	a = newAgent(t, d.config(t, src, "    allow_full_pull: true\n"))
	res, err := a.Update(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if res.Via != "full-pull" || d.running(t).ID != p.newID {
		t.Errorf("full pull: %+v", res)
	}
}

// TestApplyFile: the air-gapped path, and a delta for another base.
func TestApplyFile(t *testing.T) {
	p := testPair(t)
	ctx := context.Background()
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, serverSource("http://127.0.0.1:9"), ""))
	// A delta neither from nor to what runs (a third image).
	eng := &OCIEngine{Dir: d.images}
	third := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "etc/third", Data: "neither\n"}))
	if err := eng.Load(ctx, third, "web:stable"); err != nil {
		t.Fatal(err)
	}
	thirdID, _ := third.ConfigName()
	wrong := writeFile(t, d.dir, "wrong.skiff", p.backward)
	_, err := a.ApplyFile(ctx, "web", wrong)
	if !errors.Is(err, format.ErrBaseMismatch) {
		t.Fatalf("wrong delta: %v", err)
	}
	st, _ := a.Status()
	if s := st.Images["web"]; !strings.Contains(s.LastError, "wrong.skiff") || d.running(t).ID != thirdID.String() {
		t.Errorf("after a wrong delta: %+v", s)
	}
	if err := eng.Load(ctx, p.old, "web:stable"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ApplyFile(ctx, "nope", wrong); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("unknown image: %v", err)
	}
	fw := writeFile(t, d.dir, "fw.skiff", p.forward)
	res, err := a.ApplyFile(ctx, "web", fw)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Updated || res.Via != "file" || d.running(t).ID != p.newID {
		t.Errorf("apply: %+v", res)
	}
	if _, err := os.Stat(fw); err != nil {
		t.Errorf("the user's delta file was removed: %v", err)
	}
	if env := d.hookEnv(t); env["SKIFF_CONFIG_DIGEST"] != p.newID {
		t.Errorf("hook env %v", env)
	}
	st, _ = a.Status()
	if s := st.Images["web"]; s.LastError != "" || s.Current.ConfigDigest != p.newID {
		t.Errorf("state %+v", s)
	}
	// The same file again — as after a kill that came after the load,
	// once the resumed install has finished it: the device runs the
	// delta's target, which is success, not "delta is for another base".
	os.Remove(d.hookOut)
	res, err = a.ApplyFile(ctx, "web", fw)
	if err != nil || res.Updated || res.To == nil || res.To.ConfigDigest != p.newID {
		t.Errorf("the file applied again: %+v, %v; want no update, no error", res, err)
	}
	st, _ = a.Status()
	if s := st.Images["web"]; s.LastError != "" || s.Current.ConfigDigest != p.newID {
		t.Errorf("state after the file applied again %+v", s)
	}
	if _, err := os.Stat(d.hookOut); err == nil {
		t.Error("the hook ran again")
	}
}

// TestHookFailure: a failing hook is an error recorded in the state, but
// the update stands.
func TestHookFailure(t *testing.T) {
	p := testPair(t)
	d := newDevice(t, p)
	c := d.config(t, serverSource("http://127.0.0.1:9"), "")
	c.Images[0].Hook = "echo restarting $SKIFF_IMAGE; exit 3"
	a := newAgent(t, c)
	_, err := a.ApplyFile(context.Background(), "web", writeFile(t, d.dir, "fw.skiff", p.forward))
	if !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "restarting web") || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err = %v", err)
	}
	st, _ := a.Status()
	if s := st.Images["web"]; s.Current.ConfigDigest != p.newID || !strings.Contains(s.LastError, "exit status 3") {
		t.Errorf("state %+v", s)
	}
}
