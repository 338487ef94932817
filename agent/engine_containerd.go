// The containerd engine drives containerd through its CLI, ctr, rather than
// the containerd Go client. Linking github.com/containerd/containerd/v2/client
// (and grpc/protobuf through it) added ~7 MB to the resident memory of every
// skiff command at startup: a program importing only that package peaks at
// 14.5 MB RSS, one importing only skiff's delta package at 7.6 MB, and
// `skiff apply` on the Go toolchain pair peaked at 41 MB RSS against a
// 32 MiB budget (28 MB before the agent linked the client). ctr ships next to
// the daemon on every containerd host (Debian's containerd package; `k3s ctr`
// is the same tool), and its memory is its own process's, paid only while
// the agent talks to containerd.

package agent

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	_ "crypto/sha256" // digests of metadata blobs
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrContainerd: containerd cannot be reached or refused an operation.
var ErrContainerd = errors.New("containerd error")

// maxMetadataBlob caps manifests, indexes and configs read from the
// content store.
const maxMetadataBlob = 8 << 20

// ctrEnv names the environment variable that sets the ctr command.
const ctrEnv = "SKIFF_CTR"

// annotationImageName is containerd's annotation for the full image name of
// an index entry; an import records the entry under it.
const annotationImageName = "io.containerd.image.name"

// ctrConnectTimeout bounds how long ctr waits for containerd's socket.
const ctrConnectTimeout = "10s"

// ContainerdEngine keeps images in containerd, in one namespace, through
// the ctr command. Load imports the image as an OCI archive whose index
// names it, so the image record points at the image's own manifest: the
// manifest digest is kept.
type ContainerdEngine struct {
	// Ctr is the ctr command, split at spaces ("k3s ctr"). Default
	// $SKIFF_CTR, else "ctr".
	Ctr string

	cfg      ContainerdConfig
	platform string // OS/ARCH[/VARIANT] as given, "" = this host's
	version  struct {
		once  sync.Once
		major int // of ctr; 0 if unknown
	}
	want        v1.Platform
	platformErr error
}

var (
	_ Engine   = (*ContainerdEngine)(nil)
	_ restorer = (*ContainerdEngine)(nil)
)

// NewContainerdEngine makes an engine for containerd at cfg.Address ("" =
// ctr's default: $CONTAINERD_ADDRESS, else /run/containerd/containerd.sock).
// platform is OS/ARCH[/VARIANT] ("" = this host's); a malformed one makes
// every operation fail with ErrConfig.
func NewContainerdEngine(cfg ContainerdConfig, platform string) *ContainerdEngine {
	e := &ContainerdEngine{cfg: cfg, platform: platform}
	if e.cfg.Namespace == "" {
		e.cfg.Namespace = DefaultNamespace
	}
	if platform == "" {
		e.want = v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
		if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
			// Container images of these hosts are Linux images.
			e.want.OS = "linux"
		}
		return e
	}
	p, err := v1.ParsePlatform(platform)
	if err != nil || p.OS == "" || p.Architecture == "" {
		e.platformErr = fmt.Errorf("%w: containerd engine: platform %q: want OS/ARCH[/VARIANT]", ErrConfig, platform)
		return e
	}
	e.want = *p
	return e
}

// platformString is the platform given to ctr and layerfs.
func (e *ContainerdEngine) platformString() string {
	s := e.want.OS + "/" + e.want.Architecture
	if e.want.Variant != "" {
		s += "/" + e.want.Variant
	}
	return s
}

// command is the ctr command line, without arguments.
func (e *ContainerdEngine) command() []string {
	s := e.Ctr
	if s == "" {
		s = os.Getenv(ctrEnv)
	}
	f := strings.Fields(s)
	if len(f) == 0 {
		return []string{"ctr"}
	}
	return f
}

// ctrError is a ctr command that failed.
type ctrError struct {
	cmd    string // the command line
	status int    // exit status, -1 if killed by a signal
	stderr string // trimmed
}

