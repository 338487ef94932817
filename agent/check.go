package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/skiff-dev/skiff/transport"
	"github.com/skiff-dev/skiff/transport/api"
)

// maxServerResponse caps how much of a server answer is read.
const maxServerResponse = 1 << 20

// CheckResult says whether an update exists for one image and how to get
// it.
type CheckResult struct {
	Image string `json:"image"`
	// Current is what the engine holds under the configured ref (ID ""
	// when it holds nothing).
	Current ImageInfo `json:"current"`
	Update  bool      `json:"update"`
	// Target is the image to run, when Update.
	Target *Current `json:"target,omitempty"`
	// Delta locates the delta from Current to Target; nil when none exists
	// (a full pull is then needed).
	Delta *DeltaLocation `json:"delta,omitempty"`
	// Pending: the server is still computing the delta; ask again after
	// RetryAfter.
	Pending    bool     `json:"pending,omitempty"`
	RetryAfter Duration `json:"retry_after,omitempty"`
	// Reason explains a missing delta.
	Reason string `json:"reason,omitempty"`
}

// DeltaLocation is where a delta is: a URL on the rollout server or an
// artifact in a registry.
type DeltaLocation struct {
	URL      string `json:"url,omitempty"`
	Artifact string `json:"artifact,omitempty"` // docker://HOST/REPO@sha256:…
	Digest   string `json:"digest,omitempty"`
	Size     int64  `json:"size,omitempty"`
}

// Check asks the image's source whether an update exists and records the
// check in the state.
func (a *Agent) Check(ctx context.Context, image string) (*CheckResult, error) {
	im, err := a.cfg.Image(image)
	if err != nil {
		return nil, err
	}
	res, err := a.check(ctx, im)
	now := a.clock.Now().UTC()
	_, serr := a.state.Update(im.Name, func(s *ImageState) {
		s.LastCheck = now
		// What the engine holds is known even when the source could not
		// be asked (res is nil only when the engine could not be read).
		if res != nil && res.Current.ID != "" && res.Current.ID != s.Current.ConfigDigest {
			// The engine holds something else than the agent last
			// loaded (e.g. a manual docker pull): believe the engine.
			s.Current = Current{ConfigDigest: res.Current.ID, ManifestDigest: res.Current.ManifestDigest, Ref: im.Ref}
		}
		if res != nil && s.Current.ManifestDigest == "" && res.Current.ManifestDigest != "" {
			s.Current.ManifestDigest = res.Current.ManifestDigest
		}
		if err != nil {
			s.LastError = err.Error()
			return
		}
		s.Available = nil
		if res.Update {
			s.Available = res.Target
		}
		if !res.Update || res.Delta != nil || res.Pending {
			s.LastError = ""
		}
	})
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", image, err)
	}
	return res, serr
}

func (a *Agent) check(ctx context.Context, im *ImageConfig) (*CheckResult, error) {
	cur, err := a.engines[im.Name].Inspect(ctx, im.Ref)
	if err != nil && !errors.Is(err, ErrNoImage) {
		return nil, err
	}
	res := &CheckResult{Image: im.Name, Current: cur}
	if im.Source.IsServer() {
		return res, a.checkServer(ctx, im, res)
	}
	return res, a.checkRegistry(ctx, im, res)
}

// ---------------------------------------------------------------- server

func (a *Agent) bearer(s SourceConfig) (http.Header, error) {
	tok, err := s.token()
	if err != nil {
		return nil, err
	}
	return http.Header{"Authorization": {"Bearer " + tok}}, nil
}

func (a *Agent) checkServer(ctx context.Context, im *ImageConfig, res *CheckResult) error {
	s := im.Source
	hdr, err := a.bearer(s)
	if err != nil {
		return err
	}
	creq := api.CheckRequest{
		Device: a.cfg.Device, Channel: s.Channel, Image: im.Name,
		ConfigDigest: res.Current.ID, DiffIDs: res.Current.DiffIDs,
	}
	if _, old := a.oldServers.Load(s.Server); !old {
		creq.AgentVersion, creq.Platform, creq.Labels = a.agentVersion(), a.agentPlatform(), a.cfg.Labels
	}
	err = a.postCheck(ctx, im, hdr, creq, res)
	var oe *oldServerError
	if errors.As(err, &oe) && creq.AgentVersion != "" {
		// A server older than these fields refuses them (it refuses
		// unknown fields): ask again without, and from now on.
		a.log.Info("the rollout server predates agent_version, platform and labels in check-ins; sending without", "server", s.Server)
		a.oldServers.Store(s.Server, true)
		creq.AgentVersion, creq.Platform, creq.Labels = "", "", nil
		err = a.postCheck(ctx, im, hdr, creq, res)
	}
	return err
}

