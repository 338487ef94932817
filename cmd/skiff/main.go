// Command skiff builds, ships and applies exact file-level deltas between
// container images.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	// SKIFF_CPUPROFILE=FILE writes a CPU profile of the run, for developers.
	if path := os.Getenv("SKIFF_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	// SKIFF_MEMPROFILE=FILE writes an allocation profile, for developers.
	if path := os.Getenv("SKIFF_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		pprof.StopCPUProfile()
		os.Exit(exitCode(err))
	}
}
