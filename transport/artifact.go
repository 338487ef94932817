package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	gtransport "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// Media types and annotations of a delta stored in a registry (doc.go).
const (
	// ArtifactType is the artifactType of a delta's image manifest.
	ArtifactType = "application/vnd.skiff.delta.v1"
	// MediaTypeHeader is the first layer: the delta file's bytes from the
	// magic through the signature (Header.BodyOffset bytes).
	MediaTypeHeader = "application/vnd.skiff.delta.header.v1"
	// MediaTypeBlob is every further layer: one delta blob, in manifest order.
	MediaTypeBlob = "application/vnd.skiff.delta.blob.v1"
	// MediaTypeEmpty is the config: the two bytes "{}".
	MediaTypeEmpty = "application/vnd.oci.empty.v1+json"

	// AnnotationBase is the manifest annotation naming the base image's
	// config digest (the image a device must run to use the delta).
	AnnotationBase = "dev.skiff.delta.base.config-digest"
	// AnnotationTarget names the target image's config digest.
	AnnotationTarget = "dev.skiff.delta.target.config-digest"
)

// Bounds on what a registry may declare before anything is fetched.
const (
	maxHeaderLayer = 16<<20 + 64<<10 + 16 // delta's header and signature limits
	maxLayers      = 1 << 20
)

// emptyConfig is the OCI empty descriptor's content.
var emptyConfig = []byte("{}")

// Push stores the delta file at path as an OCI artifact manifest under ref
// (a tag or digest). subject, when not nil, is the target image's manifest
// descriptor; the artifact is then listed by the referrers API (or, where
// the registry lacks it, under the sha256-<hex> fallback tag). Blobs the
// registry already holds are not uploaded again. Push returns the artifact
// manifest's descriptor.
func Push(ctx context.Context, path string, ref name.Reference, subject *v1.Descriptor, opts ...remote.Option) (v1.Descriptor, error) {
	layers, h, err := deltaLayers(path)
	if err != nil {
		return v1.Descriptor{}, err
	}
	opts = append(opts, remote.WithContext(ctx))
	pusher, err := remote.NewPusher(opts...)
	if err != nil {
		return v1.Descriptor{}, err
	}
	repo := ref.Context()

	cfg := static.NewLayer(emptyConfig, MediaTypeEmpty)
	uploads := []v1.Layer{cfg}
	seen := map[v1.Hash]bool{}
	for _, l := range layers {
		if !seen[l.digest] {
			seen[l.digest] = true
			uploads = append(uploads, l)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, l := range uploads {
		g.Go(func() error {
			if err := pusher.Upload(gctx, repo, l); err != nil {
				d, _ := l.Digest()
				return fmt.Errorf("push %s: blob %s: %w", ref, d, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return v1.Descriptor{}, err
	}

	cfgDigest, _ := cfg.Digest()
	mf := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config:        v1.Descriptor{MediaType: MediaTypeEmpty, Size: int64(len(emptyConfig)), Digest: cfgDigest},
		Subject:       subject,
		Annotations: map[string]string{
			AnnotationBase:   h.Manifest.Base.ConfigDigest.String(),
			AnnotationTarget: h.Manifest.Target.ConfigDigest.String(),
		},
	}
	for _, l := range layers {
		mf.Layers = append(mf.Layers, v1.Descriptor{MediaType: l.mediaType, Size: l.size, Digest: l.digest})
	}
	raw, err := json.Marshal(mf)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if err := pusher.Put(ctx, ref, rawManifest{raw}); err != nil {
		return v1.Descriptor{}, fmt.Errorf("push %s: manifest: %w", ref, err)
	}
	dh, size, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: types.OCIManifestSchema1, Size: size, Digest: dh, ArtifactType: ArtifactType,
		Annotations: mf.Annotations}, nil
}

// TargetSubject is the subject Push should name for a delta: the target
// image's registry manifest, when the delta carries it
// (target.distribution), else nil.
func TargetSubject(m *format.Manifest) *v1.Descriptor {
	d := m.Target.Distribution
	if d == nil || len(d.Manifest) == 0 {
		return nil
	}
	sum := sha256.Sum256(d.Manifest)
	return &v1.Descriptor{
		MediaType: types.MediaType(d.MediaType),
		Size:      int64(len(d.Manifest)),
		Digest:    v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", sum)},
	}
}

type rawManifest struct{ raw []byte }

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// fileLayer is one section of the delta file as a registry blob.
type fileLayer struct {
	path      string
	off, size int64
	digest    v1.Hash
	mediaType types.MediaType
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)            { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) {
	return l.Compressed()
}
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, l.off, l.size), f}, nil
}

// deltaLayers splits the delta file into its header and blobs, checking
// every blob's sha256 against the header.
func deltaLayers(path string) ([]*fileLayer, *format.Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	h, err := format.ReadHeader(bufio.NewReader(f))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w: %w", path, ErrBadDeltaFile, err)
	}
	end := h.BodyOffset
	for _, b := range h.Manifest.Blobs {
		end += b.Size
	}
	if end != st.Size() {
		return nil, nil, fmt.Errorf("%s: %w: header declares %d bytes, the file has %d", path, ErrBadDeltaFile, end, st.Size())
	}
	hashOf := func(off, n int64) (v1.Hash, error) {
		h, _, err := v1.SHA256(io.NewSectionReader(f, off, n))
		return h, err
	}
	hd, err := hashOf(0, h.BodyOffset)
	if err != nil {
		return nil, nil, err
	}
	layers := []*fileLayer{{path: path, size: h.BodyOffset, digest: hd, mediaType: MediaTypeHeader}}
	off := h.BodyOffset
	for i, b := range h.Manifest.Blobs {
		got, err := hashOf(off, b.Size)
		if err != nil {
			return nil, nil, err
		}
		if got.String() != b.Digest.String() {
			return nil, nil, fmt.Errorf("%s: %w: blob %d hashes to %s, the header says %s", path, ErrBadDeltaFile, i, got, b.Digest)
		}
		layers = append(layers, &fileLayer{path: path, off: off, size: b.Size, digest: got, mediaType: MediaTypeBlob})
		off += b.Size
	}
	return layers, h, nil
}