func (e *ctrError) Error() string {
	msg := ctrMessage(e.stderr)
	if msg == "" {
		msg = "no error output"
	}
	return fmt.Sprintf("%s: exit status %d: %s", e.cmd, e.status, msg)
}

func (e *ctrError) Unwrap() error { return ErrContainerd }

// ctrMessage is ctr's stderr without its warnings about the daemon (ctr 2.2+
// prints "DEPRECATION: The support for cgroup v1 is deprecated …" on every
// command on a cgroup-v1 host): what is left says what failed.
func ctrMessage(stderr string) string {
	var keep []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "DEPRECATION: ") || strings.Contains(l, "Failed to check deprecations") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}

// isNotFound reports whether err is ctr saying an object does not exist.
func isNotFound(err error) bool {
	var ce *ctrError
	return errors.As(err, &ce) && strings.Contains(ce.stderr, "not found")
}

// cappedBuffer keeps the first max bytes written to it and counts the
// rest; it never fails a write, so the writing process is never stalled.
type cappedBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - b.buf.Len()
	if room < 0 {
		room = 0
	}
	if len(p) > room {
		b.dropped += int64(len(p) - room)
		b.buf.Write(p[:room])
	} else {
		b.buf.Write(p)
	}
	return len(p), nil
}

// ctr runs ctr with the engine's address, namespace and args, feeding it
// stdin (nil = none) and returning its output (up to maxOut bytes; more
// is an error). Failures wrap ErrContainerd and name the command, its
// exit status and what it printed on stderr.
func (e *ContainerdEngine) ctr(ctx context.Context, stdin io.Reader, maxOut int, args ...string) ([]byte, error) {
	cmd, cmdline, err := e.ctrCommand(ctx, args...)
	if err != nil {
		return nil, err
	}
	cmd.Stdin = stdin
	out := &cappedBuffer{max: maxOut}
	stderr := &cappedBuffer{max: 4 << 10}
	cmd.Stdout, cmd.Stderr = out, stderr
	if err := e.start(cmd, cmdline); err != nil {
		return nil, err
	}
	if err := ctrWait(ctx, cmd, cmdline, stderr); err != nil {
		return nil, err
	}
	if out.dropped > 0 {
		return nil, fmt.Errorf("%s: output of more than %d bytes: %w", cmdline, maxOut, ErrContainerd)
	}
	return out.buf.Bytes(), nil
}

// ctrCommand is the ctr command with the engine's address, namespace and
// args, and its command line for messages.
func (e *ContainerdEngine) ctrCommand(ctx context.Context, args ...string) (*exec.Cmd, string, error) {
	if e.platformErr != nil {
		return nil, "", e.platformErr
	}
	argv := e.command()
	full := append([]string{}, argv[1:]...)
	if e.cfg.Address != "" {
		full = append(full, "--address", e.cfg.Address)
	}
	full = append(full, "--namespace", e.cfg.Namespace, "--connect-timeout", ctrConnectTimeout)
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, argv[0], full...)
	// ctr 2.x asks the daemon for deprecations and prints them on stderr;
	// they are the operator's business, not the agent's.
	cmd.Env = append(os.Environ(), "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1")
	return cmd, strings.Join(append([]string{argv[0]}, full...), " "), nil
}

// ctrMajor is the major version of ctr (`ctr --version`: "ctr
// github.com/containerd/containerd/v2 v2.4.2"), 0 if it cannot be told.
func (e *ContainerdEngine) ctrMajor(ctx context.Context) int {
	e.version.once.Do(func() {
		argv := e.command()
		out, err := exec.CommandContext(ctx, argv[0], append(argv[1:], "--version")...).Output()
		if err != nil {
			return
		}
		e.version.major = parseCtrMajor(string(out))
	})
	return e.version.major
}

// parseCtrMajor reads the major version from `ctr --version` output; 0 if
// there is none.
func parseCtrMajor(out string) int {
	f := strings.Fields(out)
	if len(f) == 0 {
		return 0
	}
	v := strings.TrimPrefix(f[len(f)-1], "v")
	if i := strings.IndexAny(v, ".-~+"); i >= 0 {
		v = v[:i]
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0
	}
	return n
}

