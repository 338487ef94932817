package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Tools finds the executables methods run.
type Tools struct {
	// Dirs are searched, in order, after PATH (e.g. ./bin and the
	// directory of the skiff executable).
	Dirs []string
	// Override maps a tool name to the executable to run for it; an empty
	// value marks the tool as not installed. Tests use it.
	Override map[string]string
	// Timer is GNU time (see FindTimer): when set, every tool runs under
	// it and its peak memory is the tool's own.
	Timer string
	// Spawner is a program that calls MaybeSpawn first thing (skiff, a
	// test binary): without Timer, on Linux, every tool runs under it so
	// that its peak memory is not the harness's (see MaybeSpawn). Neither
	// set: tools run directly and their peak memory may include the
	// harness's.
	Spawner string
}

// Find returns the path of a tool, or an error wrapping ErrNotInstalled.
func (t *Tools) Find(name string) (string, error) {
	if p, ok := t.Override[name]; ok {
		if p == "" {
			return "", fmt.Errorf("%s: %w", name, ErrNotInstalled)
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range t.Dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			if abs, err := filepath.Abs(p); err == nil {
				return abs, nil
			}
			return p, nil
		}
	}
	return "", fmt.Errorf("%s (looked in PATH and %s): %w", name, strings.Join(t.Dirs, ", "), ErrNotInstalled)
}

// Usage is what the kernel reports about a finished child process.
type Usage struct {
	Wall time.Duration
	// MaxRSS is the peak resident set size in bytes (0 where the OS does
	// not report it).
	MaxRSS int64
}

// maxStderr bounds how much of a failing tool's stderr an error quotes.
const maxStderr = 2 << 10

// Run runs an executable to completion and returns its wall time and peak
// memory. stdout, if not nil, receives its standard output. A non-zero exit
// is an error naming the command and quoting the end of its standard
// error. If ctx is cancelled the whole process group is killed.
func (t *Tools) Run(ctx context.Context, stdout io.Writer, exe string, args ...string) (Usage, error) {
	var (
		cmd    *exec.Cmd
		report func() (Usage, error) // the probe's numbers, after Wait
	)
	switch {
	case t.Timer != "":
		f, err := os.CreateTemp("", "skiff-bench-time-")
		if err != nil {
			return Usage{}, err
		}
		f.Close()
		defer os.Remove(f.Name())
		cmd = exec.CommandContext(ctx, t.Timer, append([]string{"-f", "%M", "-o", f.Name(), exe}, args...)...)
		report = func() (Usage, error) { return parseTimeReport(f.Name()) }
	case t.Spawner != "" && spawnSupported:
		r, w, err := os.Pipe()
		if err != nil {
			return Usage{}, err
		}
		defer r.Close()
		defer w.Close()
		cmd = exec.CommandContext(ctx, t.Spawner, append([]string{exe}, args...)...)
		cmd.Env = append(os.Environ(), spawnEnv+"=1")
		cmd.ExtraFiles = []*os.File{w}
		report = func() (Usage, error) {
			b, err := io.ReadAll(io.LimitReader(r, 256))
			if err != nil || len(b) == 0 {
				return Usage{}, fmt.Errorf("%s did not act as the bench wrapper (does it call bench.MaybeSpawn?)", t.Spawner)
			}
			return parseSpawnReport(b)
		}
	default:
		cmd = exec.CommandContext(ctx, exe, args...)
	}
	killGroupOnCancel(cmd)
	var stderr tailBuffer
	cmd.Stdout = stdout
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		for _, f := range cmd.ExtraFiles {
			f.Close() // the child holds it now
		}
		err = cmd.Wait()
	}
	u := Usage{Wall: time.Since(start)}
	if cmd.ProcessState != nil {
		u.MaxRSS = maxRSS(cmd.ProcessState)
		if report != nil {
			ru, rerr := report()
			switch {
			case rerr == nil:
				u.MaxRSS = ru.MaxRSS
			case err == nil:
				err = rerr
			}
		}
	}
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg != "" {
			msg = ": " + msg
		}
		return u, fmt.Errorf("%s %s: %w%s", filepath.Base(exe), strings.Join(args, " "), err, msg)
	}
	return u, nil
}

// parseTimeReport reads the -o file of GNU time -f %M: the peak RSS in KiB
// on its last line (after "Command exited with non-zero status N" when the
// command failed).
func parseTimeReport(p string) (Usage, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return Usage{}, err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	kib, err := strconv.ParseInt(strings.TrimSpace(lines[len(lines)-1]), 10, 64)
	if err != nil {
		return Usage{}, fmt.Errorf("GNU time reported %q", b)
	}
	return Usage{MaxRSS: kib << 10}, nil
}

// FindTimer returns the path of GNU time (/usr/bin/time, Debian package
// "time"), or "" if it is not installed. It reports a child's peak RSS from
// wait4 with a footprint of about 1 MiB of its own.
func FindTimer() string {
	p, err := exec.LookPath("time")
	if err != nil {
		return ""
	}
	out, err := exec.Command(p, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "GNU") {
		return ""
	}
	return p
}

// MemoryProbe describes how Run measures peak memory, for reports.
func (t *Tools) MemoryProbe() string {
	switch {
	case t.Timer != "":
		return "peak RSS of each child process from wait4 (ru_maxrss), through GNU time"
	case t.Spawner != "" && spawnSupported:
		return "peak RSS of each child process from wait4 (ru_maxrss), started by a small wrapper process whose own footprint (about 15 MiB) is a floor; install GNU time (`make bench-deps`) for exact small numbers"
	case spawnSupported:
		return "peak RSS of each child process from wait4 (ru_maxrss); on Linux it includes the harness's own peak"
	}
	return "peak RSS of each child process from wait4 (ru_maxrss)"
}

// tailBuffer keeps the last maxStderr bytes written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > maxStderr {
		t.b = t.b[len(t.b)-maxStderr:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(bytes.ToValidUTF8(t.b, []byte("?"))) }

// steps accumulates the measurements of the child processes of one method:
// times add up, peak memory is the largest.
type steps struct {
	res *Result
	t   *Tools
}

func (s steps) diff(ctx context.Context, exe string, args ...string) error {
	u, err := s.t.Run(ctx, nil, exe, args...)
	s.res.DiffTime += u.Wall
	s.res.DiffRSS = max(s.res.DiffRSS, u.MaxRSS)
	return err
}

func (s steps) apply(ctx context.Context, exe string, args ...string) error {
	u, err := s.t.Run(ctx, nil, exe, args...)
	s.res.ApplyTime += u.Wall
	s.res.ApplyRSS = max(s.res.ApplyRSS, u.MaxRSS)
	return err
}

// fileSize returns the size of a file.
func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}
