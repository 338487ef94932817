package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/imagetest"
)

// testRegistry serves go-containerregistry's in-process registry, with
// handler wrapped by wrap when not nil.
func testRegistry(t *testing.T, referrers bool, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// pushTarget pushes the test pair's target image and returns its manifest
// descriptor, the subject of the deltas.
func pushTarget(t *testing.T, reg string) v1.Descriptor {
	t.Helper()
	_, target := testPair(t)
	ref := imagetest.Ref(t, reg+"/app:2")
	if err := remote.Write(ref, target); err != nil {
		t.Fatal(err)
	}
	d, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

func anon() PullOptions { return PullOptions{Auth: authn.Anonymous} }

func TestPushPullRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name      string
		referrers bool
	}{
		{"referrers API", true},
		{"tag fallback", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			reg := testRegistry(t, tc.referrers, nil)
			path, h := testDelta(t)
			subject := pushTarget(t, reg)
			ref := imagetest.Ref(t, reg+"/app:delta-1-2")
			desc, err := Push(ctx, path, ref, &subject)
			if err != nil {
				t.Fatal(err)
			}
			if desc.ArtifactType != ArtifactType || desc.MediaType != types.OCIManifestSchema1 {
				t.Errorf("descriptor %+v", desc)
			}

			// The manifest: artifactType, empty config, header then blobs.
			rd, err := remote.Get(ref)
			if err != nil {
				t.Fatal(err)
			}
			if rd.Digest != desc.Digest {
				t.Errorf("registry has %s, Push returned %s", rd.Digest, desc.Digest)
			}
			m, err := v1.ParseManifest(bytes.NewReader(rd.Manifest))
			if err != nil {
				t.Fatal(err)
			}
			if m.ArtifactType != ArtifactType || m.Config.MediaType != MediaTypeEmpty || m.Config.Size != 2 ||
				m.Subject == nil || m.Subject.Digest != subject.Digest {
				t.Errorf("manifest %s", rd.Manifest)
			}
			if m.Annotations[AnnotationBase] != h.Manifest.Base.ConfigDigest.String() ||
				m.Annotations[AnnotationTarget] != h.Manifest.Target.ConfigDigest.String() {
				t.Errorf("annotations %v", m.Annotations)
			}
			if len(m.Layers) != len(h.Manifest.Blobs)+1 || m.Layers[0].MediaType != MediaTypeHeader || m.Layers[0].Size != h.BodyOffset {
				t.Fatalf("layers %+v", m.Layers)
			}
			for i, b := range h.Manifest.Blobs {
				l := m.Layers[i+1]
				if l.MediaType != MediaTypeBlob || l.Digest.String() != b.Digest.String() || l.Size != b.Size {
					t.Errorf("layer %d is %+v, blob %+v", i+1, l, b)
				}
			}

			dst := filepath.Join(t.TempDir(), "pulled.skiff")
			cache := filepath.Join(t.TempDir(), "cache")
			st, err := PullWithOptions(ctx, ref, dst, cache, anon())
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(path)
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("pulled %d bytes differ from the pushed %d", len(got), len(want))
			}
			if st.Bytes != int64(len(want)) || st.Cached != 0 || st.Blobs != len(m.Layers) {
				t.Errorf("stats %+v for a %d-byte delta", st, len(want))
			}
			if left, _ := filepath.Glob(filepath.Join(cache, "sha256", "*")); len(left) != 0 {
				t.Errorf("cache not emptied after a complete pull: %v", left)
			}

			// Pull (the contract's entry point) gives the same bytes.
			dst2 := filepath.Join(t.TempDir(), "pulled2.skiff")
			if err := Pull(ctx, ref, dst2, cache); err != nil {
				t.Fatal(err)
			}
			if got2, _ := os.ReadFile(dst2); !bytes.Equal(got2, want) {
				t.Error("Pull's file differs")
			}

			// Found by subject, with its annotations.
			found, err := FindDeltas(ctx, ref.Context(), subject.Digest)
			if err != nil {
				t.Fatal(err)
			}
			if len(found) != 1 || found[0].Digest != desc.Digest || found[0].ArtifactType != ArtifactType ||
				found[0].Annotations[AnnotationBase] != h.Manifest.Base.ConfigDigest.String() {
				t.Errorf("FindDeltas = %+v, want the artifact %s", found, desc.Digest)
			}
			// Nothing for another image.
			unrelated, _ := v1.NewHash(h.Manifest.Target.ConfigDigest.String())
			other, err := FindDeltas(ctx, ref.Context(), unrelated)
			if err != nil {
				t.Fatal(err)
			}
			if len(other) != 0 {
				t.Errorf("FindDeltas for an unrelated digest = %+v", other)
			}
		})
	}
}

