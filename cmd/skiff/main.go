// Command skiff builds, ships and applies exact file-level deltas between
// container images.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
)

func main() {
	// SKIFF_CPUPROFILE=FILE writes a CPU profile of the run, for developers.
	if path := os.Getenv("SKIFF_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	ctx, in := notifyInterrupts(context.Background(), os.Stderr)
	err := newRootCommand().ExecuteContext(ctx)
	sig := in.stop()
	// SKIFF_MEMPROFILE=FILE writes an allocation profile, for developers.
	if path := os.Getenv("SKIFF_MEMPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil {
		pprof.StopCPUProfile()
		if sig != nil {
			// The command was cancelled and has cleaned up; its error is
			// only "context canceled" somewhere deep.
			fmt.Fprintln(os.Stderr, "skiff: interrupted")
			os.Exit(signalExitCode(sig))
		}
		fmt.Fprintln(os.Stderr, "skiff:", err)
		os.Exit(exitCode(err))
	}
}
