package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/internal/counting"
	"github.com/skiff-dev/skiff/layerfs"
)

type inspectOptions struct {
	format formatOptions
	verify bool // reassemble every layer and check its diff_id
	trust  trustOptions
}

func (o *inspectOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	o.format.AddFlags(cmd, legacyOutput)
	fs.BoolVar(&o.verify, "verify", false, "also rebuild every layer from its skeleton and payloads and check it against its diff_id")
	o.trust.AddFlags(cmd, false)
}

func newInspectCommand(g *globalOptions) *cobra.Command {
	o := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect REF|DELTA",
		Short: "Show an image's layers as skiff sees them, or what a delta needs and makes",
		Long: `Given a delta file: what it needs (the base image), what it produces (the
target image), whether the target's manifest digest is reproduced, and its
bytes per layer and per encoder, and the key IDs of its signatures; with
--trust (or $SKIFF_TRUSTED_KEYS), the signature is verified and a delta not
signed by a trusted key is an error.

Given an image: its layers: diff_id, blob digest and size, tar size, entries,
files with content, and the size of each layer's skeleton (every byte that is
not file content, zstd-compressed) in all and per entry.

With --verify, every layer is taken apart into a temporary content store and
rebuilt from its skeleton, and the rebuilt tar's sha256 must equal the
layer's diff_id.`,
		Example: `  skiff inspect update.skiff
  skiff inspect docker-archive:old.tar
  skiff inspect --verify oci:./layout:app:2 --format json
  skiff inspect --insecure docker://127.0.0.1:5000/app:2`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if isDeltaFile(args[0]) {
				return runInspectDelta(args[0], o.format.format, o.trust.files(), cmd.OutOrStdout())
			}
			return runInspect(cmd.Context(), o, g, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// imageReport is inspect's JSON output.
type imageReport struct {
	Reference      string        `json:"reference"`
	ManifestDigest string        `json:"manifest_digest"`
	ConfigDigest   string        `json:"config_digest"`
	Layers         []layerReport `json:"layers"`
	Verified       bool          `json:"verified"`
}

type layerReport struct {
	BlobDigest string `json:"blob_digest"`
	BlobSize   int64  `json:"blob_size"`
	MediaType  string `json:"media_type"`
	layerfs.Stats
	SkeletonZstd     int64   `json:"skeleton_zstd_bytes"`
	SkeletonPerEntry float64 `json:"skeleton_zstd_bytes_per_entry"`
	Verified         bool    `json:"verified,omitempty"`
	Seconds          float64 `json:"seconds"`
}

func runInspect(ctx context.Context, o *inspectOptions, g *globalOptions, ref string, out, errOut io.Writer) error {
	img, err := layerfs.Open(ctx, ref, g.refOptions()...)
	if err != nil {
		return err
	}
	defer img.Close()
	rep := imageReport{Reference: ref, Verified: o.verify}
	md, err := img.Digest()
	if err != nil {
		return fmt.Errorf("%s: manifest digest: %w", ref, err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		return fmt.Errorf("%s: config digest: %w", ref, err)
	}
	rep.ManifestDigest, rep.ConfigDigest = md.String(), cd.String()
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("%s: layers: %w", ref, err)
	}
	var store *layerfs.Store
	if o.verify {
		dir, err := os.MkdirTemp(g.tmpDir, "skiff-inspect-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if store, err = layerfs.OpenStore(dir); err != nil {
			return err
		}
	}
	for i, l := range layers {
		lr, err := inspectLayer(ctx, l, store)
		if err != nil {
			return fmt.Errorf("%s: layer %d: %w", ref, i+1, err)
		}
		if !o.format.json() && o.verify {
			fmt.Fprintf(errOut, "layer %d/%d %s: %d entries, rebuilt %s byte for byte in %s\n",
				i+1, len(layers), short(lr.DiffID.String()), lr.Entries, humanBytes(lr.TarSize), humanDuration(time.Duration(lr.Seconds*float64(time.Second))))
		}
		rep.Layers = append(rep.Layers, lr)
	}
	if o.format.json() {
		return printJSON(out, rep)
	}
	printInspectTable(out, rep)
	return nil
}

// inspectLayer disassembles one layer; with a store it also rebuilds it and
// checks the result against the diff_id.
func inspectLayer(ctx context.Context, l v1.Layer, store *layerfs.Store) (layerReport, error) {
	start := time.Now()
	var lr layerReport
	d, err := l.Digest()
	if err != nil {
		return lr, err
	}
	size, err := l.Size()
	if err != nil {
		return lr, err
	}
	mt, err := l.MediaType()
	if err != nil {
		return lr, err
	}
	lr.BlobDigest, lr.BlobSize, lr.MediaType = d.String(), size, string(mt)

	var ing layerfs.Ingester = layerfs.Discard{}
	var skelFile *os.File
	counter := &counting.Writer{}
	var sink io.Writer = counter
	if store != nil {
		ing = store
		if skelFile, err = os.CreateTemp(store.Root(), "skeleton-"); err != nil {
			return lr, err
		}
		defer os.Remove(skelFile.Name())
		defer skelFile.Close()
		sink = io.MultiWriter(counter, skelFile)
	}
	zw, err := layerfs.CompressSkeleton(sink)
	if err != nil {
		return lr, err
	}
	st, err := layerfs.DisassembleLayer(ctx, l, ing, zw)
	if err != nil {
		return lr, err
	}
	if err := zw.Close(); err != nil {
		return lr, err
	}
	lr.Stats = st
	lr.SkeletonZstd = counter.N
	if st.Entries > 0 {
		lr.SkeletonPerEntry = float64(counter.N) / float64(st.Entries)
	}
	if store != nil {
		if _, err := skelFile.Seek(0, io.SeekStart); err != nil {
			return lr, err
		}
		zr, err := layerfs.DecompressSkeleton(skelFile)
		if err != nil {
			return lr, err
		}
		defer zr.Close()
		got, err := layerfs.Assemble(ctx, zr, store, io.Discard)
		if err != nil {
			return lr, fmt.Errorf("rebuilding: %w", err)
		}
		if got != st.DiffID {
			return lr, fmt.Errorf("rebuilt %s, diff_id is %s: %w", got, st.DiffID, layerfs.ErrDigestMismatch)
		}
		lr.Verified = true
	}
	lr.Seconds = time.Since(start).Seconds()
	return lr, nil
}

func printInspectTable(out io.Writer, rep imageReport) {
	fmt.Fprintf(out, "image     %s\nmanifest  %s\nconfig    %s\n\n", rep.Reference, rep.ManifestDigest, rep.ConfigDigest)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tDIFF_ID\tBLOB\tBLOB SIZE\tTAR SIZE\tENTRIES\tFILES\tSKELETON\tB/ENTRY\tNOTES\t")
	var blob, tarSize, skel int64
	var entries, files int
	for i, l := range rep.Layers {
		notes := ""
		if l.Sparse > 0 {
			notes += fmt.Sprintf("%d sparse ", l.Sparse)
		}
		if l.DuplicatePaths > 0 {
			notes += fmt.Sprintf("%d dup paths ", l.DuplicatePaths)
		}
		if l.Verified {
			notes += "rebuilt exact"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%.1f\t%s\t\n", i+1, short(l.DiffID.String()), short(l.BlobDigest),
			humanBytes(l.BlobSize), humanBytes(l.TarSize), l.Entries, l.Files, humanBytes(l.SkeletonZstd), l.SkeletonPerEntry, notes)
		blob += l.BlobSize
		tarSize += l.TarSize
		skel += l.SkeletonZstd
		entries += l.Entries
		files += l.Files
	}
	per := 0.0
	if entries > 0 {
		per = float64(skel) / float64(entries)
	}
	fmt.Fprintf(tw, "total\t\t\t%s\t%s\t%d\t%d\t%s\t%.1f\t\t\n", humanBytes(blob), humanBytes(tarSize), entries, files, humanBytes(skel), per)
	tw.Flush()
}

// short shortens a digest to algorithm:12 hex digits.
func short(d string) string {
	if len(d) > 7+12 && d[:7] == "sha256:" {
		return d[7 : 7+12]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.1f KB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

// printJSON writes v as indented JSON, the form of every --format json.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// humanDuration prints d for people: milliseconds under a second (a fast
// step is "40ms", not "0.0s"), else seconds with one decimal.
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Millisecond:
		return "<1ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1fs", d.Seconds())
}
