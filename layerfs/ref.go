package layerfs

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Transport names, as skopeo spells them before the first colon of a
// reference.
const (
	TransportDockerArchive = "docker-archive"
	TransportOCI           = "oci"
	TransportOCIArchive    = "oci-archive"
	TransportRegistry      = "docker"
	TransportDaemon        = "docker-daemon"
)

// knownTransports lists the transports in the order error messages name them.
var knownTransports = []string{
	TransportDockerArchive + ":PATH[:TAG]",
	TransportOCI + ":DIR[:REF]",
	TransportOCIArchive + ":PATH[:REF]",
	TransportRegistry + "://HOST/REPO:TAG",
	TransportDaemon + ":NAME:TAG",
}

// Sentinel errors of image references. They are wrapped with the reference
// text and what is wrong, and are matched with errors.Is.
var (
	// ErrBadReference: the reference text does not parse (unknown
	// transport, missing path, malformed tag or registry name) or an option
	// is invalid.
	ErrBadReference = errors.New("bad image reference")
	// ErrImageNotFound: the file, directory, tag, layout entry, registry
	// manifest or engine image the reference names does not exist.
	ErrImageNotFound = errors.New("image not found")
	// ErrAmbiguous: the reference matches several images (a multi-image
	// archive or layout without a TAG/REF, an index with several images for
	// the platform).
	ErrAmbiguous = errors.New("ambiguous image reference")
	// ErrNotImage: the file or directory exists but is not what the
	// transport reads (not a docker-archive, not an OCI layout).
	ErrNotImage = errors.New("not an image of this transport")
	// ErrUnsafeArchive: an oci-archive member would be written outside the
	// extraction directory (absolute path, "..", escaping link) or is of a
	// type a layout never holds (device, fifo).
	ErrUnsafeArchive = errors.New("unsafe archive member")
	// ErrEngine: the Docker Engine cannot be reached or refused an
	// operation.
	ErrEngine = errors.New("docker engine error")
	// ErrImageIDMismatch: the engine loaded an image whose ID is not the
	// config digest of the image written.
	ErrImageIDMismatch = errors.New("loaded image ID differs from config digest")
)

// Ref is a parsed image reference.
//
// For docker-archive, oci and oci-archive, Path is the file or directory
// and Name the optional TAG or REF after it. For docker and docker-daemon,
// Path is empty and Name is the image reference (for docker://, without
// the slashes).
type Ref struct {
	Transport string
	Path      string
	Name      string
}

// String returns the reference in the text form ParseRef reads.
func (r Ref) String() string {
	switch r.Transport {
	case TransportRegistry:
		return r.Transport + "://" + r.Name
	case TransportDaemon:
		return r.Transport + ":" + r.Name
	}
	if r.Name == "" {
		return r.Transport + ":" + r.Path
	}
	return r.Transport + ":" + r.Path + ":" + r.Name
}

// ociRefName is what an oci: REF may hold: the OCI image-spec grammar of
// org.opencontainers.image.ref.name, one or more components of
// alphanumerics separated by "-", "_", ".", ":", "@", "/", "+" (the
// separators may repeat).
var ociRefName = regexp.MustCompile(`^[A-Za-z0-9]+(?:[-._:@/+]+[A-Za-z0-9]+)*$`)

// imageIDRe matches a Docker image ID (config digest), with or without the
// algorithm prefix.
var imageIDRe = regexp.MustCompile(`^(?:sha256:)?[a-f0-9]{64}$`)