// start starts cmd, naming a missing ctr.
func (e *ContainerdEngine) start(cmd *exec.Cmd, cmdline string) error {
	if err := cmd.Start(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("containerd engine: command %q not found (install containerd's ctr, or set %s to the ctr command, e.g. %s=\"k3s ctr\"): %w",
				cmd.Args[0], ctrEnv, ctrEnv, ErrContainerd)
		}
		return fmt.Errorf("%s: %v: %w", cmdline, err, ErrContainerd)
	}
	return nil
}

// ctrWait waits for cmd and turns its failure into an error naming the
// command, its exit status and its stderr.
func ctrWait(ctx context.Context, cmd *exec.Cmd, cmdline string, stderr *cappedBuffer) error {
	err := cmd.Wait()
	if cerr := ctx.Err(); cerr != nil && err != nil {
		return fmt.Errorf("%s: %w", cmdline, cerr)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ctrError{cmd: cmdline, status: ee.ExitCode(), stderr: strings.TrimSpace(stderr.buf.String())}
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %w", cmdline, err, ErrContainerd)
	}
	return nil
}

// imageRecord is a line of `ctr images ls`: an image name and its target.
type imageRecord struct {
	Name      string
	MediaType string
	Digest    string
}

// maxListOutput caps the output of list commands.
const maxListOutput = 16 << 20

// parseImageList reads the table `ctr images ls` prints:
//
//	REF TYPE DIGEST SIZE PLATFORMS LABELS
//
// Names, media types and digests hold no spaces; the size does ("1.2
// MiB"), so only the first three columns are read.
func parseImageList(out []byte) ([]imageRecord, error) {
	var recs []imageRecord
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first {
			if len(f) < 3 || f[0] != "REF" || f[1] != "TYPE" || f[2] != "DIGEST" {
				return nil, fmt.Errorf("ctr images ls: unexpected header %q (want REF TYPE DIGEST …): %w", sc.Text(), ErrContainerd)
			}
			continue
		}
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 {
			return nil, fmt.Errorf("ctr images ls: unexpected line %q: %w", sc.Text(), ErrContainerd)
		}
		if _, err := digest.Parse(f[2]); err != nil {
			return nil, fmt.Errorf("ctr images ls: image %s: target digest %q: %v: %w", f[0], f[2], err, ErrContainerd)
		}
		recs = append(recs, imageRecord{Name: f[0], MediaType: f[1], Digest: f[2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ctr images ls: %v: %w", err, ErrContainerd)
	}
	return recs, nil
}

// images lists the image records matching filters (all if none).
func (e *ContainerdEngine) images(ctx context.Context, filters ...string) ([]imageRecord, error) {
	out, err := e.ctr(ctx, nil, maxListOutput, append([]string{"images", "ls"}, filters...)...)
	if err != nil {
		return nil, err
	}
	return parseImageList(out)
}

// record returns the image record named ref; the error wraps ErrNoImage if
// there is none.
func (e *ContainerdEngine) record(ctx context.Context, ref string) (imageRecord, error) {
	recs, err := e.images(ctx, "name=="+strconv.Quote(ref))
	if err != nil {
		return imageRecord{}, err
	}
	for _, r := range recs {
		if r.Name == ref {
			return r, nil
		}
	}
	return imageRecord{}, fmt.Errorf("containerd image %s (namespace %s): %w", ref, e.cfg.Namespace, ErrNoImage)
}

// blob reads a metadata blob from the content store and checks its digest.
func (e *ContainerdEngine) blob(ctx context.Context, d string) ([]byte, error) {
	want, err := digest.Parse(d)
	if err != nil {
		return nil, fmt.Errorf("containerd blob %q: %v: %w", d, err, ErrContainerd)
	}
	raw, err := e.ctr(ctx, nil, maxMetadataBlob, "content", "get", d)
	if err != nil {
		return nil, err
	}
	if got := want.Algorithm().FromBytes(raw); got != want {
		return nil, fmt.Errorf("containerd blob %s: read %d bytes of digest %s: %w", d, len(raw), got, ErrContainerd)
	}
	return raw, nil
}

// resolved is an image record resolved to its platform manifest.
type resolved struct {
	record         imageRecord
	manifestDigest string
	mediaType      string
	raw            []byte // the manifest
	m              ocispec.Manifest
}

// resolve reads rec's manifest for the engine's platform, going through an
// index if rec's target is one.
func (e *ContainerdEngine) resolve(ctx context.Context, rec imageRecord) (*resolved, error) {
	d, mt := rec.Digest, rec.MediaType
	for depth := 0; ; depth++ {
		if depth > 4 {
			return nil, fmt.Errorf("containerd image %s: indexes nested too deep", rec.Name)
		}
		raw, err := e.blob(ctx, d)
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("containerd image %s: %v: %w", rec.Name, err, ErrNoImage)
			}
			return nil, fmt.Errorf("containerd image %s: %w", rec.Name, err)
		}
		switch t := types.MediaType(mt); {
		case t.IsImage():
			r := &resolved{record: rec, manifestDigest: d, mediaType: mt, raw: raw}
			if err := json.Unmarshal(raw, &r.m); err != nil {
				return nil, fmt.Errorf("containerd image %s: manifest %s: %w", rec.Name, d, err)
			}
			return r, nil
		case t.IsIndex():
			var idx ocispec.Index
			if err := json.Unmarshal(raw, &idx); err != nil {
				return nil, fmt.Errorf("containerd image %s: index %s: %w", rec.Name, d, err)
			}
			var best *ocispec.Descriptor
			for i := range idx.Manifests {
				m := &idx.Manifests[i]
				if m.Platform != nil && e.matches(*m.Platform) {
					best = m
					break
				}
			}
			if best == nil {
				return nil, fmt.Errorf("containerd image %s: index %s has no manifest for platform %s: %w", rec.Name, d, e.platformString(), ErrNoImage)
			}
			d, mt = best.Digest.String(), best.MediaType
		default:
			return nil, fmt.Errorf("containerd image %s: unsupported media type %q", rec.Name, mt)
		}
	}
}

