package transport

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/skiff-dev/skiff/internal/imagetest"
)

// TestPullThroughProxy: a pull honours the caller's http.Client. A device
// behind a proxy (or with a private CA) reaches the registry only through
// its client's transport; before, the blob requests went out on
// remote.DefaultTransport whatever the caller passed.
func TestPullThroughProxy(t *testing.T) {
	var direct, proxied, proxiedBlobs atomic.Int64
	reg := testRegistry(t, true, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			direct.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	path, h := testDelta(t)
	subject := pushTarget(t, reg)
	ref := imagetest.Ref(t, reg+"/app:delta-1-2")
	if _, err := Push(context.Background(), path, ref, &subject); err != nil {
		t.Fatal(err)
	}
	direct.Store(0)

	// A forward proxy for plain HTTP: requests carry an absolute URL.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// go-containerregistry's ping tries HTTPS first.
			http.Error(w, "no tunnels here", http.StatusMethodNotAllowed)
			return
		}
		proxied.Add(1)
		if strings.Contains(r.URL.Path, "/blobs/") {
			proxiedBlobs.Add(1)
		}
		out := r.Clone(r.Context())
		out.RequestURI = ""
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}

	dst := filepath.Join(t.TempDir(), "pulled.skiff")
	st, err := PullWithOptions(context.Background(), ref, dst, t.TempDir(), PullOptions{Auth: authn.Anonymous, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(path)
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
		t.Fatal("pulled delta differs from the pushed one")
	}
	// Every request the registry saw came through the proxy: the ping,
	// the manifest and one GET per blob (header included).
	if blobs := int64(len(h.Manifest.Blobs) + 1); proxiedBlobs.Load() < blobs || st.Blobs != int(blobs) {
		t.Errorf("proxy saw %d blob requests, want at least %d", proxiedBlobs.Load(), blobs)
	}
	if p, d := proxied.Load(), direct.Load(); p == 0 || p != d {
		t.Errorf("registry served %d requests, %d of them through the proxy", d, p)
	}
}
