package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/layerfs"
)

type applyOptions struct {
	base, delta, output string
	maxWindowMiB        int64
	memoryMiB           int64
	trust               trustOptions
}

func (o *applyOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&o.base, "base", "", "the image the device has (the delta's base)")
	fs.StringVar(&o.delta, "delta", "", "delta file (- for standard input)")
	fs.StringVar(&o.output, "output", "", "where to write the target image (docker-archive:, oci:, oci-archive:, docker://, docker-daemon:)")
	fs.Int64Var(&o.maxWindowMiB, "max-window", 512, "refuse deltas that need a larger zstd window (device memory), MiB")
	fs.Int64Var(&o.memoryMiB, "memory", 16, "memory the apply aims to stay within, MiB (Go soft limit)")
	o.trust.AddFlags(cmd, true)
	_ = cmd.MarkFlagRequired("base")
	_ = cmd.MarkFlagRequired("delta")
	_ = cmd.MarkFlagRequired("output")
}

func newApplyCommand(g *globalOptions) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply --base REF --delta FILE --output REF",
		Short: "Rebuild the target image from a delta and the base image, verified",
		Long: `Rebuild the target image from the base image and a delta. The base must be
the image the delta names; every payload, every rebuilt layer (its diff_id)
and the config are checked before anything is written, and the output is
published only when complete. The base is never modified.

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
	if _, err := layerfs.ParseRef(o.output); err != nil {
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
	res, err := delta.Apply(ctx, base, bufio.NewReaderSize(in, 64<<10), opts)
	if err != nil {
		return fmt.Errorf("apply %s to %s: %w", o.delta, o.base, withTrustHint(err))
	}
	defer res.Close()
	if err := layerfs.Write(ctx, o.output, res.Image, g.refOptions()...); err != nil {
		return err
	}
	m := res.Header.Manifest
	if res.SignedBy != "" {
		fmt.Fprintf(out, "signature by trusted key %s verified\n", res.SignedBy)
	} else {
		fmt.Fprintln(errOut, "warning: the delta's signature was not verified (--allow-unsigned)")
	}
	fmt.Fprintf(out, "wrote %s: image %s, %d layers verified against their diff_ids\n", o.output, m.Target.ConfigDigest, len(m.Layers))
	fmt.Fprintln(out, applyTimes(res.BaseTime, res.BodyTime, res.RebuildTime, res.CompressTime, res.RebuiltBytes))
	if m.Target.Distribution != nil {
		if d, err := res.Image.Digest(); err == nil {
			fmt.Fprintf(out, "manifest %s reproduced: every compressed blob re-created and checked\n", d)
		}
	}
	return nil
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