// matches reports whether an index entry's platform is the engine's (the
// rule layerfs applies, so that Inspect and Base pick the same manifest).
func (e *ContainerdEngine) matches(p ocispec.Platform) bool {
	return v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant, OSVersion: p.OSVersion, OSFeatures: p.OSFeatures}.Satisfies(e.want)
}

// resolveRef finds the record of ref and its manifest for the platform.
func (e *ContainerdEngine) resolveRef(ctx context.Context, ref string) (*resolved, error) {
	rec, err := e.record(ctx, ref)
	if err != nil {
		return nil, err
	}
	return e.resolve(ctx, rec)
}

// Inspect describes ref: config digest, diff_ids, the platform manifest
// digest and the record's target (a registry's manifest or index digest).
func (e *ContainerdEngine) Inspect(ctx context.Context, ref string) (ImageInfo, error) {
	r, err := e.resolveRef(ctx, ref)
	if err != nil {
		return ImageInfo{}, err
	}
	raw, err := e.blob(ctx, r.m.Config.Digest.String())
	if err != nil {
		return ImageInfo{}, fmt.Errorf("containerd image %s: config: %w", ref, err)
	}
	var cf struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(raw, &cf); err != nil {
		return ImageInfo{}, fmt.Errorf("containerd image %s: config %s: %w", ref, r.m.Config.Digest, err)
	}
	return ImageInfo{
		ID:             r.m.Config.Digest.String(),
		DiffIDs:        cf.RootFS.DiffIDs,
		ManifestDigest: r.manifestDigest,
		RepoDigests:    []string{ref + "@" + r.record.Digest},
	}, nil
}