// PullOptions configure PullWithOptions.
type PullOptions struct {
	// Client carries every request of the pull, the manifest's and each
	// blob's, with the registry's authentication layered on its
	// Transport: its proxy, CA pool, TLS settings and dial timeouts hold
	// for all of them, and its Timeout, CheckRedirect and Jar for the blob
	// downloads. A nil Transport is http.DefaultTransport, as in net/http.
	// Default: a client on remote.DefaultTransport.
	Client *http.Client
	// Auth authenticates to the registry (default: the credentials
	// authn.DefaultKeychain finds, i.e. the docker config).
	Auth authn.Authenticator
	// Remote are further go-containerregistry options for the manifest
	// request (user agent). Their transport and credentials options are
	// overridden by Client and Auth.
	Remote []remote.Option
	// Fetch holds the download settings for each blob (LimitRate,
	// MaxRetries, backoff); its Digest, Size, Client and Progress are set
	// per blob.
	Fetch FetchOptions
	// Progress, when set, is told the bytes present of the artifact's total.
	Progress func(done, total int64)
	// KeepCache keeps the blobs in the cache after a successful pull
	// (default: they are removed once dst is written).
	KeepCache bool
	// Parallel is how many blobs are fetched at once (default 4): a delta
	// of many small blobs then costs a round trip per Parallel blobs, not
	// per blob. Fetch.LimitRate caps them together.
	Parallel int
}

// PullStats say what a pull fetched.
type PullStats struct {
	Blobs  int   // layers in the artifact (header included)
	Cached int   // of those, already complete and verified in the cache
	Size   int64 // the delta file's size
	FetchStats
}

// Pull fetches the artifact at ref into a delta file at dst with
// remote.DefaultTransport and authn.DefaultKeychain.
//
// Deprecated: Pull sends its own ranged blob requests and cannot see the
// transport or credentials inside opts (go-containerregistry options are
// opaque), so a proxy, CA or timeout passed there is ignored for the
// blobs. Use PullWithOptions with PullOptions.Client.
func Pull(ctx context.Context, ref name.Reference, dst, cacheDir string, opts ...remote.Option) error {
	_, err := PullWithOptions(ctx, ref, dst, cacheDir, PullOptions{Remote: opts})
	return err
}

