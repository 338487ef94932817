package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/delta"
	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/layerfs"
	"github.com/skiff-dev/skiff/transport"
)

type diffOptions struct {
	from, to, output string
	encoders         []string
	level, jobs      int
	memoryMiB        int64
	dictMiB          int64
	format           formatOptions
	verbose          bool
	manifest         string
	sign             []string
	names            []string
}

func (o *diffOptions) AddFlags(cmd *cobra.Command) {
	d := delta.DefaultOptions()
	fs := cmd.Flags()
	fs.StringVar(&o.from, "from", "", "base image reference (what the device has)")
	fs.StringVar(&o.to, "to", "", "target image reference (what the device should get)")
	fs.StringVarP(&o.output, "output", "o", "", "delta file to write")
	fs.StringSliceVar(&o.encoders, "encoders", defaultEncoders(d), "encoders allowed for changed files (zstd is always allowed); gunzip: diff GNU-gzip files by their content")
	fs.IntVar(&o.level, "level", d.Level, "1 (fastest) to 3: zstd level; 4: best zstd, and brotli 9 for patches where smaller; 5: brotli 11 for patches and every encoder on every file (smallest delta, several times slower)")
	fs.IntVarP(&o.jobs, "jobs", "j", d.Jobs, "files encoded in parallel")
	fs.Int64Var(&o.memoryMiB, "memory", d.MemoryCap>>20, "memory the per-file encoders may use at once, MiB (a file that needs more is diffed in chunks; the Go soft limit is set a third above it); the default is skiff serve's")
	fs.Int64Var(&o.dictMiB, "max-dict", d.MaxDictBase>>20, "largest base file used as a zstd dictionary, MiB (a device holds it in memory)")
	fs.StringVar(&o.manifest, "manifest", "auto", "carry the target's registry manifest and gzip recipes so apply reproduces its manifest digest: auto (yes for registry and OCI targets), yes, no")
	fs.BoolVarP(&o.verbose, "verbose", "v", false, "also list the files that cost the most")
	fs.StringArrayVar(&o.names, "name", nil, "a name (REPO:TAG) the target is known by, carried in the delta: apply writes it into a docker-archive output that names no tag; repeatable")
	fs.StringArrayVar(&o.sign, "sign", nil, "sign the delta with this private key file (skiff key generate); repeatable (key rotation: old and new)")
	o.format.AddFlags(cmd, legacyJSON)
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	_ = cmd.MarkFlagRequired("output")
}

