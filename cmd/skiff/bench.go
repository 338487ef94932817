package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/bench"
	"github.com/skiff-dev/skiff/bench/corpus"
	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/example"
)

// init lets `skiff bench` use this executable as the small wrapper that
// measures each tool's peak memory (see bench.MaybeSpawn); in that role the
// process runs the tool and exits here, before any command is parsed.
func init() { bench.MaybeSpawn() }

type benchOptions struct {
	corpus    bool
	pairs     []string
	pairsFile string
	methods   []string
	format    formatOptions
	output    string
	results   string
	chart     string
	workdir   string
}

func (o *benchOptions) AddFlags(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.BoolVar(&o.corpus, "corpus", false, "measure the realistic corpus pairs (toolchain, os, app, npm, apt, python, goarm64, armapp, armv7app, goamd64, debarm64, debarm64up) from $SKIFF_CORPUS/images (default ~/.cache/skiff/corpus; build with `make corpus`)")
	fs.StringArrayVar(&o.pairs, "pair", nil, "a pair of image references FROM=TO or NAME=FROM=TO (repeatable)")
	fs.StringVar(&o.pairsFile, "pairs", "", "file of pairs, one `NAME FROM TO` per line (# comments)")
	fs.StringSliceVar(&o.methods, "methods", nil, "methods to run, comma-separated (default all: "+strings.Join(bench.DefaultMethods(bench.Config{}).Names(), ", ")+")")
	fs.StringVar(&o.chart, "chart", "", "also write a chart of the bytes on the wire (SVG) to this file")
	fs.StringVar(&o.workdir, "workdir", "", "directory for the benchmark's temporary files (default --tmpdir, else $TMPDIR)")
	fs.StringVarP(&o.output, "output", "o", "", "write the report to this file (default: standard output)")
	fs.StringVar(&o.results, "results", "", "append each result, as it finishes, to this JSON-lines file (default with -o FILE: FILE.jsonl)")
	o.format.AddFlags(cmd, legacyJSON)
}