// PullWithOptions fetches the artifact at ref into a delta file at dst,
// every request through o.Client. cacheDir keeps verified blobs by digest
// (and partial ones) so an interrupted pull resumes without re-fetching
// verified bytes. It reports what was fetched.
func PullWithOptions(ctx context.Context, ref name.Reference, dst, cacheDir string, o PullOptions) (PullStats, error) {
	var st PullStats
	repo := ref.Context()
	client := &http.Client{Transport: remote.DefaultTransport}
	if o.Client != nil {
		c := *o.Client
		client = &c
	}
	inner := client.Transport
	if inner == nil {
		inner = http.DefaultTransport
	}
	auth := o.Auth
	if auth == nil {
		a, err := authn.Resolve(ctx, authn.DefaultKeychain, repo)
		if err != nil {
			return st, fmt.Errorf("pull %s: credentials: %w", ref, err)
		}
		auth = a
	}
	// One authenticated transport (a *transport.Wrapper, which
	// go-containerregistry uses as it is) for the manifest and the blobs.
	rt, err := gtransport.NewWithContext(ctx, repo.Registry, auth, inner, []string{repo.Scope(gtransport.PullScope)})
	if err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	ropts := append(append([]remote.Option{}, o.Remote...), remote.WithTransport(rt), remote.WithContext(ctx))
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	m, err := checkArtifact(desc)
	if err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	client.Transport = rt
	p := &puller{repo: repo, cacheDir: cacheDir, client: client, o: o, st: &st}
	for _, l := range m.Layers {
		p.total += l.Size
	}
	st.Blobs, st.Size = len(m.Layers), p.total

	// The header first: it must agree with the manifest before anything
	// else is fetched.
	paths := make([]string, len(m.Layers))
	if paths[0], err = p.blob(ctx, m.Layers[0]); err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := checkHeader(paths[0], m.Layers); err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := p.blobs(ctx, m.Layers[1:], paths[1:]); err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	if err := concatenate(dst, paths); err != nil {
		return st, fmt.Errorf("pull %s: %w", ref, err)
	}
	if !o.KeepCache {
		for _, p := range paths {
			os.Remove(p)
		}
	}
	return st, nil
}

// checkArtifact parses the manifest and checks it is a delta's.
func checkArtifact(desc *remote.Descriptor) (*v1.Manifest, error) {
	if desc.MediaType != types.OCIManifestSchema1 {
		return nil, fmt.Errorf("%w: manifest media type %s, want %s", ErrNotDelta, desc.MediaType, types.OCIManifestSchema1)
	}
	m, err := v1.ParseManifest(bytes.NewReader(desc.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrNotDelta, err)
	}
	if m.ArtifactType != ArtifactType {
		return nil, fmt.Errorf("%w: artifactType %q, want %q", ErrNotDelta, m.ArtifactType, ArtifactType)
	}
	if len(m.Layers) == 0 || len(m.Layers) > maxLayers {
		return nil, fmt.Errorf("%w: %d layers", ErrNotDelta, len(m.Layers))
	}
	for i, l := range m.Layers {
		want := types.MediaType(MediaTypeBlob)
		if i == 0 {
			want = MediaTypeHeader
		}
		if l.MediaType != want {
			return nil, fmt.Errorf("%w: layer %d has media type %s, want %s", ErrNotDelta, i, l.MediaType, want)
		}
		if l.Digest.Algorithm != "sha256" || len(l.Digest.Hex) != 64 {
			return nil, fmt.Errorf("%w: layer %d: digest %s is not sha256", ErrNotDelta, i, l.Digest)
		}
		if l.Size < 0 || (i == 0 && l.Size > maxHeaderLayer) {
			return nil, fmt.Errorf("%w: layer %d: size %d", ErrNotDelta, i, l.Size)
		}
	}
	return m, nil
}

// checkHeader parses the fetched header and compares its blob list with
// the artifact's layers.
func checkHeader(path string, layers []v1.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h, err := format.ReadHeader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%w: header layer: %w", ErrNotDelta, err)
	}
	if h.BodyOffset != layers[0].Size {
		return fmt.Errorf("%w: header layer has %d bytes, the header spans %d", ErrNotDelta, layers[0].Size, h.BodyOffset)
	}
	blobs := h.Manifest.Blobs
	if len(blobs) != len(layers)-1 {
		return fmt.Errorf("%w: the delta has %d blobs, the artifact %d blob layers", ErrNotDelta, len(blobs), len(layers)-1)
	}
	for i, b := range blobs {
		l := layers[i+1]
		if b.Digest.String() != l.Digest.String() || b.Size != l.Size {
			return fmt.Errorf("%w: blob %d is %s (%d bytes) in the delta, layer %s (%d bytes) in the artifact",
				ErrNotDelta, i, b.Digest, b.Size, l.Digest, l.Size)
		}
	}
	return nil
}

type puller struct {
	repo     name.Repository
	cacheDir string
	client   *http.Client
	o        PullOptions
	total    int64

	mu      sync.Mutex
	st      *PullStats
	done    int64           // bytes of completed blobs
	partial map[int64]int64 // bytes so far of the blobs in flight, by fetch
	nextID  int64
}

// defaultParallel is how many blobs a pull fetches at once by default.
const defaultParallel = 4

