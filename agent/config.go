package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"gopkg.in/yaml.v3"
)

// Sentinel errors of the agent. They are wrapped with context and matched
// with errors.Is.
var (
	// ErrConfig: the configuration file is unreadable or invalid; the
	// message names the field.
	ErrConfig = errors.New("invalid agent config")
	// ErrState: the state file is unreadable or cannot be written.
	ErrState = errors.New("agent state")
	// ErrNoImage: the engine does not hold the image the config names.
	ErrNoImage = errors.New("image not in the engine")
	// ErrNoDelta: no delta from the running image to the target exists
	// and a full pull is not allowed.
	ErrNoDelta = errors.New("no delta available")
	// ErrVerify: what the engine holds after a load is not the target.
	ErrVerify = errors.New("loaded image differs from the target")
	// ErrServer: the rollout server refused or answered nonsense.
	ErrServer = errors.New("rollout server error")
	// ErrBackoff: the install of this target failed after its load (and
	// was rolled back) and is not tried again before its backoff ends.
	ErrBackoff = errors.New("a failed update of this target is backing off")
	// ErrRollback: the server offers a target published before the one
	// installed (anti-rollback; an admin's rollback is a newer publish).
	ErrRollback = errors.New("refusing an older target")
	// ErrHook: the post-update hook failed.
	ErrHook = errors.New("update hook failed")
	// ErrUnhealthy: the update's hook or health check failed and the
	// agent rolled back to the previous image.
	ErrUnhealthy = errors.New("update failed its health check")
	// ErrHeldBack: the target offered is one that failed its health check
	// on this device; the agent waits for a newer one.
	ErrHeldBack = errors.New("target failed its health check here")
	// ErrUnknownImage: no image of that name in the config.
	ErrUnknownImage = errors.New("no such image in the config")
)

// Defaults of the configuration.
const (
	DefaultConfigPath   = "/etc/skiff/agent.yaml"
	DefaultInterval     = 24 * time.Hour
	DefaultBackoffMin   = time.Minute
	DefaultKeep         = 1
	DefaultNamespace    = "default"
	DefaultContainerdIO = "/run/containerd/containerd.sock"

	DefaultHealthTimeout  = 2 * time.Minute
	DefaultHealthInterval = 5 * time.Second

	DefaultConnectTimeout  = 30 * time.Second
	DefaultResponseTimeout = time.Minute
	DefaultStallTimeout    = time.Minute
)

// Engine kinds (ImageConfig.Engine; oci is written "oci:DIR").
const (
	EngineDocker     = "docker"
	EngineContainerd = "containerd"
	EngineOCI        = "oci"
)

// Config is the agent's YAML configuration.
type Config struct {
	// StateDir holds state.json (systemd's StateDirectory, e.g. /var/lib/skiff).
	StateDir string `yaml:"state_dir" json:"state_dir"`
	// WorkDir holds downloads and apply scratch space (default STATE_DIR/work).
	WorkDir string `yaml:"work_dir" json:"work_dir"`
	// Device names this device to the rollout server (default: host name).
	Device string `yaml:"device" json:"device,omitempty"`
	// Platform picks the image of a multi-platform index, OS/ARCH[/VARIANT]
	// (default linux/amd64).
	Platform string `yaml:"platform" json:"platform,omitempty"`
	// Labels are sent with every check-in (e.g. group: canary, site:
	// berlin): a staged rollout's group waves select devices by them. At
	// most 32; keys 1-128 of [A-Za-z0-9._/-] starting alphanumeric, values
	// 1-128 of [A-Za-z0-9._:-].
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
	// Mirrors maps an upstream registry (e.g. docker.io) to the hosts (with
	// an optional path prefix, e.g. harbor.local/dockerhub) that mirror it,
	// so a mirrored name is known as the upstream image.
	Mirrors map[string][]string `yaml:"mirrors" json:"mirrors,omitempty"`
	// TrustedKeys are public key files (PEM, skiff key generate): a delta
	// is applied only if it carries a valid signature by one of them.
	TrustedKeys []string `yaml:"trusted_keys" json:"trusted_keys,omitempty"`
	// AllowUnsigned accepts unsigned deltas (development only); signed
	// ones must still verify against TrustedKeys when there are any.
	AllowUnsigned bool `yaml:"allow_unsigned" json:"allow_unsigned,omitempty"`
	// Containerd configures the containerd engine.
	Containerd ContainerdConfig `yaml:"containerd" json:"containerd"`
	// Network bounds every network operation of the agent.
	Network NetworkConfig `yaml:"network" json:"network"`
	Images  []ImageConfig `yaml:"images" json:"images"`

	// path is the file the config was read from (for messages).
	path string
}