// Base reads ref's image for the platform straight from containerd's
// content store: manifest and config now, each layer when it is read,
// streamed from `ctr content get` and checked against its digest at its
// end. Nothing is staged on disk.
func (e *ContainerdEngine) Base(ctx context.Context, ref string) (v1.Image, func() error, error) {
	r, err := e.resolveRef(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := e.blob(ctx, r.m.Config.Digest.String())
	if err != nil {
		return nil, nil, fmt.Errorf("containerd image %s: config: %w", ref, err)
	}
	img, err := partial.CompressedToImage(&ctrImage{e: e, ctx: ctx, ref: ref, r: r, config: cfg})
	if err != nil {
		return nil, nil, fmt.Errorf("containerd image %s: %w", ref, err)
	}
	return img, func() error { return nil }, nil
}

// ctrImage is an image of the content store (partial.CompressedImageCore).
type ctrImage struct {
	e      *ContainerdEngine
	ctx    context.Context
	ref    string
	r      *resolved
	config []byte
}

func (c *ctrImage) RawConfigFile() ([]byte, error) { return c.config, nil }
func (c *ctrImage) RawManifest() ([]byte, error)   { return c.r.raw, nil }
func (c *ctrImage) MediaType() (types.MediaType, error) {
	return types.MediaType(c.r.mediaType), nil
}

func (c *ctrImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range c.r.m.Layers {
		if l.Digest.String() == h.String() {
			return &ctrLayer{img: c, desc: l}, nil
		}
	}
	return nil, fmt.Errorf("containerd image %s: no layer %s in manifest %s: %w", c.ref, h, c.r.manifestDigest, ErrContainerd)
}

// ctrLayer is a layer blob of the content store.
type ctrLayer struct {
	img  *ctrImage
	desc ocispec.Descriptor
}

func (l *ctrLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.desc.Digest.String()) }
func (l *ctrLayer) Size() (int64, error)     { return l.desc.Size, nil }
func (l *ctrLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.desc.MediaType), nil
}

// Compressed streams the blob from `ctr content get`.
func (l *ctrLayer) Compressed() (io.ReadCloser, error) {
	e, ctx := l.img.e, l.img.ctx
	if err := l.desc.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("containerd image %s: layer digest %q: %v: %w", l.img.ref, l.desc.Digest, err, ErrContainerd)
	}
	ctx, cancel := context.WithCancel(ctx)
	cmd, cmdline, err := e.ctrCommand(ctx, "content", "get", l.desc.Digest.String())
	if err != nil {
		cancel()
		return nil, err
	}
	stderr := &cappedBuffer{max: 4 << 10}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	if err := e.start(cmd, cmdline); err != nil {
		cancel()
		return nil, err
	}
	return &ctrStream{ctx: ctx, cancel: cancel, cmd: cmd, cmdline: cmdline, stderr: stderr, out: out,
		v: l.desc.Digest.Verifier(), desc: l.desc}, nil
}

// ctrStream is the output of `ctr content get`: its size and digest are
// checked at its end, where ctr's own failure is reported too.
type ctrStream struct {
	ctx     context.Context
	cancel  context.CancelFunc
	cmd     *exec.Cmd
	cmdline string
	stderr  *cappedBuffer
	out     io.ReadCloser
	v       digest.Verifier
	desc    ocispec.Descriptor
	n       int64
	err     error // sticky
	waited  bool
}

func (s *ctrStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.out.Read(p)
	s.n += int64(n)
	s.v.Write(p[:n])
	switch {
	case s.n > s.desc.Size:
		s.err = fmt.Errorf("containerd blob %s: more than its %d bytes: %w", s.desc.Digest, s.desc.Size, ErrContainerd)
		return n, s.err
	case err == io.EOF:
		s.waited = true
		if werr := ctrWait(s.ctx, s.cmd, s.cmdline, s.stderr); werr != nil {
			s.err = werr
		} else if s.n != s.desc.Size || !s.v.Verified() {
			s.err = fmt.Errorf("containerd blob %s: read %d bytes of another digest (want %d bytes): %w", s.desc.Digest, s.n, s.desc.Size, ErrContainerd)
		} else {
			s.err = io.EOF
		}
		return n, s.err
	case err != nil:
		s.err = err
	}
	return n, err
}

