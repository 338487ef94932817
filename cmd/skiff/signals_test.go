package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-dev/skiff/internal/imagetest"
	"github.com/skiff-dev/skiff/layerfs"
)

// TestSignalCleansUp: a signal that ends skiff during a diff cancels it:
// exit 128+signal with "interrupted", no temporary output next to -o and
// no skiff-diff-* work directory in $TMPDIR. (SIGHUP used to end skiff at
// once, exit 129, leaving both behind.)
func TestSignalCleansUp(t *testing.T) {
	if testing.Short() {
		t.Skip("diffs a 6 MiB file")
	}
	dir := t.TempDir()
	// A file bsdiff takes a while over (its suffix array), so the signal
	// comes mid-diff.
	lib := imagetest.Noise(16, 1, 6<<20)
	lib2 := bytes.Clone(lib)
	for i := 0; i < len(lib2); i += 64 << 10 {
		lib2[i] ^= 0xff
	}
	from, to := "docker-archive:"+filepath.Join(dir, "old.tar"), "docker-archive:"+filepath.Join(dir, "new.tar")
	for ref, data := range map[string][]byte{from: lib, to: lib2} {
		img := imagetest.Image(t, imagetest.LayerTar(t, imagetest.File{Name: "usr/lib/libbig.so", Data: string(data)}))
		if err := layerfs.Write(context.Background(), ref, img); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGHUP, 129}, {syscall.SIGINT, 130}, {syscall.SIGTERM, 143}} {
		t.Run(tc.sig.String(), func(t *testing.T) {
			outDir, tmp := t.TempDir(), t.TempDir()
			cmd := exec.Command(os.Args[0], "diff", "--from", from, "--to", to, "-o", filepath.Join(outDir, "update.skiff"), "--jobs", "1")
			cmd.Env = append(os.Environ(), mainEnv+"=1", "TMPDIR="+tmp)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait until both temporary places exist: the diff is under way.
			deadline := time.Now().Add(30 * time.Second)
			for {
				outTmp, _ := filepath.Glob(filepath.Join(outDir, ".update.skiff.tmp-*"))
				work, _ := filepath.Glob(filepath.Join(tmp, "skiff-diff-*"))
				if len(outTmp) > 0 && len(work) > 0 {
					break
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("the diff never started")
				}
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // into the encoders
			cmd.Process.Signal(tc.sig)
			err := cmd.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("exit: %v, want code %d; stderr:\n%s", err, tc.code, stderr.String())
			}
			if got := strings.TrimSpace(stderr.String()); got != "skiff: interrupted" {
				t.Errorf("stderr %q, want \"skiff: interrupted\"", got)
			}
			for _, d := range []string{outDir, tmp} {
				if ents, _ := os.ReadDir(d); len(ents) != 0 {
					t.Errorf("%s holds %v after the interrupt", d, ents[0].Name())
				}
			}
		})
	}
}

// TestClaimHangup: while a command claims SIGHUP it gets it and skiff is
// not interrupted; once released, SIGHUP interrupts skiff again.
func TestClaimHangup(t *testing.T) {
	ctx, in := notifyInterrupts(context.Background(), io.Discard)
	stopped := false
	defer func() {
		if !stopped {
			in.stop()
		}
	}()
	hup, release := claimHangup()
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case <-hup:
	case <-time.After(10 * time.Second):
		t.Fatal("the claim did not get SIGHUP")
	}
	time.Sleep(50 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatal("a claimed SIGHUP interrupted skiff")
	}
	release()
	release() // idempotent
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP after the release did not interrupt skiff")
	}
	stopped = true
	if s := in.stop(); s != syscall.SIGHUP {
		t.Errorf("interrupted by %v, want SIGHUP", s)
	}
}