func newDiffCommand(g *globalOptions) *cobra.Command {
	o := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff --from REF --to REF -o FILE",
		Short: "Write a delta that turns one image into another",
		Long: `Write a delta that rebuilds the target image exactly from the base image:
every changed file as bsdiff, zstd with the old file as dictionary, or plain
zstd (whichever is smallest); files already in the base cost nothing; each
layer's headers are compressed against the base layer's headers.`,
		Example: `  skiff diff --from docker-archive:old.tar --to docker-archive:new.tar -o update.skiff --sign release.key`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDiff(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// defaultEncoders lists the encoders d allows, in --encoders spelling.
func defaultEncoders(d delta.Options) []string {
	var out []string
	for _, e := range []struct {
		on   bool
		name string
	}{{d.Bsdiff, "bsdiff"}, {d.BsdiffX86, "bsdiff-x86"}, {d.ZstdDict, "zstd-dict"}, {true, "zstd"}, {d.Gunzip, "gunzip"}} {
		if e.on {
			out = append(out, e.name)
		}
	}
	return out
}

// deltaOptions turns the flags into delta.Options, starting from
// delta.DefaultOptions() so that the defaults — and so the delta bytes —
// are the rollout server's.
func (o *diffOptions) deltaOptions() (delta.Options, error) {
	opts := delta.DefaultOptions()
	opts.Bsdiff, opts.BsdiffX86, opts.ZstdDict, opts.Gunzip = false, false, false, false
	for _, e := range o.encoders {
		switch e {
		case "bsdiff":
			opts.Bsdiff = true
		case "bsdiff-x86":
			opts.BsdiffX86 = true
		case "zstd-dict":
			opts.ZstdDict = true
		case "gunzip":
			opts.Gunzip = true
		case "zstd":
		default:
			return opts, usageError{fmt.Sprintf("--encoders: unknown encoder %q (known: bsdiff, bsdiff-x86, zstd-dict, zstd, gunzip)", e)}
		}
	}
	switch o.manifest {
	case "yes":
		opts.Manifest = true
	case "no":
	case "auto":
		ref, err := layerfs.ParseRef(o.to)
		if err != nil {
			return opts, err
		}
		opts.Manifest = transport.CarriesManifest(ref)
	default:
		return opts, usageError{fmt.Sprintf("--manifest must be auto, yes or no, not %q", o.manifest)}
	}
	if o.memoryMiB < 48 {
		return opts, usageError{fmt.Sprintf("--memory %d: must be at least 48 MiB", o.memoryMiB)}
	}
	if o.level < 1 || o.level > 5 {
		return opts, usageError{fmt.Sprintf("--level %d: must be 1 to 5", o.level)}
	}
	if o.jobs < 1 {
		return opts, usageError{fmt.Sprintf("--jobs %d: must be at least 1", o.jobs)}
	}
	opts.Level, opts.Jobs, opts.MemoryCap, opts.MaxDictBase = min(o.level, 4), o.jobs, o.memoryMiB<<20, o.dictMiB<<20
	for _, n := range o.names {
		if _, err := name.NewTag(n); err != nil {
			return opts, usageError{fmt.Sprintf("--name %q: want REPO:TAG (%v)", n, err)}
		}
	}
	opts.TargetNames = o.names
	switch o.level {
	case 4:
		opts.BrotliQuality = 9
	case 5:
		opts.BrotliQuality, opts.Exhaustive = 11, true
	default:
		opts.BrotliQuality = 0
	}
	return opts, nil
}

func runDiff(ctx context.Context, o *diffOptions, g *globalOptions, out, errOut io.Writer) error {
	opts, err := o.deltaOptions()
	if err != nil {
		return err
	}
	signers, err := loadSigners(o.sign)
	if err != nil {
		return err
	}
	opts.Signers = signers
	// The encoders' cap plus a third for everything else.
	debug.SetMemoryLimit(opts.MemoryCap / 3 * 4)
	// Written beside the output and renamed into place only when complete;
	// created before any work, so a missing directory is found at once
	// (and named by the user's path).
	dst, err := atomicfile.Create(o.output)
	if err != nil {
		return err
	}
	defer dst.Abort()
	base, err := layerfs.Open(ctx, o.from, g.refOptions()...)
	if err != nil {
		return err
	}
	defer base.Close()
	target, err := layerfs.Open(ctx, o.to, g.refOptions()...)
	if err != nil {
		return err
	}
	defer target.Close()
	opts.WorkDir = ""
	if g.tmpDir != "" {
		if opts.WorkDir, err = os.MkdirTemp(g.tmpDir, "skiff-diff-"); err != nil {
			return err
		}
		defer os.RemoveAll(opts.WorkDir)
	}
	if isTerminal(errOut) {
		opts.Progress = diffProgress(errOut)
	}
	rep, err := delta.Diff(ctx, base, target, dst, opts)
	if err != nil {
		return err
	}
	if err := dst.Commit(); err != nil {
		return err
	}
	if o.format.json() {
		return printJSON(out, rep)
	}
	printDiffReport(out, o.output, rep)
	if len(signers) > 0 {
		fmt.Fprintf(out, "signed by key %s\n", strings.Join(signerIDs(signers), ", "))
	} else {
		fmt.Fprintln(out, "unsigned: devices refuse it unless they allow unsigned deltas (sign it with --sign or skiff sign)")
	}
	if o.verbose {
		fmt.Fprintln(out, "\nfiles that cost the most:")
		for _, f := range rep.Largest {
			enc := f.Encoder
			if f.Transform != "" {
				enc += " (" + f.Transform + ")"
			}
			fmt.Fprintf(out, "  %10s  %-20s %10s  %s\n", humanBytes(f.Bytes), enc, humanBytes(f.Size), f.Path)
		}
	}
	return nil
}

func printDiffReport(out io.Writer, path string, r *delta.Report) {
	fmt.Fprintf(out, "wrote %s: %s\n", path, humanBytes(r.DeltaBytes))
	fmt.Fprintf(out, "layers: %d, %d reused from the base, %d rebuilt\n", r.Layers, r.LayersReused, r.Layers-r.LayersReused)
	fmt.Fprintf(out, "files in rebuilt layers: %d, %d already on the device (cost 0)\n", r.Files, r.FilesInBase)
	var encs []string
	for e := range r.Ops {
		encs = append(encs, e)
	}
	sort.Strings(encs)
	for _, e := range encs {
		fmt.Fprintf(out, "  %-9s %5d files  %10s -> %s\n", e, r.Ops[e], humanBytes(r.PayloadBytes[e]), humanBytes(r.OpBytes[e]))
	}
	if r.Gunzipped > 0 {
		fmt.Fprintf(out, "  (%d gzip files diffed by their content; the device re-compresses them exactly)\n", r.Gunzipped)
	}
	for _, st := range r.Streams {
		fmt.Fprintf(out, "solid stream: %d files, %s -> %s (%s, %s window)\n", st.Files, humanBytes(st.Raw), humanBytes(st.Bytes), st.Codec, humanBytes(st.Window))
	}
	fmt.Fprintf(out, "skeletons %s, header %s\n", humanBytes(r.SkeletonBytes), humanBytes(r.HeaderBytes))
	switch {
	case r.Reproducible:
		fmt.Fprintln(out, "manifest: the target's manifest digest will be reproduced (gzip recipes found)")
	case r.NotReproducible != "":
		fmt.Fprintf(out, "manifest: not reproduced, %s; apply gives exact uncompressed layers (same image ID)\n", r.NotReproducible)
	}
	if r.ChangedBlobs > 0 {
		fmt.Fprintf(out, "pulling the changed layers: %s; the delta is %.1f%% of that (%.1fx smaller)\n",
			humanBytes(r.ChangedBlobs), 100*float64(r.DeltaBytes)/float64(r.ChangedBlobs), float64(r.ChangedBlobs)/float64(max(r.DeltaBytes, 1)))
	}
}

// diffProgress draws the diff's phases on one terminal line: layers taken
// apart, files encoded, the solid stream compressed.
func diffProgress(w io.Writer) func(phase string, done, total int64) {
	last := ""
	return func(phase string, done, total int64) {
		var line string
		switch phase {
		case delta.PhaseWrite:
			line = fmt.Sprintf("%s (%s)", phase, humanBytes(total))
			if done == total {
				line += " done"
			}
		default:
			line = fmt.Sprintf("%s: %d of %d", phase, done, total)
		}
		if line == last {
			return
		}
		last = line
		fmt.Fprintf(w, "\r\033[K%s", line)
		if phase == delta.PhaseWrite && done == total {
			fmt.Fprintln(w)
		}
	}
}