// TestPullResume pre-seeds the cache as an interrupted pull leaves it:
// some blobs complete, one partial, one damaged. Only the missing bytes
// may be fetched.
func TestPullResume(t *testing.T) {
	ctx := context.Background()
	reg := testRegistry(t, true, nil)
	path, h := testDelta(t)
	ref := imagetest.Ref(t, reg+"/app:delta")
	if _, err := Push(ctx, path, ref, nil); err != nil {
		t.Fatal(err)
	}
	file, _ := os.ReadFile(path)
	cache := t.TempDir()
	blobPath := func(d string) string {
		return filepath.Join(cache, "sha256", strings.TrimPrefix(d, "sha256:"))
	}
	os.MkdirAll(filepath.Join(cache, "sha256"), 0o755)

	// Find the largest blob: it is the partial one.
	big := 0
	for i, b := range h.Manifest.Blobs {
		if b.Size > h.Manifest.Blobs[big].Size {
			big = i
		}
	}
	bigBlob := h.Manifest.Blobs[big]
	off := h.BodyOffset
	var seeded, partial int64
	damaged := -1
	for i, b := range h.Manifest.Blobs {
		data := file[off : off+b.Size]
		off += b.Size
		switch {
		case i == big:
			partial = b.Size / 3
			os.WriteFile(blobPath(b.Digest.String())+".part", data[:partial], 0o644)
		case i%2 == 0:
			os.WriteFile(blobPath(b.Digest.String()), data, 0o644)
			seeded += b.Size
		case damaged < 0 && b.Size > 0:
			damaged = i
			bad := append([]byte{}, data...)
			bad[0] ^= 1
			os.WriteFile(blobPath(b.Digest.String()), bad, 0o644)
		}
	}
	if damaged < 0 || seeded == 0 || partial == 0 {
		t.Fatalf("the test delta cannot seed the cache: damaged %d, seeded %d, partial %d", damaged, seeded, partial)
	}

	cnt := newCounter(nil)
	o := anon()
	o.Client = &http.Client{Transport: cnt}
	dst := filepath.Join(t.TempDir(), "out.skiff")
	st, err := PullWithOptions(ctx, ref, dst, cache, o)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, file) {
		t.Fatal("resumed pull differs from the pushed delta")
	}
	blobURL := "GET /v2/app/blobs/"
	n, got, rng := cnt.get(blobURL + bigBlob.Digest.String())
	if n != 1 || got != bigBlob.Size-partial || !strings.HasPrefix(rng, "bytes="+strconv.FormatInt(partial, 10)+"-") {
		t.Errorf("partial blob: %d requests, %d bytes, Range %q; want 1 request for the last %d bytes", n, got, rng, bigBlob.Size-partial)
	}
	off = h.BodyOffset
	for i, b := range h.Manifest.Blobs {
		n, got, _ := cnt.get(blobURL + b.Digest.String())
		switch {
		case i == big:
		case i%2 == 0:
			if n != 0 {
				t.Errorf("blob %d was in the cache, fetched %d times", i, n)
			}
		default:
			if n != 1 || got != b.Size {
				t.Errorf("blob %d (damaged %v): %d requests, %d bytes, want 1 and %d", i, i == damaged, n, got, b.Size)
			}
		}
	}
	wantBytes := int64(len(file)) - seeded - partial
	if st.Bytes != wantBytes || st.Refetched != 0 || st.Resumed != partial {
		t.Errorf("stats %+v; want %d bytes fetched, %d resumed, none refetched", st, wantBytes, partial)
	}
}

// TestPullCorruptBlob: a registry that serves a blob with wrong bytes.
func TestPullCorruptBlob(t *testing.T) {
	ctx := context.Background()
	var corrupt string
	reg := testRegistry(t, true, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if corrupt != "" && r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, corrupt) {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 0 {
					body[len(body)/2] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			next.ServeHTTP(w, r)
		})
	})
	path, h := testDelta(t)
	ref := imagetest.Ref(t, reg+"/app:delta")
	if _, err := Push(ctx, path, ref, nil); err != nil {
		t.Fatal(err)
	}
	corrupt = h.Manifest.Blobs[len(h.Manifest.Blobs)-1].Digest.String()
	dst := filepath.Join(t.TempDir(), "out.skiff")
	o := anon()
	o.Fetch.InitialBackoff = 1e6
	_, err := PullWithOptions(ctx, ref, dst, t.TempDir(), o)
	if !errors.Is(err, ErrDigest) || !strings.Contains(err.Error(), corrupt) {
		t.Fatalf("err = %v, want ErrDigest naming %s", err, corrupt)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed pull", dst)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dst), "*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// TestPullRejects: artifacts that are not deltas, or whose layers disagree
// with the delta's header.
func TestPullRejects(t *testing.T) {
	ctx := context.Background()
	reg := testRegistry(t, true, nil)
	path, _ := testDelta(t)
	ref := imagetest.Ref(t, reg+"/app:delta")
	if _, err := Push(ctx, path, ref, nil); err != nil {
		t.Fatal(err)
	}
	pushTarget(t, reg)
	rd, err := remote.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := v1.ParseManifest(bytes.NewReader(rd.Manifest))
	put := func(tag string, m *v1.Manifest) name.Reference {
		raw, _ := json.Marshal(m)
		r := imagetest.Ref(t, reg+"/app:"+tag)
		if err := remote.Put(r, rawManifest{raw}); err != nil {
			t.Fatal(err)
		}
		return r
	}
	swapped := *m
	swapped.Layers = append([]v1.Descriptor{}, m.Layers...)
	swapped.Layers[1], swapped.Layers[2] = swapped.Layers[2], swapped.Layers[1]
	other := *m
	other.ArtifactType = "application/vnd.example.sbom"
	noHeader := *m
	noHeader.Layers = m.Layers[1:]

	for _, tc := range []struct {
		name, want string
		ref        name.Reference
	}{
		{"an image", "manifest media type", imagetest.Ref(t, reg+"/app:2")},
		{"another artifactType", "artifactType", put("sbom", &other)},
		{"no header layer", "layer 0 has media type", put("noheader", &noHeader)},
		{"blobs out of order", "blob 0 is", put("swapped", &swapped)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "out.skiff")
			_, err := PullWithOptions(ctx, tc.ref, dst, t.TempDir(), anon())
			if !errors.Is(err, ErrNotDelta) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrNotDelta with %q", err, tc.want)
			}
			if _, err := os.Stat(dst); !os.IsNotExist(err) {
				t.Errorf("%s written", dst)
			}
		})
	}
}