func newBenchCommand(g *globalOptions) *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench [--corpus] [--pair FROM=TO]... [--pairs FILE]",
		Short: "Measure skiff against the usual ways of moving an update",
		Long: `Measure, for each pair of images, the bytes a device downloads, the time and
peak memory of making and of applying the update, and whether the rebuilt
layers are exact, for skiff (--level 4 and 5) and the alternatives: docker
pull (gzip as stored, zstd -19), zstd --patch-from, bsdiff, xdelta3, rsync-style
rdiff, file-level dedupe (zstd:chunked) and containers/tar-diff.

Without --corpus, --pair or --pairs it measures the built-in example pair
(about a minute). External tools run as child processes (skiff too: this
executable's diff and apply); a tool that is missing is reported as "not
installed" (` + "`make bench-deps`" + ` installs them). tar-diff and tar-patch are
looked for in PATH, ./bin and next to this executable.

Progress goes to standard error, the table (or --format json) to standard
output or -o FILE. Each result is also appended, as soon as it is measured,
to a JSON-lines file (--results; FILE.jsonl with -o FILE): one object
{"pair": {...}, "result": {...}} per line, kept if skiff is killed. An
interrupted run (^C, SIGTERM) writes the report of the results that
finished, marked interrupted, and exits 130 or 143.
Exit codes: 0 success, 1 failure (including a method that failed or rebuilt
a layer that differs from the target), 2 usage error.`,
		Example: `  skiff bench
  skiff bench --corpus --chart docs/bench.svg --format json -o bench.json
  skiff bench --pair app=docker-archive:old.tar=docker-archive:new.tar --methods skiff-4,pull-gzip,bsdiff`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBench(cmd.Context(), o, g, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runBench(ctx context.Context, o *benchOptions, g *globalOptions, out, errOut io.Writer) error {
	skiffExe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the skiff executable: %w", err)
	}
	var skiffArgs []string
	if g.insecure {
		skiffArgs = append(skiffArgs, "--insecure")
	}
	if g.platform != "" {
		skiffArgs = append(skiffArgs, "--platform", g.platform)
	}
	tools := &bench.Tools{Dirs: []string{"bin", filepath.Dir(skiffExe)}, Timer: bench.FindTimer(), Spawner: skiffExe}
	reg := bench.DefaultMethods(bench.Config{
		Tools:     tools,
		Skiff:     skiffExe,
		SkiffArgs: skiffArgs,
	})
	methods, err := reg.Select(o.methods)
	if err != nil {
		return usageError{"--methods: " + err.Error()}
	}
	workdir := o.workdir
	if workdir == "" {
		workdir = g.tmpDir
	}
	runOpts := []bench.Option{bench.WithRefOptions(g.refOptions()...)}
	if workdir != "" {
		runOpts = append(runOpts, bench.WithWorkDir(workdir))
	}

	var pairs []bench.Pair
	if o.corpus {
		ps, err := bench.Corpus(corpus.DefaultRoot())
		if err != nil {
			return err
		}
		pairs = append(pairs, ps...)
	}
	for i, spec := range o.pairs {
		p, err := bench.ParsePair(spec, i+1)
		if err != nil {
			return usageError{"--pair: " + err.Error()}
		}
		pairs = append(pairs, p)
	}
	if o.pairsFile != "" {
		ps, err := bench.ReadPairsFile(o.pairsFile)
		if err != nil {
			return err
		}
		pairs = append(pairs, ps...)
	}
	if len(pairs) == 0 {
		dir, err := os.MkdirTemp(workdir, "skiff-bench-example-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		fmt.Fprintf(errOut, "bench: writing the built-in example pair to %s\n", dir)
		p, err := example.Write(ctx, dir)
		if err != nil {
			return err
		}
		pairs = []bench.Pair{{Name: "example", From: "docker-archive:" + p.OldArchive, To: "docker-archive:" + p.NewArchive}}
	}

	// The report's file is created before any work, so a missing directory
	// is found at once, not after an hour of measuring.
	var dst *atomicfile.File
	if o.output != "" {
		if dst, err = atomicfile.Create(o.output); err != nil {
			return err
		}
		defer dst.Abort()
	}
	journal := o.results
	if journal == "" && o.output != "" {
		journal = o.output + ".jsonl"
	}
	if journal != "" {
		j, err := openJournal(journal)
		if err != nil {
			return fmt.Errorf("--results: %w", err)
		}
		defer j.Close()
		runOpts = append(runOpts, bench.WithResultFunc(j.add))
	}

	rep, runErr := bench.Run(ctx, pairs, methods, errOut, runOpts...)
	if rep == nil {
		return runErr
	}
	// Interrupted: the finished results are still reported, then the
	// context's error ends skiff with 128+signal.
	rep.Memory = tools.MemoryProbe()
	if o.chart != "" {
		if err := atomicfile.Write(o.chart, rep.WriteSVG); err != nil {
			return fmt.Errorf("--chart: %w", err)
		}
		fmt.Fprintf(errOut, "bench: wrote %s\n", o.chart)
	}
	write := rep.WriteMarkdown
	if o.format.json() {
		write = rep.WriteJSON
	}
	if dst != nil {
		if err := write(dst); err != nil {
			return err
		}
		if err := dst.Commit(); err != nil {
			return err
		}
		fmt.Fprintf(errOut, "bench: wrote %s\n", o.output)
	} else if err := write(out); err != nil {
		return err
	}
	if runErr != nil {
		return runErr
	}
	var bad []string
	for _, p := range rep.Pairs {
		for _, r := range p.Results {
			if r.Error != "" || r.Verified == bench.Mismatch {
				bad = append(bad, p.Name+"/"+r.Method)
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%d method runs failed or rebuilt a layer that differs from the target: %s", len(bad), strings.Join(bad, ", "))
	}
	return nil
}

// journal appends each finished result to a JSON-lines file, synced line
// by line: what a killed run leaves is every result it finished.
type journal struct{ f *os.File }

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &journal{f: f}, nil
}

func (j *journal) add(p bench.Pair, r bench.Result) error {
	line, err := json.Marshal(struct {
		Pair   bench.Pair   `json:"pair"`
		Result bench.Result `json:"result"`
	}{p, r})
	if err != nil {
		return err
	}
	if _, err := j.f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("--results %s: %w", j.f.Name(), err)
	}
	return j.f.Sync()
}

func (j *journal) Close() error { return j.f.Close() }
