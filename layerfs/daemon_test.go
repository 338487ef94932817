package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/go-digest"
)

// fakeEngine serves the four Docker Engine API calls the daemon transport
// makes (ping, inspect, save, load) on a unix socket, keeping loaded
// archives in memory. The real engine is exercised by integration_test.go.
type fakeEngine struct {
	mu      sync.Mutex
	byID    map[string][]byte // image ID -> docker-archive
	tags    map[string]string // RepoTag -> image ID
	wrongID bool              // inspect reports an ID that is not the config digest
	// ctrdStore: act as the containerd image store: the image ID is a
	// manifest digest (inspect's Id and Descriptor), the config digest is
	// no name, and a save carries the manifest blob first.
	ctrdStore bool
	manifests map[string][]byte // manifest digest -> manifest (ctrdStore)
	// wrongConfig: loaded manifests name another config (ctrdStore).
	wrongConfig bool
	saves       int
	loadErr     string // load answers with this error message
}

var inspectPath = regexp.MustCompile(`^/v[0-9.]+/images/(.+)/json$`)

func startFakeEngine(t *testing.T) *fakeEngine {
	t.Helper()
	e := &fakeEngine{byID: map[string][]byte{}, tags: map[string]string{}, manifests: map[string][]byte{}}
	sock := filepath.Join(t.TempDir(), "engine.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(e.serve)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	t.Setenv("DOCKER_API_VERSION", "")
	return e
}

func (e *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	notFound := func(what string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"message": "No such image: " + what})
	}
	switch p := r.URL.Path; {
	case p == "/_ping" || strings.HasSuffix(p, "/_ping"):
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
	case inspectPath.MatchString(p):
		n := inspectPath.FindStringSubmatch(p)[1]
		id, ok := e.tags[n]
		if _, isID := e.byID[n]; isID {
			id, ok = n, true
		}
		if !ok {
			notFound(n)
			return
		}
		if e.wrongID {
			id = "sha256:" + strings.Repeat("0", 64)
		}
		if e.ctrdStore {
			m := e.manifests[id]
			json.NewEncoder(w).Encode(map[string]any{"Id": id, "Os": "linux", "Architecture": "amd64",
				"Descriptor": map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": id, "size": len(m)}})
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"Id": id})
	case strings.HasSuffix(p, "/images/get"):
		names := r.URL.Query()["names"]
		if len(names) != 1 {
			http.Error(w, "want one name", http.StatusBadRequest)
			return
		}
		b, ok := e.byID[names[0]]
		if !ok {
			notFound(names[0])
			return
		}
		e.saves++
		if e.ctrdStore {
			// The manifest blob first, then the docker-archive.
			m := e.manifests[names[0]]
			tw := tar.NewWriter(w)
			tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.TrimPrefix(names[0], "sha256:"), Size: int64(len(m)), Mode: 0o644})
			tw.Write(m)
			tw.Flush()
		}
		w.Write(b)
	case strings.HasSuffix(p, "/images/load"):
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if e.loadErr != "" {
			json.NewEncoder(w).Encode(map[string]any{"errorDetail": map[string]string{"message": e.loadErr}, "error": e.loadErr})
			return
		}
		opener := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		img, err := tarball.Image(opener, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cfg, _ := img.ConfigName()
		m, _ := tarball.LoadManifest(opener)
		id := cfg.String()
		if e.ctrdStore {
			cd := id
			if e.wrongConfig {
				cd = "sha256:" + strings.Repeat("1", 64)
			}
			man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
				"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": 1}})
			id = digest.FromBytes(man).String()
			e.manifests[id] = man
		}
		e.byID[id] = b
		for _, tag := range m[0].RepoTags {
			e.tags[tag] = id
		}
		json.NewEncoder(w).Encode(map[string]string{"stream": "Loaded image: " + strings.Join(m[0].RepoTags, ",") + "\n"})
	default:
		http.Error(w, "fake engine: unexpected "+r.Method+" "+p, http.StatusNotImplemented)
	}
}

func TestWriteOpenDaemonFakeEngine(t *testing.T) {
	ctx := context.Background()
	e := startFakeEngine(t)
	src := seededImage(t, 99, 3)
	want := summarize(t, src)
	if err := Write(ctx, "docker-daemon:skiff/fake:1", src); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if len(e.byID) != 1 || e.tags["skiff/fake:1"] != want.ConfigDigest.String() {
		t.Fatalf("engine holds %v, want skiff/fake:1 -> %s", e.tags, want.ConfigDigest)
	}
	tmp := t.TempDir()
	for _, ref := range []string{"docker-daemon:skiff/fake:1", "docker-daemon:" + want.ConfigDigest.String()} {
		img, err := Open(ctx, ref, WithTempDir(tmp))
		if err != nil {
			t.Fatalf("Open(%s): %v", ref, err)
		}
		if diff := cmp.Diff(want, summarize(t, img)); diff != "" {
			t.Errorf("Open(%s) (-want +got):\n%s", ref, diff)
		}
		checkContent(t, img)
		img.Close()
	}
	if ents, _ := filepath.Glob(filepath.Join(tmp, "*")); len(ents) != 0 {
		t.Errorf("Close left %v", ents)
	}
}

