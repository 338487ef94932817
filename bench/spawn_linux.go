package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawnEnv marks a process started as the measuring wrapper.
const spawnEnv = "SKIFF_BENCH_SPAWN"

// spawnSupported: Linux needs the wrapper (see MaybeSpawn).
const spawnSupported = true

// MaybeSpawn turns the process into the measuring wrapper and exits when
// the environment asks for it; otherwise it returns at once. Programs that
// serve as Tools.Spawner (skiff, test binaries) call it first thing.
//
// Why a wrapper: Linux records the peak RSS of the memory a process had
// before exec into its ru_maxrss, and a child started from the harness
// shares (vfork) the harness's memory until it execs, so its ru_maxrss
// would never be below the harness's own peak. The wrapper is a small
// process; the tool it starts inherits only the wrapper's peak, a few MiB.
//
// Usage: SKIFF_BENCH_SPAWN=1 WRAPPER EXE ARGS..., with file descriptor 3
// open for writing: the wrapper runs EXE (without SKIFF_BENCH_SPAWN in its
// environment, killed if the wrapper dies), writes "MAXRSS_BYTES WALL_NS"
// to fd 3 and exits with EXE's exit code.
func MaybeSpawn() {
	if os.Getenv(spawnEnv) != "1" {
		return
	}
	os.Exit(spawnMain(os.Args[1:]))
}

func spawnMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "bench wrapper: no command")
		return 127
	}
	syscall.CloseOnExec(3) // the tool must not hold the report pipe
	report := os.NewFile(3, "report")
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, spawnEnv+"=") {
			env = append(env, e)
		}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "bench wrapper:", err)
		return 127
	}
	fmt.Fprintf(report, "%d %d\n", maxRSS(cmd.ProcessState), wall.Nanoseconds())
	report.Close()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 0
}

// parseSpawnReport reads what the wrapper wrote to fd 3.
func parseSpawnReport(b []byte) (Usage, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return Usage{}, fmt.Errorf("bench wrapper reported %q", b)
	}
	rss, err1 := strconv.ParseInt(f[0], 10, 64)
	ns, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return Usage{}, fmt.Errorf("bench wrapper reported %q: %w", b, err)
	}
	return Usage{Wall: time.Duration(ns), MaxRSS: rss}, nil
}