// NetworkConfig bounds the agent's network operations, so that a server
// that accepts and never answers, or a download that stalls, cannot hold
// the agent. The defaults suit a slow cellular link: a download that makes
// progress, however slowly, is never cut.
type NetworkConfig struct {
	// ConnectTimeout bounds a TCP connect and a TLS handshake (default 30s).
	ConnectTimeout Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// ResponseTimeout bounds the wait for a server's response headers, and
	// the whole of an update check (default 60s).
	ResponseTimeout Duration `yaml:"response_timeout" json:"response_timeout"`
	// StallTimeout cuts a delta download that receives nothing for this
	// long; the next try resumes where it stopped (default 60s).
	StallTimeout Duration `yaml:"stall_timeout" json:"stall_timeout"`
}

// ContainerdConfig configures the containerd engine.
type ContainerdConfig struct {
	// Address of containerd's socket (default $CONTAINERD_ADDRESS, else
	// /run/containerd/containerd.sock).
	Address string `yaml:"address" json:"address,omitempty"`
	// Namespace of the images (default "default").
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// Snapshotter to unpack into ("" = containerd's default).
	Snapshotter string `yaml:"snapshotter" json:"snapshotter,omitempty"`
	// Unpack a loaded image into the snapshotter (default true).
	Unpack *bool `yaml:"unpack" json:"unpack,omitempty"`
}

// ImageConfig is one image the agent keeps up to date.
type ImageConfig struct {
	// Name is the logical image name (the server's image, the state key).
	Name string `yaml:"name" json:"name"`
	// Engine is docker, containerd or oci:DIR.
	Engine string `yaml:"engine" json:"engine"`
	// Ref is the local image name the device runs, e.g. "web:stable".
	Ref    string       `yaml:"ref" json:"ref"`
	Source SourceConfig `yaml:"source" json:"source"`
	Policy PolicyConfig `yaml:"policy" json:"policy"`
	// Hook is a shell command run (sh -c) after a successful update, with
	// SKIFF_IMAGE, SKIFF_REF, SKIFF_CONFIG_DIGEST and SKIFF_PREVIOUS_DIGEST set.
	Hook string `yaml:"hook" json:"hook,omitempty"`
	// Keep is how many replaced images to keep (default 1).
	Keep *int `yaml:"keep" json:"keep,omitempty"`
	// AllowFullPull lets the agent pull the whole target when no delta
	// exists (default false: report and wait).
	AllowFullPull bool `yaml:"allow_full_pull" json:"allow_full_pull,omitempty"`
	// Health makes updates health-checked: after the hook, the check must
	// pass, and if it or the hook fails the agent rolls back to the
	// previous image. Nil: an update stands once loaded.
	Health *HealthConfig `yaml:"health" json:"health,omitempty"`
}

// HealthConfig is an image's health check after an update.
type HealthConfig struct {
	// Command is run with sh -c (with the hook's environment); exit 0 is
	// healthy. Empty: only the hook's success counts.
	Command string `yaml:"command" json:"command,omitempty"`
	// Containers: the containers of the target image (at least one) must
	// be running, and healthy where they have a health check (Docker's
	// HEALTHCHECK). Checked after Command; the hook is what starts them.
	Containers bool `yaml:"containers" json:"containers,omitempty"`
	// Timeout is how long the check may take to pass first, tried every
	// Interval (default 2m).
	Timeout Duration `yaml:"timeout" json:"timeout"`
	// Interval between tries (default 5s).
	Interval Duration `yaml:"interval" json:"interval"`
	// Settle is how long the check must keep passing once it has, tried
	// every Interval (default 0: once is enough).
	Settle Duration `yaml:"settle" json:"settle"`
}

// SourceConfig says where updates come from: a rollout server or a registry.
type SourceConfig struct {
	Server    string `yaml:"server" json:"server,omitempty"`
	Token     string `yaml:"token" json:"-"`
	TokenFile string `yaml:"token_file" json:"token_file,omitempty"`
	Channel   string `yaml:"channel" json:"channel,omitempty"`
	// CAFile pins the server's CA: a PEM bundle the server's certificate
	// must chain to, trusted instead of the system's roots (https only).
	CAFile string `yaml:"ca_file" json:"ca_file,omitempty"`
	// ClientCert and ClientKey (PEM, both or neither) are the device's
	// certificate, presented to the server (skiff serve --client-ca).
	ClientCert string `yaml:"client_cert" json:"client_cert,omitempty"`
	ClientKey  string `yaml:"client_key" json:"client_key,omitempty"`

	// Registry is docker://HOST/REPO (no tag); Tag the tag to follow.
	Registry string `yaml:"registry" json:"registry,omitempty"`
	Tag      string `yaml:"tag" json:"tag,omitempty"`
	// Deltas is the repository holding delta artifacts (docker://HOST/REPO,
	// default the image repository).
	Deltas string `yaml:"deltas" json:"deltas,omitempty"`
	// Insecure allows plain HTTP to the registry.
	Insecure bool `yaml:"insecure" json:"insecure,omitempty"`
}