// Close stops ctr if it is still writing.
func (s *ctrStream) Close() error {
	s.cancel()
	if !s.waited {
		s.waited = true
		s.out.Close()
		s.cmd.Wait()
	}
	return nil
}

// Load imports img as ref. The image ref named before is kept under its
// retained name. The archive is streamed to ctr: nothing is staged on
// disk.
func (e *ContainerdEngine) Load(ctx context.Context, img v1.Image, ref string) error {
	newID, err := img.ConfigName()
	if err != nil {
		return err
	}
	retained, oldTarget := "", ""
	if old, err := e.resolveRef(ctx, ref); err == nil {
		if oldID := old.m.Config.Digest.String(); oldID != newID.String() {
			retained, oldTarget = retainedName(ref, oldID), old.record.Digest
			if _, err := e.ctr(ctx, nil, 64<<10, "images", "tag", "--force", ref, retained); err != nil {
				return fmt.Errorf("keep the replaced image: %w", err)
			}
		}
	} else if !errors.Is(err, ErrNoImage) {
		return err
	}
	if err := e.importImage(ctx, img, ref, newID.String()); err != nil {
		// A failed import leaves nothing behind: ctr may have made the
		// record before its unpack failed (1.x, --local), so ref gets
		// its old target back, and the retained record goes.
		uctx := context.WithoutCancel(ctx)
		now, rerr := e.record(uctx, ref)
		switch {
		case rerr != nil && !errors.Is(rerr, ErrNoImage):
			// Cannot tell: keep the retained record.
		case retained == "" && rerr == nil:
			e.ctr(uctx, nil, 64<<10, "images", "rm", ref)
		case retained != "" && (rerr != nil || now.Digest != oldTarget):
			if _, terr := e.ctr(uctx, nil, 64<<10, "images", "tag", "--force", retained, ref); terr != nil {
				return errors.Join(err, fmt.Errorf("name the replaced image %s again: %w", ref, terr))
			}
			e.ctr(uctx, nil, 64<<10, "images", "rm", retained)
		case retained != "":
			e.ctr(uctx, nil, 64<<10, "images", "rm", retained)
		}
		return err
	}
	return nil
}

// importImage streams img to `ctr images import` as ref and checks the
// record it made. ctr 2.x imports through containerd's transfer service,
// which unpacks only into the snapshotters of its unpack_config ("no
// unpack platforms defined" for any other); --local imports in ctr as
// 1.x did, with any snapshotter.
func (e *ContainerdEngine) importImage(ctx context.Context, img v1.Image, ref, newID string) error {
	args := []string{"images", "import", "--platform", e.platformString()}
	if e.ctrMajor(ctx) >= 2 {
		args = append(args, "--local")
	}
	if e.cfg.Unpack == nil || *e.cfg.Unpack {
		if e.cfg.Snapshotter != "" {
			args = append(args, "--snapshotter", e.cfg.Snapshotter)
		}
	} else {
		args = append(args, "--no-unpack")
	}
	args = append(args, "-")
	pr, pw := io.Pipe()
	werr := make(chan error, 1)
	go func() {
		err := writeOCIArchive(pw, img, ref)
		pw.CloseWithError(err)
		werr <- err
	}()
	_, err := e.ctr(ctx, pr, 1<<20, args...)
	pr.CloseWithError(errors.New("ctr stopped reading"))
	if werr := <-werr; werr != nil && err == nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("import %s into containerd: %w", ref, err)
	}
	r, err := e.resolveRef(ctx, ref)
	if errors.Is(err, ErrNoImage) {
		return fmt.Errorf("import %s into containerd: no image record made (%v): %w", ref, err, ErrContainerd)
	}
	if err != nil {
		return err
	}
	if got := r.m.Config.Digest.String(); got != newID {
		return fmt.Errorf("containerd image %s has config %s, want %s: %w", ref, got, newID, ErrVerify)
	}
	return nil
}