// oldServerError is a 400 answer refusing the check-in fields that came
// with reports (agent_version, platform) as unknown.
type oldServerError struct{ error }

func (e *oldServerError) Unwrap() error { return e.error }

func (a *Agent) postCheck(ctx context.Context, im *ImageConfig, hdr http.Header, creq api.CheckRequest, res *CheckResult) error {
	s := im.Source
	body, err := json.Marshal(creq)
	if err != nil {
		return err
	}
	u := s.Server + api.PathCheck
	limit := a.cfg.Network.ResponseTimeout.D()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServer, err)
	}
	req.Header = hdr
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.serverClient(im).Do(req)
	if err != nil {
		// Not `POST url: Post "url": ...`: the cause once.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", u, timedOut(parent, err, limit))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxServerResponse))
	if err != nil {
		return fmt.Errorf("POST %s: %w", u, timedOut(parent, err, limit))
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		msg := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if len(msg) > 512 {
			msg = msg[:512]
		}
		err := fmt.Errorf("%w: POST %s: %s: %s", ErrServer, u, resp.Status, msg)
		if resp.StatusCode == http.StatusBadRequest &&
			(strings.Contains(msg, `unknown field "agent_version"`) || strings.Contains(msg, `unknown field "platform"`) ||
				strings.Contains(msg, `unknown field "labels"`)) {
			return &oldServerError{err}
		}
		return err
	}
	var cr api.CheckResponse
	if err := json.Unmarshal(raw, &cr); err != nil {
		return fmt.Errorf("%w: POST %s: unreadable answer: %v", ErrServer, u, err)
	}
	if cr.Pending {
		res.Pending = true
		res.RetryAfter = Duration(time.Duration(max(cr.RetryAfter, 1)) * time.Second)
	}
	if !cr.Update {
		return nil
	}
	if cr.Target == nil || cr.Target.ConfigDigest == "" {
		return fmt.Errorf("%w: POST %s: update without a target", ErrServer, u)
	}
	res.Update = true
	res.Target = &Current{ConfigDigest: cr.Target.ConfigDigest, ManifestDigest: cr.Target.ManifestDigest, Ref: cr.Target.Ref,
		Serial: cr.Target.Serial, Channel: s.Channel}
	switch {
	case cr.Delta != nil:
		base, err := url.Parse(s.Server + "/")
		if err != nil {
			return err
		}
		ref, err := url.Parse(cr.Delta.URL)
		if err != nil {
			return fmt.Errorf("%w: delta URL %q: %v", ErrServer, cr.Delta.URL, err)
		}
		res.Delta = &DeltaLocation{URL: base.ResolveReference(ref).String(), Digest: cr.Delta.Digest, Size: cr.Delta.Size}
	case res.Pending:
	case cr.Error != "":
		res.Reason = "the server offers no delta: " + cr.Error
	case res.Current.ID == "":
		res.Reason = "no image runs yet: a full pull is needed"
	default:
		res.Reason = "the server knows no delta from the running image"
	}
	return nil
}

// ---------------------------------------------------------------- registry

func (a *Agent) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}
	if a.client.Transport != nil {
		opts = append(opts, remote.WithTransport(a.client.Transport))
	}
	if p := a.platform(); p != nil {
		opts = append(opts, remote.WithPlatform(*p))
	}
	return opts
}

func (a *Agent) platform() *v1.Platform {
	s := a.cfg.Platform
	if s == "" {
		s = "linux/amd64"
	}
	p, err := v1.ParsePlatform(s)
	if err != nil {
		return nil
	}
	return p
}

// repository parses a docker://HOST/REPO of the config.
func repository(s string, insecure bool) (name.Repository, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	return name.NewRepository(strings.TrimPrefix(s, "docker://"), opts...)
}

