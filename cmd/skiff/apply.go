package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	gtransport "github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/dockerengine"
	"github.com/skiff-dev/skiff/layerfs"
)

type applyOptions struct {
	base, delta, output string
	maxWindowMiB        int64
	memoryMiB           int64
	replaceBase         bool
	trust               trustOptions
	format              formatOptions
}

func (o *applyOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.base, "base", "", "the image the device has (the delta's base)")
	fs.StringVar(&o.delta, "delta", "", "delta file (- for standard input)")
	fs.StringVarP(&o.output, "output", "o", "", "where to write the target image (docker-archive:, oci:, oci-archive:, docker://, docker-daemon:)")
	fs.Int64Var(&o.maxWindowMiB, "max-window", 512, "refuse deltas that need a larger zstd window (device memory), MiB")
	fs.Int64Var(&o.memoryMiB, "memory", 16, "memory the apply aims to stay within, MiB (Go soft limit)")
	fs.BoolVar(&o.replaceBase, "replace-base", false, "allow --output to name the base itself (the base is replaced by the target)")
	o.trust.AddFlags(cmd, true)
	o.format.AddFlags(cmd, legacyNone)
	_ = cmd.MarkFlagRequired("base")
	_ = cmd.MarkFlagRequired("delta")
	_ = cmd.MarkFlagRequired("output")
}

