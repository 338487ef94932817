package agent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/transport/api"
)

// TestCheckServerNeverAnswers: a server that accepts the connection and
// never answers makes the check fail after network.response_timeout,
// with an error that says so, instead of holding the agent.
func TestCheckServerNeverAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held <- c // read nothing, answer nothing
		}
	}()
	defer func() {
		close(held)
		for c := range held {
			c.Close()
		}
	}()
	p := testPair(t)
	d := newDevice(t, p)
	c := d.config(t, serverSource("http://"+ln.Addr().String()), "")
	if c.Network.ResponseTimeout.D() != DefaultResponseTimeout || c.Network.StallTimeout.D() != DefaultStallTimeout {
		t.Fatalf("network defaults %+v", c.Network)
	}
	c.Network.ResponseTimeout = Duration(time.Second)
	a := newAgent(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err = a.Check(ctx, "web")
	el := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer within 1s (network.response_timeout)") {
		t.Fatalf("err = %v, want it to say the server did not answer within 1s", err)
	}
	if el > 10*time.Second {
		t.Errorf("the check took %s with a 1s response timeout", el)
	}
}

func TestNetworkConfigErrors(t *testing.T) {
	d := newDevice(t, testPair(t))
	for _, tc := range []struct{ field, value, msg string }{
		{"connect_timeout", "100ms", "network.connect_timeout: 100ms is too short"},
		{"response_timeout", "-1s", "network.response_timeout"},
		{"stall_timeout", "soon", `line 2: "soon" is not a duration`},
	} {
		y := "network:\n  " + tc.field + ": " + tc.value + "\n" + d.yaml("true", serverSource("http://127.0.0.1:1"), "")
		_, err := ParseConfig([]byte(y))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %s: err = %v, want it to say %q", tc.field, tc.value, err, tc.msg)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"https://u.example/v1/deltas/x", "https://u.example", true},
		{"https://u.example:443/x", "https://U.example/", true},
		{"http://u.example:80/x", "http://u.example", true},
		{"http://u.example:8080/x", "http://u.example", false},
		{"https://cdn.example/x", "https://u.example", false},
		{"http://u.example/x", "https://u.example", false},
		{"/v1/deltas/x", "https://u.example", false},
		{"https://u.example.evil/x", "https://u.example", false},
	} {
		if got := sameOrigin(tc.a, tc.b); got != tc.want {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestTokenStaysWithServer: a check answer that points the download to
// another host (a CDN, or anyone) does not get the device token sent
// there; the server's own delta URLs do.
func TestTokenStaysWithServer(t *testing.T) {
	p := testPair(t)
	var cdnAuth, ownAuth atomic.Value
	cdnAuth.Store("unset")
	ownAuth.Store("unset")
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cdnAuth.Store(r.Header.Get("Authorization"))
		http.NotFound(w, r)
	}))
	defer cdn.Close()
	var deltaURL atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathCheck {
			ownAuth.Store(r.Header.Get("Authorization"))
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(api.CheckResponse{Update: true,
			Target: &api.Target{Ref: "x", ConfigDigest: "sha256:" + strings.Repeat("1", 64), ManifestDigest: "sha256:" + strings.Repeat("2", 64)},
			Delta:  &api.Delta{URL: deltaURL.Load().(string), Digest: "sha256:" + strings.Repeat("3", 64), Size: 10}})
	}))
	defer srv.Close()
	d := newDevice(t, p)
	c := d.config(t, serverSource(srv.URL), "")
	a := newAgent(t, c)
	for _, tc := range []struct {
		url  string
		got  *atomic.Value
		want string
	}{
		{cdn.URL + "/d/x.skiff", &cdnAuth, ""},
		{api.PathDeltas + "sha256:" + strings.Repeat("3", 64), &ownAuth, "Bearer dev-token"},
	} {
		deltaURL.Store(tc.url)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := a.Update(ctx, "web")
		cancel()
		if err == nil {
			t.Fatalf("%s: the update succeeded against a 404", tc.url)
		}
		if got := tc.got.Load().(string); got != tc.want {
			t.Errorf("delta at %s got Authorization %q, want %q", tc.url, got, tc.want)
		}
	}
}