// With the containerd image store the engine's image ID is the manifest
// digest: Write verifies the load by the config digest the manifest names
// (issue 12: it failed with ErrImageIDMismatch), Open and InspectDaemon
// report the config digest, and a second inspect reads the cache.
func TestDaemonContainerdStoreFakeEngine(t *testing.T) {
	ctx := context.Background()
	e := startFakeEngine(t)
	e.ctrdStore = true
	src := seededImage(t, 97, 2)
	want := summarize(t, src)
	if err := Write(ctx, "docker-daemon:skiff/fake:1", src); err != nil {
		t.Fatalf("Write: %v", err)
	}
	id := e.tags["skiff/fake:1"]
	if id == want.ConfigDigest.String() {
		t.Fatalf("fake engine: ID %s is the config digest", id)
	}
	img, err := Open(ctx, "docker-daemon:skiff/fake:1", WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if diff := cmp.Diff(want, summarize(t, img)); diff != "" {
		t.Errorf("Open (-want +got):\n%s", diff)
	}
	img.Close()
	cli, err := dialEngine(ctx, Ref{Transport: TransportDaemon, Name: "skiff/fake:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	saves := e.saves
	di, err := InspectDaemon(ctx, cli, "skiff/fake:1")
	if err != nil {
		t.Fatal(err)
	}
	if di.ConfigDigest != want.ConfigDigest.String() || di.EngineID != id || di.ManifestDigest != id || !di.ContainerdStore {
		t.Errorf("InspectDaemon = %+v, want config %s, engine ID and manifest %s", di, want.ConfigDigest, id)
	}
	if e.saves != saves {
		t.Errorf("InspectDaemon saved the image again (%d saves), want the cached config digest", e.saves-saves)
	}
	e.wrongConfig = true
	if err := Write(ctx, "docker-daemon:skiff/fake:2", seededImage(t, 96, 1)); !errors.Is(err, ErrImageIDMismatch) {
		t.Errorf("Write with a wrong manifest: %v, want ErrImageIDMismatch", err)
	}
}

func TestOpenWriteDaemonErrorsFakeEngine(t *testing.T) {
	ctx := context.Background()
	src := seededImage(t, 98, 1)

	t.Run("absent image", func(t *testing.T) {
		startFakeEngine(t)
		_, err := Open(ctx, "docker-daemon:skiff/absent:1")
		if !errors.Is(err, ErrImageNotFound) || !strings.Contains(err.Error(), `"skiff/absent:1" is not in the engine at DOCKER_HOST=unix://`) {
			t.Errorf("got %v, want ErrImageNotFound naming the image and DOCKER_HOST", err)
		}
	})
	t.Run("id mismatch", func(t *testing.T) {
		e := startFakeEngine(t)
		e.wrongID = true
		err := Write(ctx, "docker-daemon:skiff/fake:1", src)
		if !errors.Is(err, ErrImageIDMismatch) {
			t.Errorf("got %v, want ErrImageIDMismatch", err)
		}
	})
	t.Run("load refused", func(t *testing.T) {
		e := startFakeEngine(t)
		e.loadErr = "no space left on device"
		err := Write(ctx, "docker-daemon:skiff/fake:1", src)
		if !errors.Is(err, ErrEngine) || !strings.Contains(err.Error(), "no space left on device") {
			t.Errorf("got %v, want ErrEngine with the engine's message", err)
		}
	})
	t.Run("write needs a tag", func(t *testing.T) {
		for _, ref := range []string{"docker-daemon:sha256:" + strings.Repeat("a", 64), "docker-daemon:skiff/x@sha256:" + strings.Repeat("a", 64)} {
			if err := Write(ctx, ref, src); !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), "NAME:TAG") {
				t.Errorf("Write(%s) = %v, want ErrBadReference asking for NAME:TAG", ref, err)
			}
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "none.sock"))
		err := Write(ctx, "docker-daemon:skiff/x:1", src)
		if !errors.Is(err, ErrEngine) || !strings.Contains(err.Error(), "not reachable at DOCKER_HOST=unix://") {
			t.Errorf("got %v, want ErrEngine naming DOCKER_HOST", err)
		}
	})
}