func TestPushRejectsBadFile(t *testing.T) {
	path, h := testDelta(t)
	file, _ := os.ReadFile(path)
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	flipped := append([]byte{}, file...)
	flipped[len(flipped)-1] ^= 1
	for _, tc := range []struct{ name, path, want string }{
		{"damaged blob", write("flipped", flipped), "hashes to"},
		{"truncated", write("short", file[:len(file)-10]), "header declares"},
		{"not a delta", write("text", []byte("hello, world")), "not a skiff delta"},
		{"header only", write("hdr", file[:h.BodyOffset]), "header declares"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := testRegistry(t, true, nil)
			_, err := Push(context.Background(), tc.path, imagetest.Ref(t, reg+"/app:x"), nil)
			if !errors.Is(err, ErrBadDeltaFile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBadDeltaFile with %q", err, tc.want)
			}
		})
	}
}

func TestTargetSubject(t *testing.T) {
	if s := TargetSubject(&format.Manifest{}); s != nil {
		t.Errorf("no distribution: subject %+v", s)
	}
	raw := []byte(`{"schemaVersion":2}`)
	m := &format.Manifest{Target: format.Target{Distribution: &format.Distribution{Manifest: raw, MediaType: string(types.OCIManifestSchema1)}}}
	s := TargetSubject(m)
	want, _, _ := v1.SHA256(bytes.NewReader(raw))
	if s == nil || s.Digest != want || s.Size != int64(len(raw)) || s.MediaType != types.OCIManifestSchema1 {
		t.Errorf("subject %+v, want %s", s, want)
	}
}

// TestPullParallel: blobs are fetched Parallel at a time (never more), the
// file is the same, and the progress never goes back and ends at the
// total.
func TestPullParallel(t *testing.T) {
	ctx := context.Background()
	path, h := testDelta(t)
	want, _ := os.ReadFile(path)
	blobs := len(h.Manifest.Blobs)
	for _, parallel := range []int{1, 3} {
		t.Run(fmt.Sprint(parallel), func(t *testing.T) {
			var mu sync.Mutex
			inflight, most := 0, 0
			full := make(chan struct{})
			reg := testRegistry(t, true, func(next http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
						next.ServeHTTP(w, r)
						return
					}
					mu.Lock()
					inflight++
					most = max(most, inflight)
					if inflight == parallel {
						close(full)
						full = make(chan struct{})
					}
					wait := full
					mu.Unlock()
					// Hold each request until parallel are in flight (or a
					// while has passed: the last blobs are fewer).
					select {
					case <-wait:
					case <-time.After(300 * time.Millisecond):
					}
					next.ServeHTTP(w, r)
					mu.Lock()
					inflight--
					mu.Unlock()
				})
			})
			ref := imagetest.Ref(t, reg+"/app:delta")
			if _, err := Push(ctx, path, ref, nil); err != nil {
				t.Fatal(err)
			}
			o := anon()
			o.Parallel = parallel
			var last int64
			o.Progress = func(done, total int64) {
				if done < last || done > total {
					t.Errorf("progress %d of %d after %d", done, total, last)
				}
				last = done
			}
			dst := filepath.Join(t.TempDir(), "pulled.skiff")
			if _, err := PullWithOptions(ctx, ref, dst, filepath.Join(t.TempDir(), "cache"), o); err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
				t.Fatal("pulled file differs")
			}
			if last != int64(len(want)) {
				t.Errorf("progress ended at %d of %d", last, len(want))
			}
			if wantMost := min(parallel, blobs); most != wantMost {
				t.Errorf("%d blob requests in flight at most, want %d (Parallel %d, %d blobs)", most, wantMost, parallel, blobs)
			}
		})
	}
}
