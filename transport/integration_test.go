//go:build integration

package transport

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistryIntegration pushes and pulls a delta against the real
// registry of testdata/infra/start-infra.sh (CNCF distribution 2.8, which
// has no referrers API: FindDeltas goes through the fallback tag).
//
//	. /tmp/skiff-infra/env.sh && go test -tags integration -run Integration ./transport/
func TestRegistryIntegration(t *testing.T) {
	reg := os.Getenv("REGISTRY")
	if reg == "" {
		t.Skip("REGISTRY not set; source testdata/infra's env.sh")
	}
	ctx := context.Background()
	repo := fmt.Sprintf("%s/skiff-transport-it/app%d", reg, time.Now().UnixNano())
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(repo+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// The target image, the deltas' subject.
	_, target := testPair(t)
	if err := remote.Write(ref(":2"), target); err != nil {
		t.Fatal(err)
	}
	subject, err := remote.Head(ref(":2"))
	if err != nil {
		t.Fatal(err)
	}

	// The referrers endpoint really is missing: FindDeltas must use the tag.
	resp, err := http.Get(fmt.Sprintf("http://%s/v2/%s/referrers/%s", reg, ref(":2").Context().RepositoryStr(), subject.Digest))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Logf("GET referrers: %s", resp.Status)

	path, h := testDelta(t)
	desc, err := Push(ctx, path, ref(":delta-1-2"), subject)
	if err != nil {
		t.Fatal(err)
	}
	// Pushing again uploads nothing new and gives the same manifest.
	again, err := Push(ctx, path, ref(":delta-1-2"), subject)
	if err != nil || again.Digest != desc.Digest {
		t.Fatalf("second push: %v, %s vs %s", err, again.Digest, desc.Digest)
	}

	found, err := FindDeltas(ctx, ref(":2").Context(), subject.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Digest != desc.Digest || found[0].Annotations[AnnotationBase] != h.Manifest.Base.ConfigDigest.String() {
		t.Fatalf("FindDeltas = %+v, want %s", found, desc.Digest)
	}
	if _, err := remote.Head(ref(":" + "sha256-" + subject.Digest.Hex)); err != nil {
		t.Errorf("fallback tag: %v", err)
	}

	want, _ := os.ReadFile(path)
	for _, tc := range []struct {
		name  string
		ref   name.Reference
		seed  bool
		check func(t *testing.T, st PullStats)
	}{
		{"by tag", ref(":delta-1-2"), false, func(t *testing.T, st PullStats) {
			if st.Bytes != int64(len(want)) || st.Cached != 0 {
				t.Errorf("stats %+v", st)
			}
		}},
		{"by digest, resumed", ref("@" + desc.Digest.String()), true, func(t *testing.T, st PullStats) {
			if st.Resumed == 0 || st.Bytes >= int64(len(want)) {
				t.Errorf("stats %+v: want a resumed blob and fewer bytes than the file", st)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			if tc.seed {
				// Half of the largest blob, as a cut link leaves it.
				big, off, boff := h.Manifest.Blobs[0], h.BodyOffset, h.BodyOffset
				for _, b := range h.Manifest.Blobs {
					if b.Size > big.Size {
						big, boff = b, off
					}
					off += b.Size
				}
				os.MkdirAll(filepath.Join(cache, "sha256"), 0o755)
				os.WriteFile(filepath.Join(cache, "sha256", big.Digest.Encoded()+".part"), want[boff:boff+big.Size/2], 0o644)
			}
			dst := filepath.Join(t.TempDir(), "pulled.skiff")
			cnt := newCounter(nil)
			st, err := PullWithOptions(ctx, tc.ref, dst, cache, PullOptions{Auth: authn.Anonymous, Client: &http.Client{Transport: cnt}})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, want) {
				t.Fatal("pulled delta differs")
			}
			tc.check(t, st)
			t.Logf("%+v", st)
		})
	}
}
