package transport

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/imagetest"
)

// noise is seeded, incompressible bytes.
func noise(seed uint64, n int) []byte { return imagetest.Noise(seed, 0x5eed, n) }

// text is seeded, compressible, line-structured bytes.
func text(seed uint64, n int) []byte {
	words := strings.Fields("skiff ships exact deltas to devices on thin links over cellular satellite and lora gateways while verifying every digest")
	r := rand.New(rand.NewPCG(seed, 0x7e47))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		if r.IntN(9) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// testPair is a base/target pair whose delta has several blobs, one of
// them a few hundred kilobytes (a new, incompressible file).
func testPair(t testing.TB) (base, target v1.Image) {
	t.Helper()
	shared := imagetest.LayerTar(t, imagetest.File{Name: "etc/os-release", Data: "ID=skiff\nVERSION=1\n"})
	doc := text(1, 200<<10)
	edited := append(append(append([]byte{}, doc[:90<<10]...), []byte("an edit in the middle of the document")...), doc[90<<10:]...)
	lib := noise(2, 64<<10)
	lib2 := append([]byte{}, lib...)
	for i := 0; i < len(lib2); i += 4096 {
		lib2[i] ^= 0x5a
	}
	base = imagetest.Image(t, shared, imagetest.LayerTar(t,
		imagetest.File{Name: "app/doc.txt", Data: string(doc)},
		imagetest.File{Name: "app/lib.so", Data: string(lib)},
		imagetest.File{Name: "app/config.yaml", Data: "level: info\n"},
	))
	target = imagetest.Image(t, shared, imagetest.LayerTar(t,
		imagetest.File{Name: "app/doc.txt", Data: string(edited)},
		imagetest.File{Name: "app/lib.so", Data: string(lib2)},
		imagetest.File{Name: "app/config.yaml", Data: "level: debug\n"},
		imagetest.File{Name: "app/new.bin", Data: string(noise(3, 400<<10))},
	))
	return base, target
}

var (
	deltaOnce  sync.Once
	deltaBytes []byte
	deltaErr   error
)

// testDelta writes the test pair's delta (computed once per test binary)
// into a new file and returns its path and parsed header.
func testDelta(t testing.TB) (string, *format.Header) {
	t.Helper()
	deltaOnce.Do(func() {
		base, target := testPair(t)
		opts := delta.DefaultOptions()
		// Manifest versions 1-2 give each patch a blob of its own: several
		// blobs to fetch in parallel, resume and corrupt one by one (a
		// version 3 delta of this pair has a skeleton and one stream).
		opts.Solid = false
		opts.WorkDir = filepath.Join(os.TempDir(), "skiff-transport-test-diff")
		os.RemoveAll(opts.WorkDir)
		defer os.RemoveAll(opts.WorkDir)
		var buf bytes.Buffer
		if _, deltaErr = delta.Diff(context.Background(), base, target, &buf, opts); deltaErr == nil {
			deltaBytes = buf.Bytes()
		}
	})
	if deltaErr != nil {
		t.Fatal(deltaErr)
	}
	p := filepath.Join(t.TempDir(), "update.skiff")
	if err := os.WriteFile(p, deltaBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := format.ReadHeader(bytes.NewReader(deltaBytes))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Manifest.Blobs) < 3 {
		t.Fatalf("the test delta should have several blobs, has %d", len(h.Manifest.Blobs))
	}
	return p, h
}

// counter is a RoundTripper that counts requests and response body bytes
// per URL path, and remembers Range headers.
type counter struct {
	inner http.RoundTripper
	mu    sync.Mutex
	reqs  map[string]int
	bytes map[string]int64
	rng   map[string]string
}

func newCounter(inner http.RoundTripper) *counter {
	if inner == nil {
		inner = http.DefaultTransport
	}
	return &counter{inner: inner, reqs: map[string]int{}, bytes: map[string]int64{}, rng: map[string]string{}}
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.inner.RoundTrip(req)
	c.mu.Lock()
	defer c.mu.Unlock()
	key := req.Method + " " + req.URL.Path
	c.reqs[key]++
	if r := req.Header.Get("Range"); r != "" {
		c.rng[key] = r
	}
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, c: c, key: key}
	}
	return resp, err
}

func (c *counter) get(key string) (int, int64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reqs[key], c.bytes[key], c.rng[key]
}

type countingBody struct {
	io.ReadCloser
	c   *counter
	key string
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.mu.Lock()
	b.c.bytes[b.key] += int64(n)
	b.c.mu.Unlock()
	return n, err
}