// IsServer reports whether the source is a rollout server.
func (s SourceConfig) IsServer() bool { return s.Server != "" }

// PolicyConfig is when to check.
type PolicyConfig struct {
	// Interval between checks (default 24h).
	Interval Duration `yaml:"interval" json:"interval"`
	// Jitter: each wait is lengthened by a random amount in [0, Jitter)
	// (default a tenth of Interval).
	Jitter Duration `yaml:"jitter" json:"jitter"`
	// BackoffMin is the first wait after a failure (default 1m, at most
	// Interval); it doubles per failure up to BackoffMax.
	BackoffMin Duration `yaml:"backoff_min" json:"backoff_min"`
	// BackoffMax caps the wait after failures (default Interval).
	BackoffMax Duration `yaml:"backoff_max" json:"backoff_max"`
}

// Duration is a time.Duration written as "24h", "90s" in YAML and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses "1h30m"-style durations.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 24h or 90s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 24h, 30m, 90s)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// LoadConfig reads and validates the YAML configuration at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.path = path
	return c, nil
}

// ParseConfig parses and validates a YAML configuration, filling in
// defaults. Unknown fields are errors (a typo must not silently disable a
// setting).
func ParseConfig(b []byte) (*Config, error) {
	// Unknown keys first, named by their path (yaml's own message names a
	// Go type).
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if m := unknownField(&doc, reflect.TypeFor[Config]()); m != "" {
		return nil, fmt.Errorf("%w: %s", ErrConfig, m)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	c := &Config{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// ociRefName is the grammar of org.opencontainers.image.ref.name.
var ociRefName = regexp.MustCompile(`^[A-Za-z0-9]+(?:[-._:@/+]+[A-Za-z0-9]+)*$`)

// imageNameRe is what a logical image name may be (it is also a state key
// and part of file names).
// labelKeyRe and labelValueRe are the server's rules for labels
// (transport/server/rollout.ValidLabel).
var (
	labelKeyRe   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`)
	labelValueRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
)

// maxLabels is the most labels the server accepts.
const maxLabels = 32

var imageNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,127}$`)

func (c *Config) validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
	}
	if c.StateDir == "" {
		return bad("state_dir", "missing (e.g. /var/lib/skiff)")
	}
	if !filepath.IsAbs(c.StateDir) {
		return bad("state_dir", "%q is not an absolute path", c.StateDir)
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(c.StateDir, "work")
	} else if !filepath.IsAbs(c.WorkDir) {
		return bad("work_dir", "%q is not an absolute path", c.WorkDir)
	}
	if c.Device == "" {
		c.Device, _ = os.Hostname()
	}
	for _, d := range []struct {
		name string
		v    *Duration
		def  time.Duration
	}{
		{"network.connect_timeout", &c.Network.ConnectTimeout, DefaultConnectTimeout},
		{"network.response_timeout", &c.Network.ResponseTimeout, DefaultResponseTimeout},
		{"network.stall_timeout", &c.Network.StallTimeout, DefaultStallTimeout},
	} {
		switch {
		case *d.v == 0:
			*d.v = Duration(d.def)
		case d.v.D() < time.Second:
			return bad(d.name, "%s is too short (at least 1s)", d.v.D())
		}
	}
	if c.Platform != "" {
		if p := strings.Split(c.Platform, "/"); len(p) < 2 || len(p) > 3 || p[0] == "" || p[1] == "" {
			return bad("platform", "%q: want OS/ARCH[/VARIANT], e.g. linux/arm64/v8", c.Platform)
		}
	}
	if len(c.Labels) > maxLabels {
		return bad("labels", "%d labels: at most %d", len(c.Labels), maxLabels)
	}
	for k, v := range c.Labels {
		if !labelKeyRe.MatchString(k) {
			return bad("labels", "key %q: want 1-128 of [A-Za-z0-9._/-], starting alphanumeric", k)
		}
		if !labelValueRe.MatchString(v) {
			return bad("labels."+k, "%q: want 1-128 of [A-Za-z0-9._:-]", v)
		}
	}
	for up, hosts := range c.Mirrors {
		if up == "" || strings.Contains(up, "/") {
			return bad("mirrors", "%q: the key is an upstream registry host, e.g. docker.io", up)
		}
		for i, h := range hosts {
			if h == "" || strings.Contains(h, "://") {
				return bad(fmt.Sprintf("mirrors.%s[%d]", up, i), "%q: want HOST[:PORT][/PREFIX] without a scheme", h)
			}
		}
	}
	for i, k := range c.TrustedKeys {
		if !filepath.IsAbs(k) {
			return bad(fmt.Sprintf("trusted_keys[%d]", i), "%q is not an absolute path", k)
		}
	}
	if c.Containerd.Namespace == "" {
		c.Containerd.Namespace = DefaultNamespace
	}
	if c.Containerd.Address == "" {
		c.Containerd.Address = os.Getenv("CONTAINERD_ADDRESS")
	}
	if c.Containerd.Address == "" {
		c.Containerd.Address = DefaultContainerdIO
	}
	if c.Containerd.Unpack == nil {
		t := true
		c.Containerd.Unpack = &t
	}
	if len(c.Images) == 0 {
		return bad("images", "no images configured")
	}
	seen := map[string]bool{}
	for i := range c.Images {
		im := &c.Images[i]
		f := fmt.Sprintf("images[%d]", i)
		if im.Name != "" {
			f = fmt.Sprintf("images[%d] (%s)", i, im.Name)
		}
		if err := im.validate(f, bad); err != nil {
			return err
		}
		if seen[im.Name] {
			return bad(f+".name", "%q is used twice", im.Name)
		}
		seen[im.Name] = true
	}
	return nil
}

func (im *ImageConfig) validate(f string, bad func(field, format string, args ...any) error) error {
	if im.Name == "" {
		return bad(f+".name", "missing")
	}
	if !imageNameRe.MatchString(im.Name) {
		return bad(f+".name", "%q: use lower-case letters, digits, '.', '_' and '-'", im.Name)
	}
	kind, dir := EngineKind(im.Engine)
	switch kind {
	case EngineDocker, EngineContainerd:
	case EngineOCI:
		if dir == "" || !filepath.IsAbs(dir) {
			return bad(f+".engine", "%q: want oci:DIR with an absolute DIR", im.Engine)
		}
	case "":
		return bad(f+".engine", "missing (docker, containerd or oci:DIR)")
	default:
		return bad(f+".engine", "%q: want docker, containerd or oci:DIR", im.Engine)
	}
	if im.Ref == "" {
		return bad(f+".ref", "missing (the local image name the device runs, e.g. web:stable)")
	}
	switch kind {
	case EngineOCI:
		if !ociRefName.MatchString(im.Ref) {
			return bad(f+".ref", "%q is not a valid OCI ref name", im.Ref)
		}
	default:
		last := im.Ref[strings.LastIndex(im.Ref, "/")+1:]
		if _, err := name.NewTag(im.Ref); err != nil || !strings.Contains(last, ":") {
			return bad(f+".ref", "%q: want NAME:TAG, e.g. web:stable", im.Ref)
		}
	}
	s := &im.Source
	switch {
	case s.Server != "" && s.Registry != "":
		return bad(f+".source", "set either server or registry, not both")
	case s.Server != "":
		u, err := url.Parse(s.Server)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(f+".source.server", "%q: want an http(s):// URL", s.Server)
		}
		s.Server = strings.TrimRight(s.Server, "/")
		if s.Token != "" && s.TokenFile != "" {
			return bad(f+".source", "set either token or token_file, not both")
		}
		if s.Token == "" && s.TokenFile == "" {
			return bad(f+".source.token", "missing (token or token_file: the device token)")
		}
		if s.TokenFile != "" && !filepath.IsAbs(s.TokenFile) {
			return bad(f+".source.token_file", "%q is not an absolute path", s.TokenFile)
		}
		if s.Channel == "" {
			return bad(f+".source.channel", "missing (e.g. stable)")
		}
		if err := s.validateTLS(f, u.Scheme, bad); err != nil {
			return err
		}
		if s.Tag != "" || s.Deltas != "" {
			return bad(f+".source", "tag and deltas belong to a registry source")
		}
	case s.Registry != "":
		repo, ok := strings.CutPrefix(s.Registry, "docker://")
		if !ok {
			return bad(f+".source.registry", "%q: want docker://HOST/REPO", s.Registry)
		}
		if _, err := name.NewRepository(repo); err != nil {
			return bad(f+".source.registry", "%q: want docker://HOST/REPO without a tag (the tag goes in source.tag)", s.Registry)
		}
		if s.Tag == "" {
			return bad(f+".source.tag", "missing (the tag to follow, e.g. stable)")
		}
		if _, err := name.NewTag("x:" + s.Tag); err != nil {
			return bad(f+".source.tag", "%q is not a valid tag", s.Tag)
		}
		if s.Deltas != "" {
			d, ok := strings.CutPrefix(s.Deltas, "docker://")
			if _, err := name.NewRepository(d); !ok || err != nil || strings.ContainsAny(d, "@") {
				return bad(f+".source.deltas", "%q: want docker://HOST/REPO", s.Deltas)
			}
		}
		if s.Token != "" || s.TokenFile != "" || s.Channel != "" {
			return bad(f+".source", "token, token_file and channel belong to a server source")
		}
		if s.CAFile != "" || s.ClientCert != "" || s.ClientKey != "" {
			return bad(f+".source", "ca_file, client_cert and client_key belong to a server source")
		}
	default:
		return bad(f+".source", "missing (server: URL or registry: docker://HOST/REPO)")
	}
	p := &im.Policy
	for _, d := range []struct {
		n string
		v Duration
	}{{"interval", p.Interval}, {"jitter", p.Jitter}, {"backoff_min", p.BackoffMin}, {"backoff_max", p.BackoffMax}} {
		if d.v < 0 {
			return bad(f+".policy."+d.n, "negative duration %s", d.v.D())
		}
	}
	if p.Interval == 0 {
		p.Interval = Duration(DefaultInterval)
	}
	if p.Interval.D() < time.Second {
		return bad(f+".policy.interval", "%s is too short (at least 1s)", p.Interval.D())
	}
	if p.Jitter == 0 {
		p.Jitter = p.Interval / 10
	}
	if p.BackoffMin == 0 {
		p.BackoffMin = Duration(min(DefaultBackoffMin, p.Interval.D()))
	}
	if p.BackoffMax == 0 {
		p.BackoffMax = p.Interval
	}
	if p.BackoffMax < p.BackoffMin {
		return bad(f+".policy.backoff_max", "%s is shorter than backoff_min %s", p.BackoffMax.D(), p.BackoffMin.D())
	}
	if im.Keep == nil {
		k := DefaultKeep
		im.Keep = &k
	} else if *im.Keep < 0 {
		return bad(f+".keep", "%d: must be 0 or more", *im.Keep)
	}
	if im.AllowFullPull && s.Server == "" && s.Registry == "" {
		return bad(f+".allow_full_pull", "needs a source")
	}
	if h := im.Health; h != nil {
		for _, d := range []struct {
			n string
			v Duration
		}{{"timeout", h.Timeout}, {"interval", h.Interval}, {"settle", h.Settle}} {
			if d.v < 0 {
				return bad(f+".health."+d.n, "negative duration %s", d.v.D())
			}
		}
		if h.Timeout == 0 {
			h.Timeout = Duration(DefaultHealthTimeout)
		}
		if h.Interval == 0 {
			h.Interval = Duration(min(DefaultHealthInterval, h.Timeout.D()))
		}
		if h.Interval > h.Timeout {
			return bad(f+".health.interval", "%s is longer than the timeout %s", h.Interval.D(), h.Timeout.D())
		}
		if h.Containers && kind == EngineOCI {
			return bad(f+".health.containers", "the %s engine runs no containers", im.Engine)
		}
	}
	return nil
}

// EngineKind splits an engine spec into its kind and, for oci:DIR, the
// directory.
func EngineKind(spec string) (kind, dir string) {
	if d, ok := strings.CutPrefix(spec, "oci:"); ok {
		return EngineOCI, d
	}
	return spec, ""
}

// Image returns the configured image called name.
func (c *Config) Image(name string) (*ImageConfig, error) {
	for i := range c.Images {
		if c.Images[i].Name == name {
			return &c.Images[i], nil
		}
	}
	var names []string
	for _, im := range c.Images {
		names = append(names, im.Name)
	}
	return nil, fmt.Errorf("%q (configured: %s): %w", name, strings.Join(names, ", "), ErrUnknownImage)
}

// token returns the device token of a server source.
func (s SourceConfig) token() (string, error) {
	if s.Token != "" {
		return s.Token, nil
	}
	b, err := os.ReadFile(s.TokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: source.token_file: %w", ErrConfig, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%w: source.token_file %s is empty", ErrConfig, s.TokenFile)
	}
	return t, nil
}