// blobs fetches layers into the cache, Parallel at a time, and sets
// paths[i] to layer i's file. The first error stops the others.
func (p *puller) blobs(ctx context.Context, layers []v1.Descriptor, paths []string) error {
	n := p.o.Parallel
	if n <= 0 {
		n = defaultParallel
	}
	if p.o.Fetch.Limiter == nil && p.o.Fetch.LimitRate > 0 {
		// One rate for all the blobs in flight together.
		p.o.Fetch.Limiter = rate.NewLimiter(rate.Limit(p.o.Fetch.LimitRate), int(min(int64(copyChunk), p.o.Fetch.LimitRate)))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for i, l := range layers {
		g.Go(func() error {
			path, err := p.blob(gctx, l)
			paths[i] = path
			return err
		})
	}
	return g.Wait()
}

// blob makes sure the cache holds layer l, verified, and returns its path.
// Several may run at once.
func (p *puller) blob(ctx context.Context, l v1.Descriptor) (string, error) {
	path := filepath.Join(p.cacheDir, l.Digest.Algorithm, l.Digest.Hex)
	want := digest.NewDigestFromEncoded(digest.Algorithm(l.Digest.Algorithm), l.Digest.Hex)
	if err := verifyFile(path, want, l.Size); err == nil {
		p.mu.Lock()
		p.st.Cached++
		p.mu.Unlock()
		p.advance(-1, l.Size)
		return path, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		os.Remove(path) // damaged: fetch again
	}
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", p.repo.Scheme(), p.repo.RegistryStr(), p.repo.RepositoryStr(), l.Digest)
	fo := p.o.Fetch
	fo.Digest, fo.Size, fo.Client = want, l.Size, p.client
	fo.Progress = nil
	p.mu.Lock()
	p.nextID++
	id := p.nextID
	p.mu.Unlock()
	if p.o.Progress != nil {
		fo.Progress = func(done, _ int64) { p.progress(id, done) }
	}
	fs, err := Fetch(ctx, u, path, fo)
	p.mu.Lock()
	p.st.Bytes += fs.Bytes
	p.st.Refetched += fs.Refetched
	p.st.Retries += fs.Retries
	p.st.Resumed += fs.Resumed
	p.mu.Unlock()
	if err != nil {
		p.advance(id, 0)
		return "", fmt.Errorf("blob %s: %w", l.Digest, err)
	}
	if l.Size == 0 {
		// Fetch cannot tell an empty file from an unknown size.
		if err := verifyFile(path, want, 0); err != nil {
			return "", err
		}
	}
	p.advance(id, l.Size)
	return path, nil
}

// progress records that fetch id has done bytes and reports the total.
func (p *puller) progress(id, done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial == nil {
		p.partial = map[int64]int64{}
	}
	p.partial[id] = done
	p.report()
}

// advance ends fetch id (-1: none was needed), adding n bytes to the
// completed ones, and reports the total.
func (p *puller) advance(id, n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.partial, id)
	p.done += n
	p.report()
}

// report tells Progress what is on disk. The caller holds mu.
func (p *puller) report() {
	if p.o.Progress == nil {
		return
	}
	sum := p.done
	for _, n := range p.partial {
		sum += n
	}
	p.o.Progress(sum, p.total)
}

// verifyFile checks a cached file's size and digest.
func verifyFile(path string, want digest.Digest, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() != size {
		return fmt.Errorf("%s: %w: %d bytes, expected %d", path, ErrSize, st.Size(), size)
	}
	v := want.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return err
	}
	if !v.Verified() {
		return fmt.Errorf("%s: %w: expected %s", path, ErrDigest, want)
	}
	return nil
}

// concatenate writes the blobs, in order, to dst through a temporary file.
func concatenate(dst string, paths []string) error {
	return atomicfile.Write(dst, func(w io.Writer) error {
		for _, p := range paths {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(w, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// FindDeltas lists delta artifacts whose subject is the target manifest
// digest (referrers API or the sha256-<hex> tag fallback). Each
// descriptor's annotations name the base and target config digests
// (AnnotationBase, AnnotationTarget).
//
// Some registries report a referrer's config media type as its
// artifactType (the OCI 1.1 release candidates' rule); a referrer carrying
// AnnotationBase is taken for a delta there too.
func FindDeltas(ctx context.Context, repo name.Repository, target v1.Hash, opts ...remote.Option) ([]v1.Descriptor, error) {
	opts = append(opts, remote.WithContext(ctx))
	idx, err := remote.Referrers(repo.Digest(target.String()), opts...)
	if err != nil {
		return nil, fmt.Errorf("find deltas for %s@%s: %w", repo, target, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("find deltas for %s@%s: %w", repo, target, err)
	}
	var out []v1.Descriptor
	for _, d := range im.Manifests {
		if d.ArtifactType == ArtifactType || d.Annotations[AnnotationBase] != "" {
			d.ArtifactType = ArtifactType
			out = append(out, d)
		}
	}
	return out, nil
}