// ParseRef parses an image reference:
//
//	docker-archive:PATH[:TAG]    a `docker save` tar; TAG picks one image of several
//	oci:DIR[:REF]                an OCI image layout; REF matches org.opencontainers.image.ref.name
//	oci-archive:PATH[:REF]       a tar of an OCI image layout
//	docker://HOST/REPO:TAG       a registry (also HOST/REPO@sha256:...)
//	docker-daemon:NAME:TAG       a Docker Engine (also NAME@sha256:... or an image ID)
//
// PATH ends at the first colon after the transport, as in skopeo. The
// returned error wraps ErrBadReference and names the reference and the
// problem.
func ParseRef(s string) (Ref, error) {
	bad := func(format string, args ...any) (Ref, error) {
		return Ref{}, fmt.Errorf("image reference %q: %s: %w", s, fmt.Sprintf(format, args...), ErrBadReference)
	}
	transport, rest, ok := strings.Cut(s, ":")
	if !ok || transport == "" {
		return bad("no transport (want one of %s)", strings.Join(knownTransports, ", "))
	}
	r := Ref{Transport: transport}
	switch transport {
	case TransportDockerArchive, TransportOCI, TransportOCIArchive:
		r.Path, r.Name, ok = strings.Cut(rest, ":")
		if r.Path == "" {
			return bad("missing path after %q", transport+":")
		}
		if ok && r.Name == "" {
			return bad("empty %s after the path (drop the trailing colon)", nameWord(transport))
		}
		if r.Name == "" {
			return r, nil
		}
		if transport == TransportDockerArchive {
			if _, err := name.NewTag(r.Name); err != nil {
				return bad("tag %q: %v", r.Name, err)
			}
		} else if !ociRefName.MatchString(r.Name) {
			return bad("ref %q is not a valid org.opencontainers.image.ref.name", r.Name)
		}
		return r, nil
	case TransportRegistry:
		n, ok := strings.CutPrefix(rest, "//")
		if !ok {
			return bad("registry references start with %q", "docker://")
		}
		if n == "" {
			return bad("missing HOST/REPO:TAG after %q", "docker://")
		}
		if _, err := name.ParseReference(n); err != nil {
			return bad("registry reference %q: %v", n, err)
		}
		r.Name = n
		return r, nil
	case TransportDaemon:
		if rest == "" {
			return bad("missing NAME:TAG after %q", "docker-daemon:")
		}
		r.Name = rest
		if imageIDRe.MatchString(rest) {
			return r, nil
		}
		ref, err := name.ParseReference(rest)
		if err != nil {
			return bad("engine image name %q: %v", rest, err)
		}
		// name.ParseReference defaults a missing tag to "latest"; the
		// daemon transport wants it spelt out, as skopeo does.
		if t, isTag := ref.(name.Tag); isTag && !hasExplicitTag(rest) {
			return bad("engine image %q has neither a tag nor a digest (want e.g. %s)", rest, t.Context().String()+":"+t.TagStr())
		}
		return r, nil
	}
	return bad("unknown transport %q (want one of %s)", transport, strings.Join(knownTransports, ", "))
}

// hasExplicitTag reports whether a NAME[:TAG] spells out its tag: a colon
// after the last slash (a colon before it belongs to a registry port).
func hasExplicitTag(s string) bool {
	last := s[strings.LastIndex(s, "/")+1:]
	return strings.Contains(last, ":")
}

func nameWord(transport string) string {
	if transport == TransportDockerArchive {
		return "tag"
	}
	return "ref"
}

// refOptions is the configuration that Options build.
type refOptions struct {
	insecure bool
	platform *v1.Platform
	tempDir  string
	names    []string
}

// Option configures Open and Write.
type Option func(*refOptions) error

func makeRefOptions(opts []Option) (*refOptions, error) {
	o := &refOptions{}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	if o.tempDir == "" {
		o.tempDir = os.TempDir()
	}
	return o, nil
}

// platformOrDefault returns the requested platform, linux/amd64 by default.
func (o *refOptions) platformOrDefault() v1.Platform {
	if o.platform != nil {
		return *o.platform
	}
	return v1.Platform{OS: "linux", Architecture: "amd64"}
}

// WithInsecure lets docker:// references use plain HTTP (and unverified
// TLS), as for a registry on the loopback address. Default false.
func WithInsecure(insecure bool) Option {
	return func(o *refOptions) error {
		o.insecure = insecure
		return nil
	}
}

// platformPart is one element of an OS/ARCH[/VARIANT] platform.
var platformPart = regexp.MustCompile(`^[a-z0-9_]+$`)

// WithPlatform picks the image of a multi-platform index (registry, or a
// nested index in an OCI layout): "OS/ARCH[/VARIANT]", e.g. "linux/arm64/v8".
// Default linux/amd64.
func WithPlatform(platform string) Option {
	return func(o *refOptions) error {
		bad := func(why string) error {
			return fmt.Errorf("platform %q: %s (want OS/ARCH[/VARIANT], e.g. linux/arm64/v8): %w", platform, why, ErrBadReference)
		}
		if strings.Contains(platform, ":") {
			return bad("OS version suffixes are not supported")
		}
		parts := strings.Split(platform, "/")
		if len(parts) < 2 || len(parts) > 3 {
			return bad("need two or three parts separated by /")
		}
		for _, p := range parts {
			if !platformPart.MatchString(p) {
				return bad(fmt.Sprintf("part %q is empty or not lower-case alphanumeric", p))
			}
		}
		p, err := v1.ParsePlatform(platform)
		if err != nil {
			return bad(err.Error())
		}
		o.platform = p
		return nil
	}
}

// WithTempDir sets where Open keeps temporary files (an extracted
// oci-archive, an image saved from the engine) until Image.Close. The
// directory must exist. Default os.TempDir().
func WithTempDir(dir string) Option {
	return func(o *refOptions) error {
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("temp dir %s: not a directory", dir)
		}
		o.tempDir = dir
		return nil
	}
}

// WithNames gives Write the names (REPO:TAG) of the image it writes, for
// a docker-archive whose reference names no tag: its manifest.json lists
// them as RepoTags, so docker load tags the image (without any it is
// <none>:<none>). Each must be a valid tag.
func WithNames(names []string) Option {
	return func(o *refOptions) error {
		for _, n := range names {
			if _, err := name.NewTag(n); err != nil {
				return fmt.Errorf("image name %q: %v: %w", n, err, ErrBadReference)
			}
		}
		o.names = names
		return nil
	}
}
