package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestAntiRollback: after installing publish #5 of its channel, the agent
// refuses a target the server offers as an older publish (#3: a stale or
// replayed answer) and keeps running what it runs; the admin's rollback to
// the old image, a new publish (#6), is installed.
func TestAntiRollback(t *testing.T) {
	t.Parallel()
	p := testPair(t)
	var answer atomic.Pointer[api.CheckResponse]
	var serve atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == api.PathCheck:
			json.NewEncoder(w).Encode(answer.Load())
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, api.PathDeltas):
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(*serve.Load()))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	offer := func(delta []byte, id, manifest string, serial int64) {
		dg := digest.FromBytes(delta)
		serve.Store(&delta)
		answer.Store(&api.CheckResponse{Update: true,
			Target: &api.Target{Ref: "oci:/nowhere:web", ConfigDigest: id, ManifestDigest: manifest, Serial: serial},
			Delta:  &api.Delta{URL: api.PathDeltas + dg.String(), Digest: dg.String(), Size: int64(len(delta))}})
	}
	d := newDevice(t, p)
	a := newAgent(t, d.config(t, serverSource(srv.URL), ""))
	ctx := context.Background()

	offer(p.forward, p.newID, p.newManifest, 5)
	if res, err := a.Update(ctx, "web"); err != nil || !res.Updated {
		t.Fatalf("publish #5: %+v, %v", res, err)
	}
	st, _ := a.Status()
	if c := st.Images["web"].Current; c.Serial != 5 || c.Channel != "stable" {
		t.Fatalf("installed %+v, want serial 5 of stable", c)
	}

	offer(p.backward, p.oldID, "", 3)
	_, err := a.Update(ctx, "web")
	if !errors.Is(err, ErrRollback) || !strings.Contains(err.Error(), "publish #3") || !strings.Contains(err.Error(), "#5") {
		t.Fatalf("publish #3 after #5: %v, want ErrRollback naming both", err)
	}
	if got := d.running(t).ID; got != p.newID {
		t.Fatalf("after the refused rollback the device runs %s", got)
	}

	offer(p.backward, p.oldID, "", 6)
	if res, err := a.Update(ctx, "web"); err != nil || !res.Updated || d.running(t).ID != p.oldID {
		t.Fatalf("the admin's rollback, publish #6: %+v, %v", res, err)
	}
}
