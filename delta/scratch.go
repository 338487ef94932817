package delta

import (
	"fmt"
)

// checkScratch refuses to start when the file system of the work
// directory has less free space than the delta declares it needs
// (limits.scratch, version 5), naming the directory, the need and what is
// free, rather than failing with ENOSPC half way. Where free space cannot
// be known it lets the apply go on (a full disk still fails cleanly).
func checkScratch(dir string, need int64) error {
	if need <= 0 {
		return nil
	}
	free, ok := freeBytes(dir)
	if !ok || free >= need {
		return nil
	}
	return fmt.Errorf("%w: applying needs about %s of scratch space in %s, %s is free (set the work directory elsewhere: --tmpdir, the agent's work_dir)",
		ErrLimit, humanSize(need), dir, humanSize(free))
}

// humanSize formats n bytes for messages.
func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
