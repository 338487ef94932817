// Command mkimages turns the corpus's layer tars into images:
//
//	go run ./bench/corpus/cmd/mkimages [-root DIR] [-pairs os,app,npm,...] [-force]
//
// It writes $root/images/<pair>/... (see package corpus) and prints what it
// did. Exit status 1 on error, 2 on bad flags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/skiff-dev/skiff/bench/corpus"
)

func main() {
	root := flag.String("root", corpus.DefaultRoot(), "corpus root holding layers/<pair>/{old,new}.tar")
	pairs := flag.String("pairs", strings.Join(corpus.Pairs, ","), "comma-separated pairs to build")
	force := flag.Bool("force", false, "rebuild even when outputs are newer than inputs")
	flag.Parse()
	if flag.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "mkimages: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var list []string
	for _, p := range strings.Split(*pairs, ",") {
		if p = strings.TrimSpace(p); p != "" {
			list = append(list, p)
		}
	}
	rep, err := corpus.BuildImages(ctx, *root, list, corpus.WithForce(*force))
	for _, p := range rep.Pairs {
		fmt.Printf("%-10s %-8s %8.1fs %s\n", p.Pair, p.Status, p.Duration.Seconds(), p.Reason)
		for _, o := range p.Outputs {
			fmt.Printf("    %10.1f MB  %s\n", float64(o.Size)/1e6, o.Path)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimages:", err)
		os.Exit(1)
	}
}
