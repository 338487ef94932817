package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/transport"
)

type pullOptions struct {
	output    string
	cache     string
	limitRate string
	digest    string
	size      int64
	headers   []string
	retries   int
	parallel  int
	format    formatOptions
}

func (o *pullOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVarP(&o.output, "output", "o", "", "delta file to write")
	fs.StringVar(&o.cache, "cache", "", "directory for blobs of an interrupted registry pull (default: the user cache directory, skiff/blobs)")
	fs.StringVar(&o.limitRate, "limit-rate", "", "cap the download rate, bytes/s with an optional K, M or G suffix (1024-based), e.g. 500K")
	fs.StringVar(&o.digest, "digest", "", "expected sha256 of the file (http/https)")
	fs.Int64Var(&o.size, "size", -1, "expected size of the file in bytes (http/https)")
	fs.StringArrayVarP(&o.headers, "header", "H", nil, `request header "Name: value" (http/https), e.g. "Authorization: Bearer TOKEN"`)
	fs.IntVar(&o.retries, "retries", 20, "tries in a row that may fail without receiving anything new")
	fs.IntVar(&o.parallel, "parallel", 4, "registry blobs fetched at once (docker://); --limit-rate caps them together")
	o.format.AddFlags(cmd, legacyNone)
	_ = cmd.MarkFlagRequired("output")
}

// pullReport is pull's --format json answer.
type pullReport struct {
	Output  string `json:"output"`
	Size    int64  `json:"size"`
	Digest  string `json:"digest,omitempty"` // the --digest checked (http/https)
	Blobs   int    `json:"blobs,omitempty"`  // registry artifacts
	Cached  int    `json:"cached_blobs,omitempty"`
	Fetched int64  `json:"fetched_bytes"`
	Resumed int64  `json:"resumed_bytes"`
	Retries int    `json:"retries"`
}