func (a *Agent) checkRegistry(ctx context.Context, im *ImageConfig, res *CheckResult) error {
	s := im.Source
	repo, err := repository(s.Registry, s.Insecure)
	if err != nil {
		return fmt.Errorf("%w: source.registry: %v", ErrConfig, err)
	}
	tag := repo.Tag(s.Tag)
	ropts := a.remoteOptions(ctx)
	head, err := remote.Head(tag, ropts...)
	if err != nil {
		return fmt.Errorf("HEAD %s: %w", tag, err)
	}
	running := a.runningManifests(im, res.Current, repo)
	if running[head.Digest.String()] {
		return nil
	}
	// Resolve an index to the platform's image manifest.
	md := head.Digest
	if head.MediaType.IsIndex() {
		idx, err := remote.Index(tag, ropts...)
		if err != nil {
			return fmt.Errorf("index %s: %w", tag, err)
		}
		imf, err := idx.IndexManifest()
		if err != nil {
			return fmt.Errorf("index %s: %w", tag, err)
		}
		p := a.platform()
		found := false
		for _, d := range imf.Manifests {
			if d.Platform != nil && p != nil && d.Platform.Satisfies(*p) && d.MediaType.IsImage() {
				md, found = d.Digest, true
				break
			}
		}
		if !found {
			return fmt.Errorf("index %s has no image for platform %s: %w", tag, a.cfg.Platform, ErrNoImage)
		}
		if running[md.String()] {
			return nil
		}
	}
	img, err := remote.Image(repo.Digest(md.String()), ropts...)
	if err != nil {
		return fmt.Errorf("manifest %s@%s: %w", repo, md, err)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("manifest %s@%s: %w", repo, md, err)
	}
	if cfg.String() == res.Current.ID {
		// The same image, in another manifest (e.g. loaded from a
		// docker-archive): nothing to do.
		return nil
	}
	res.Update = true
	res.Target = &Current{ConfigDigest: cfg.String(), ManifestDigest: md.String(), Ref: "docker://" + repo.Digest(md.String()).String()}
	if res.Current.ID == "" {
		res.Reason = "no image runs yet: a full pull is needed"
		return nil
	}
	deltas := repo
	if s.Deltas != "" {
		if deltas, err = repository(s.Deltas, s.Insecure); err != nil {
			return fmt.Errorf("%w: source.deltas: %v", ErrConfig, err)
		}
	}
	descs, err := transport.FindDeltas(ctx, deltas, md, ropts...)
	if err != nil {
		return fmt.Errorf("find deltas for %s in %s: %w", md, deltas, err)
	}
	for _, d := range descs {
		if deltaBase(d) == res.Current.ID {
			res.Delta = &DeltaLocation{Artifact: "docker://" + deltas.Digest(d.Digest.String()).String(), Digest: d.Digest.String(), Size: d.Size}
			return nil
		}
	}
	res.Reason = fmt.Sprintf("%d deltas to %s in %s, none from the running image %s", len(descs), md, deltas, res.Current.ID)
	return nil
}

// runningManifests are the manifest (and index) digests that stand for the
// running image: what the engine reports, what the agent itself loaded, and
// the engine's repo digests of the same repository (mirrors normalized).
func (a *Agent) runningManifests(im *ImageConfig, cur ImageInfo, repo name.Repository) map[string]bool {
	m := map[string]bool{}
	if cur.ID == "" {
		return m
	}
	if cur.ManifestDigest != "" {
		m[cur.ManifestDigest] = true
	}
	if st, err := a.state.Load(); err == nil {
		if s := st.Images[im.Name]; s != nil && s.Current.ConfigDigest == cur.ID && s.Current.ManifestDigest != "" {
			m[s.Current.ManifestDigest] = true
		}
	}
	for _, rd := range cur.RepoDigests {
		n, dg, ok := strings.Cut(rd, "@")
		if !ok {
			continue
		}
		if n == im.Ref || SameRepository(n, repo.Name(), Mirrors(a.cfg.Mirrors)) {
			m[dg] = true
		}
	}
	return m
}

// deltaBase is the base config digest a delta artifact names.
func deltaBase(d v1.Descriptor) string { return d.Annotations[transport.AnnotationBase] }

// timedOut names the network timeout behind err, a request's error under a
// context derived from parent with a deadline limit away: "no answer
// within 1m0s" rather than "context deadline exceeded".
func timedOut(parent context.Context, err error, limit time.Duration) error {
	var ne net.Error
	if parent.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("no answer within %s (network.response_timeout): %w", limit, err)
	}
	return err
}