// Restore puts previous back under ref after a failed load: ref's record
// gets the retained record's target again and the retained record is
// deleted (with previous "" ref's record is deleted); the failed image's
// content goes with containerd's garbage collection once no record names
// it.
func (e *ContainerdEngine) Restore(ctx context.Context, ref, previous string) error {
	if previous == "" {
		if _, err := e.ctr(ctx, nil, 64<<10, "images", "rm", ref); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete containerd image %s: %w", ref, err)
		}
		return nil
	}
	retained := retainedName(ref, previous)
	r, err := e.resolveRef(ctx, retained)
	if err != nil {
		return fmt.Errorf("the replaced image: %w", err)
	}
	if got := r.m.Config.Digest.String(); got != previous {
		return fmt.Errorf("containerd image %s is %s, not %s: %w", retained, got, previous, ErrNoImage)
	}
	if _, err := e.ctr(ctx, nil, 64<<10, "images", "tag", "--force", retained, ref); err != nil {
		return fmt.Errorf("name %s %s again: %w", previous, ref, err)
	}
	if _, err := e.ctr(ctx, nil, 64<<10, "images", "rm", retained); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete containerd image %s: %w", retained, err)
	}
	return nil
}

// Remove deletes the retained records of image id.
func (e *ContainerdEngine) Remove(ctx context.Context, id string) error {
	recs, err := e.images(ctx)
	if err != nil {
		return fmt.Errorf("list containerd images: %w", err)
	}
	n := 0
	for _, rec := range recs {
		if !isRetainedName(rec.Name, id) {
			continue
		}
		r, err := e.resolve(ctx, rec)
		if err != nil || r.m.Config.Digest.String() != id {
			continue
		}
		if _, err := e.ctr(ctx, nil, 64<<10, "images", "rm", "--sync", rec.Name); err != nil {
			return fmt.Errorf("delete containerd image %s: %w", rec.Name, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("containerd: no retained image %s: %w", id, ErrNoImage)
	}
	return nil
}

// ctrContainer is a line of `ctr containers ls`.
type ctrContainer struct {
	ID, Image string
}

// parseContainerList reads `ctr containers ls`: the containers that have
// an image (a name).
func parseContainerList(out []byte) ([]ctrContainer, error) {
	var cs []ctrContainer
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first {
			if len(f) < 2 || f[0] != "CONTAINER" || f[1] != "IMAGE" {
				return nil, fmt.Errorf("ctr containers ls: unexpected header %q (want CONTAINER IMAGE …): %w", sc.Text(), ErrContainerd)
			}
			continue
		}
		if len(f) < 2 || f[1] == "-" {
			continue
		}
		cs = append(cs, ctrContainer{ID: f[0], Image: f[1]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ctr containers ls: %v: %w", err, ErrContainerd)
	}
	return cs, nil
}

// parseTaskList reads `ctr tasks ls`: each task's status (RUNNING,
// STOPPED, PAUSED, …) by container ID.
func parseTaskList(out []byte) (map[string]string, error) {
	tasks := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for first := true; sc.Scan(); first = false {
		f := strings.Fields(sc.Text())
		if first {
			if len(f) < 3 || f[0] != "TASK" || f[2] != "STATUS" {
				return nil, fmt.Errorf("ctr tasks ls: unexpected header %q (want TASK PID STATUS): %w", sc.Text(), ErrContainerd)
			}
			continue
		}
		if len(f) < 3 {
			continue
		}
		tasks[f[0]] = f[2]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("ctr tasks ls: %v: %w", err, ErrContainerd)
	}
	return tasks, nil
}

// InUse lists the config digests of the images of all containers in the
// namespace.
func (e *ContainerdEngine) InUse(ctx context.Context) (map[string]bool, error) {
	cs, configs, err := e.containerImages(ctx)
	if err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, c := range cs {
		if cfg := configs[c.Image]; cfg != "" {
			used[cfg] = true
		}
	}
	return used, nil
}

// containerImages lists the namespace's containers that have an image,
// and the config digest each of their image names resolves to ("" for a
// name that names no image any more).
func (e *ContainerdEngine) containerImages(ctx context.Context) ([]ctrContainer, map[string]string, error) {
	out, err := e.ctr(ctx, nil, maxListOutput, "containers", "ls")
	if err != nil {
		return nil, nil, fmt.Errorf("list containerd containers: %w", err)
	}
	cs, err := parseContainerList(out)
	if err != nil || len(cs) == 0 {
		return nil, nil, err
	}
	recs, err := e.images(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("list containerd images: %w", err)
	}
	byName := map[string]imageRecord{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	configs := map[string]string{}
	for _, c := range cs {
		if _, done := configs[c.Image]; done {
			continue
		}
		configs[c.Image] = ""
		rec, ok := byName[c.Image]
		if !ok {
			continue
		}
		r, err := e.resolve(ctx, rec)
		if errors.Is(err, ErrNoImage) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		configs[c.Image] = r.m.Config.Digest.String()
	}
	return cs, configs, nil
}

// writeOCIArchive writes img as a tar of an OCI layout whose index.json
// names it ref (io.containerd.image.name and org.opencontainers.image.ref.name)
// and gives its platform from the config, so that an import records ref
// with the image's own manifest as target.
func writeOCIArchive(w io.Writer, img v1.Image, ref string) error {
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	mt, err := img.MediaType()
	if err != nil {
		return err
	}
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: %d bytes, want %d", name, n, size)
		}
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	layoutJSON := []byte(`{"imageLayoutVersion":"1.0.0"}`)
	if err := file("oci-layout", int64(len(layoutJSON)), bytes.NewReader(layoutJSON)); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/", Mode: 0o755, Typeflag: tar.TypeDir}); err != nil {
		return err
	}
	if err := file(blob(m.Config.Digest), int64(len(cfgRaw)), bytes.NewReader(cfgRaw)); err != nil {
		return err
	}
	for _, ld := range m.Layers {
		l, err := img.LayerByDigest(ld.Digest)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = file(blob(ld.Digest), ld.Size, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", ld.Digest, err)
		}
	}
	md := digest.FromBytes(raw)
	mh, _ := v1.NewHash(md.String())
	if err := file(blob(mh), int64(len(raw)), bytes.NewReader(raw)); err != nil {
		return err
	}
	desc := ocispec.Descriptor{
		MediaType: string(mt),
		Digest:    md,
		Size:      int64(len(raw)),
		Platform:  &ocispec.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant},
		Annotations: map[string]string{
			annotationImageName:       ref,
			ocispec.AnnotationRefName: ref,
		},
	}
	idx, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	})
	if err != nil {
		return err
	}
	if err := file("index.json", int64(len(idx)), bytes.NewReader(idx)); err != nil {
		return err
	}
	return tw.Close()
}

// Containers lists the containers whose image name now names the image
// id (a config digest), with their task's status ("" with no task).
// containerd records a container's image by name only, so a container
// made before the update counts too: the hook is what recreates them.
func (e *ContainerdEngine) Containers(ctx context.Context, id string) ([]ContainerStatus, error) {
	cs, configs, err := e.containerImages(ctx)
	if err != nil {
		return nil, err
	}
	var mine []ctrContainer
	for _, c := range cs {
		if configs[c.Image] == id {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		return nil, nil
	}
	tout, err := e.ctr(ctx, nil, maxListOutput, "tasks", "ls")
	if err != nil {
		return nil, fmt.Errorf("list containerd tasks: %w", err)
	}
	tasks, err := parseTaskList(tout)
	if err != nil {
		return nil, err
	}
	var st []ContainerStatus
	for _, c := range mine {
		st = append(st, ContainerStatus{Name: c.ID, State: strings.ToLower(tasks[c.ID])})
	}
	return st, nil
}