func newApplyCommand(g *globalOptions) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply --base REF --delta FILE -o REF",
		Short: "Rebuild the target image from a delta and the base image, verified",
		Long: `Rebuild the target image from the base image and a delta. The base must be
the image the delta names; every payload, every rebuilt layer (its diff_id)
and the config are checked before anything is written, and the output is
published only when complete. The base is never modified: an --output that
names the base (the same file, layout tag, engine tag or registry tag) is
refused unless --replace-base is given. The output's directory, engine or
registry is checked before any work.

A base that already is the delta's target (the same config digest) is not
an error: skiff says "already up to date", writes nothing and exits 0.

The delta's signature is checked first, against the public keys given with
--trust (or $SKIFF_TRUSTED_KEYS): a delta not signed by one of them is
refused before anything else of it is read. --allow-unsigned accepts
unsigned deltas, for development.`,
		Example: `  skiff apply --base docker-archive:old.tar --delta update.skiff --output docker-archive:new.tar --trust release.pub
  skiff apply --base docker-daemon:app:1 --delta update.skiff --output docker-daemon:app:2 --trust release.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runApply(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runApply(ctx context.Context, o *applyOptions, g *globalOptions, out, errOut io.Writer) error {
	if err := o.checkOutput(ctx, g); err != nil {
		return err
	}
	if o.memoryMiB > 0 {
		debug.SetMemoryLimit(o.memoryMiB << 20)
	}
	trust, err := o.trust.load(errOut)
	if err != nil {
		return err
	}
	var in io.Reader
	if o.delta == "-" {
		in = os.Stdin
	} else {
		f, err := os.Open(o.delta)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}
	base, err := layerfs.Open(ctx, o.base, g.refOptions()...)
	if err != nil {
		return err
	}
	defer base.Close()
	opts := delta.ApplyOptions{MaxWindow: o.maxWindowMiB << 20, TrustedKeys: trust.Keys, AllowUnsigned: trust.AllowUnsigned}
	if g.tmpDir != "" {
		if opts.WorkDir, err = os.MkdirTemp(g.tmpDir, "skiff-apply-"); err != nil {
			return err
		}
		defer os.RemoveAll(opts.WorkDir)
	}
	if isTerminal(errOut) {
		opts.Progress = progressPrinter(errOut)
	}
	rec := &headerRecorder{r: in}
	progress := opts.Progress
	opts.Progress = func(done, total int64) {
		rec.stop() // the body is being read: the base was accepted
		if progress != nil {
			progress(done, total)
		}
	}
	res, err := delta.Apply(ctx, base, bufio.NewReaderSize(rec, 64<<10), opts)
	if err != nil {
		if target, ok := alreadyTarget(err, base, rec); ok {
			if o.format.json() {
				return printJSON(out, applyReport{UpToDate: true, ConfigDigest: target})
			}
			fmt.Fprintf(out, "already up to date: %s is the delta's target (%s); nothing written\n", o.base, target)
			return nil
		}
		return fmt.Errorf("apply %s to %s: %w", o.delta, o.base, withTrustHint(err))
	}
	rec.stop()
	defer res.Close()
	if err := layerfs.Write(ctx, o.output, res.Image, append(g.refOptions(), layerfs.WithNames(res.Header.Manifest.Target.Names))...); err != nil {
		return err
	}
	m := res.Header.Manifest
	if res.SignedBy == "" {
		fmt.Fprintln(errOut, "warning: the delta's signature was not verified (--allow-unsigned)")
	}
	rep := applyReport{Output: o.output, ConfigDigest: m.Target.ConfigDigest.String(), Layers: len(m.Layers), SignedBy: res.SignedBy,
		BaseSeconds: res.BaseTime.Seconds(), BodySeconds: res.BodyTime.Seconds(), RebuildSeconds: res.RebuildTime.Seconds(),
		CompressSeconds: res.CompressTime.Seconds(), RebuiltBytes: res.RebuiltBytes}
	if m.Target.Distribution != nil {
		if d, err := res.Image.Digest(); err == nil {
			rep.ManifestDigest = d.String()
		}
	}
	if o.format.json() {
		return printJSON(out, rep)
	}
	if res.SignedBy != "" {
		fmt.Fprintf(out, "signature by trusted key %s verified\n", res.SignedBy)
	}
	fmt.Fprintf(out, "wrote %s: image %s, %d layers verified against their diff_ids\n", o.output, m.Target.ConfigDigest, len(m.Layers))
	fmt.Fprintln(out, applyTimes(res.BaseTime, res.BodyTime, res.RebuildTime, res.CompressTime, res.RebuiltBytes))
	if rep.ManifestDigest != "" {
		fmt.Fprintf(out, "manifest %s reproduced: every compressed blob re-created and checked\n", rep.ManifestDigest)
	}
	return nil
}

// applyReport is apply's --format json answer.
type applyReport struct {
	// UpToDate: the base already was the delta's target; nothing written.
	UpToDate        bool    `json:"up_to_date"`
	Output          string  `json:"output,omitempty"`
	ConfigDigest    string  `json:"config_digest"`
	ManifestDigest  string  `json:"manifest_digest,omitempty"` // when the delta reproduces it
	Layers          int     `json:"layers,omitempty"`
	SignedBy        string  `json:"signed_by,omitempty"` // the trusted key that verified
	BaseSeconds     float64 `json:"base_seconds,omitempty"`
	BodySeconds     float64 `json:"body_seconds,omitempty"`
	RebuildSeconds  float64 `json:"rebuild_seconds,omitempty"`
	CompressSeconds float64 `json:"compress_seconds,omitempty"`
	RebuiltBytes    int64   `json:"rebuilt_bytes,omitempty"`
}

// alreadyTarget reports whether err refused a base that is the delta's
// target itself, and returns that config digest. The header is read again
// from what rec kept (a delta on standard input cannot be re-opened).
func alreadyTarget(err error, base v1.Image, rec *headerRecorder) (string, bool) {
	if !errors.Is(err, format.ErrBaseMismatch) {
		return "", false
	}
	h, herr := format.ReadHeader(bytes.NewReader(rec.bytes()))
	if herr != nil {
		return "", false
	}
	cd, cerr := base.ConfigName()
	if cerr != nil || cd.String() != h.Manifest.Target.ConfigDigest.String() {
		return "", false
	}
	return cd.String(), true
}

// maxRecorded bounds what headerRecorder keeps: a header's largest size
// (16 MiB, delta/FORMAT.md) and the read-ahead.
const maxRecorded = 16<<20 + 1<<20

// headerRecorder keeps the bytes read through it until stop, the start of
// the delta's body: the header, for alreadyTarget.
type headerRecorder struct {
	r       io.Reader
	mu      sync.Mutex
	buf     []byte
	stopped bool
}

func (h *headerRecorder) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.mu.Lock()
	if !h.stopped {
		if len(h.buf)+n > maxRecorded {
			h.stopped, h.buf = true, nil
		} else {
			h.buf = append(h.buf, p[:n]...)
		}
	}
	h.mu.Unlock()
	return n, err
}

func (h *headerRecorder) stop() {
	h.mu.Lock()
	h.stopped, h.buf = true, nil
	h.mu.Unlock()
}

func (h *headerRecorder) bytes() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf
}

// checkOutput finds, before any work, what would make the output fail or
// destroy the base: an output that is the base, a missing directory, an
// engine or registry that does not answer.
func (o *applyOptions) checkOutput(ctx context.Context, g *globalOptions) error {
	outRef, err := layerfs.ParseRef(o.output)
	if err != nil {
		return err
	}
	baseRef, err := layerfs.ParseRef(o.base)
	if err != nil {
		return err
	}
	if !o.replaceBase && sameImage(baseRef, outRef) {
		return usageError{fmt.Sprintf("--output %s is the base %s: writing it would replace the base (give --replace-base if that is meant)", o.output, o.base)}
	}
	switch outRef.Transport {
	case layerfs.TransportDockerArchive, layerfs.TransportOCIArchive:
		dir := filepath.Dir(outRef.Path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("--output %s: directory %s does not exist", o.output, dir)
		}
	case layerfs.TransportOCI:
		// The layout directory is created, but not its parents.
		dir := filepath.Dir(filepath.Clean(outRef.Path))
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("--output %s: directory %s does not exist", o.output, dir)
		}
	case layerfs.TransportDaemon:
		cli, err := dockerengine.Dial(ctx)
		if err != nil {
			return fmt.Errorf("--output %s: %w", o.output, err)
		}
		cli.Close()
	case layerfs.TransportRegistry:
		var nopts []name.Option
		if g.insecure {
			nopts = append(nopts, name.Insecure)
		}
		ref, err := name.ParseReference(outRef.Name, nopts...)
		if err != nil {
			return usageError{fmt.Sprintf("--output %s: %v", o.output, err)}
		}
		// The registry's ping and a push token: one or two requests.
		auth, err := authn.Resolve(ctx, authn.DefaultKeychain, ref.Context())
		if err == nil {
			_, err = gtransport.NewWithContext(ctx, ref.Context().Registry, auth, remote.DefaultTransport, []string{ref.Scope(gtransport.PushScope)})
		}
		if err != nil {
			return fmt.Errorf("--output %s: registry %s: %w", o.output, ref.Context().RegistryStr(), err)
		}
	}
	return nil
}

// sameImage reports whether writing out would replace base: the same
// archive file (whatever its tag or transport), the same tag of one OCI
// layout, the same engine or registry tag.
func sameImage(base, out layerfs.Ref) bool {
	isFile := func(t string) bool { return t == layerfs.TransportDockerArchive || t == layerfs.TransportOCIArchive }
	switch {
	case isFile(base.Transport) && isFile(out.Transport):
		return samePath(base.Path, out.Path)
	case base.Transport != out.Transport:
		return false
	case base.Transport == layerfs.TransportOCI:
		return samePath(base.Path, out.Path) && base.Name == out.Name
	case base.Transport == layerfs.TransportDaemon || base.Transport == layerfs.TransportRegistry:
		b, errB := name.ParseReference(base.Name)
		w, errW := name.ParseReference(out.Name)
		if errB != nil || errW != nil {
			return base.Name == out.Name
		}
		return b.Name() == w.Name() // index.docker.io/library/app:1 == app:1
	}
	return false
}

// samePath reports whether two paths name one file: the same file on disk
// (links included), or the same clean absolute path.
func samePath(a, b string) bool {
	if sa, err := os.Stat(a); err == nil {
		if sb, err := os.Stat(b); err == nil {
			return os.SameFile(sa, sb)
		}
	}
	aa, errA := filepath.Abs(a)
	ab, errB := filepath.Abs(b)
	return errA == nil && errB == nil && aa == ab
}

// applyTimes is apply's timing line: where the time went, and the
// rebuild rate.
func applyTimes(base, body, rebuild, compress time.Duration, rebuilt int64) string {
	rate := 0.0
	if s := rebuild.Seconds(); s > 0 {
		rate = float64(rebuilt) / 1e6 / s
	}
	line := fmt.Sprintf("base taken apart in %s, delta read in %s, %s of layers rebuilt and hashed in %s (%.0f MB/s)",
		humanDuration(base), humanDuration(body), humanBytes(rebuilt), humanDuration(rebuild), rate)
	if compress > 0 {
		line += fmt.Sprintf(", blobs re-compressed in %s", humanDuration(compress))
	}
	return line
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressPrinter draws a one-line progress indicator on a terminal.
func progressPrinter(w io.Writer) func(done, total int64) {
	last := int64(-1)
	return func(done, total int64) {
		if total <= 0 {
			return
		}
		pct := done * 100 / total
		if pct == last {
			return
		}
		last = pct
		fmt.Fprintf(w, "\rapplying delta: %3d%% (%s of %s)", pct, humanBytes(done), humanBytes(total))
		if done == total {
			fmt.Fprintln(w)
		}
	}
}