func newPullCommand(g *globalOptions) *cobra.Command {
	o := &pullOptions{}
	cmd := &cobra.Command{
		Use:   "pull docker://REG/REPO:TAG|https://HOST/PATH -o FILE",
		Short: "Fetch a delta from a registry or an HTTP(S) server, resumably",
		Long: `Fetch a delta, surviving a link that drops: from a registry artifact made by
"skiff push" (blob by blob, each verified, kept in --cache so an interrupted
pull continues where it stopped), or from an http(s) URL (resumed with Range
requests from FILE.part). Either way FILE appears only when complete and
verified. Retries back off exponentially with jitter.`,
		Example: `  skiff pull docker://registry.example.com/app:delta-1-2 -o update.skiff
  skiff pull https://updates.example.com/v1/deltas/sha256:4f... -o update.skiff --digest sha256:4f... --limit-rate 200K`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPull(cmd.Context(), o, g, args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runPull(ctx context.Context, o *pullOptions, g *globalOptions, src string, out, errOut io.Writer) error {
	rate, err := parseRate(o.limitRate)
	if err != nil {
		return err
	}
	if o.retries < 1 {
		return usageError{fmt.Sprintf("--retries %d: must be at least 1", o.retries)}
	}
	fo := transport.FetchOptions{LimitRate: rate, MaxRetries: o.retries}
	var bar *progressbar.ProgressBar
	progress := func(what string) func(done, total int64) {
		if !isTerminal(errOut) {
			return nil
		}
		return func(done, total int64) {
			if bar == nil {
				bar = newBar(errOut, what, total)
			}
			if total >= 0 {
				bar.ChangeMax64(total)
			}
			bar.Set64(done)
		}
	}
	defer func() {
		if bar != nil {
			bar.Exit()
		}
	}()

	switch {
	case strings.HasPrefix(src, "docker://"):
		if o.digest != "" || o.size >= 0 || len(o.headers) > 0 {
			return usageError{"--digest, --size and --header are for http(s) URLs; pin a registry artifact with docker://REG/REPO@sha256:..."}
		}
		ref, err := g.registryRef("source", src)
		if err != nil {
			return err
		}
		if o.parallel < 1 {
			return usageError{fmt.Sprintf("--parallel %d: want 1 or more", o.parallel)}
		}
		cache := o.cache
		if cache == "" {
			dir, err := os.UserCacheDir()
			if err != nil {
				dir = os.TempDir()
			}
			cache = filepath.Join(dir, "skiff", "blobs")
		}
		st, err := transport.PullWithOptions(ctx, ref, o.output, cache, transport.PullOptions{
			Remote:   []remote.Option{remote.WithUserAgent("skiff")},
			Fetch:    fo,
			Progress: progress("pulling"),
			Parallel: o.parallel,
		})
		if bar != nil {
			bar.Finish()
			bar = nil
		}
		if err != nil {
			return err
		}
		if o.format.json() {
			return printJSON(out, pullReport{Output: o.output, Size: st.Size, Blobs: st.Blobs, Cached: st.Cached, Fetched: st.Bytes, Resumed: st.Resumed, Retries: st.Retries})
		}
		fmt.Fprintf(out, "wrote %s: %s in %d blobs; %d were in the cache, %s fetched, %s resumed, %d retries\n",
			o.output, humanBytes(st.Size), st.Blobs, st.Cached, humanBytes(st.Bytes), humanBytes(st.Resumed), st.Retries)
		return nil

	case strings.HasPrefix(src, "http://"), strings.HasPrefix(src, "https://"):
		if o.cache != "" {
			return usageError{"--cache is for docker:// sources; an http(s) download resumes from FILE.part"}
		}
		if o.digest != "" {
			d, err := digest.Parse(o.digest)
			if err != nil {
				return usageError{fmt.Sprintf("--digest %q: %v", o.digest, err)}
			}
			fo.Digest = d
		}
		fo.Size = o.size
		fo.Header = http.Header{}
		for _, h := range o.headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return usageError{fmt.Sprintf("--header %q: want \"Name: value\"", h)}
			}
			fo.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		fo.Progress = progress("downloading")
		st, err := transport.Fetch(ctx, src, o.output, fo)
		if bar != nil {
			bar.Finish()
			bar = nil
		}
		if err != nil {
			return err
		}
		fi, err := os.Stat(o.output)
		if err != nil {
			return err
		}
		if o.format.json() {
			return printJSON(out, pullReport{Output: o.output, Size: fi.Size(), Digest: fo.Digest.String(), Fetched: st.Bytes, Resumed: st.Resumed, Retries: st.Retries})
		}
		check := "not verified (no --digest)"
		if fo.Digest != "" {
			check = "verified " + fo.Digest.String()
		}
		fmt.Fprintf(out, "wrote %s: %s, %s; %s fetched, %s resumed, %d retries\n",
			o.output, humanBytes(fi.Size()), check, humanBytes(st.Bytes), humanBytes(st.Resumed), st.Retries)
		return nil
	}
	return usageError{fmt.Sprintf("source %q: want docker://REG/REPO:TAG or an http(s) URL", src)}
}

// parseRate reads a rate such as 500K, 1M, 1.5M or 20000 (bytes/s); "" is
// unlimited.
func parseRate(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num, mult := strings.TrimSuffix(strings.ToUpper(s), "B"), 1.0
	switch {
	case strings.HasSuffix(num, "K"):
		num, mult = strings.TrimSuffix(num, "K"), 1<<10
	case strings.HasSuffix(num, "M"):
		num, mult = strings.TrimSuffix(num, "M"), 1<<20
	case strings.HasSuffix(num, "G"):
		num, mult = strings.TrimSuffix(num, "G"), 1<<30
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult < 1 {
		return 0, usageError{fmt.Sprintf("--limit-rate %q: want bytes/s such as 500K, 1M or 20000", s)}
	}
	return int64(f * mult), nil
}
