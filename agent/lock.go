package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta"
)

// lockPoll is how often a waiting agent tries the image lock again.
const lockPoll = 50 * time.Millisecond

// lockImage takes the inter-process lock of image (an exclusive flock on
// state_dir/<image>.lock), waiting until it is free or ctx ends. Two agents
// (or an agent and `skiff agent apply`) on the same state directory thus
// fetch, apply and load one at a time; the second sees what the first did.
// The kernel drops the lock when its holder dies, even by SIGKILL. Locks
// are per open file, so two Agents in one process exclude each other too.
func (a *Agent) lockImage(ctx context.Context, image string) (unlock func(), err error) {
	p := filepath.Join(a.cfg.StateDir, image+".lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: lock %s: %w", ErrState, p, err)
	}
	waited := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("%w: lock %s: %w", ErrState, p, err)
		}
		if !waited {
			a.log.Info("another agent is updating this image; waiting", "image", image, "lock", p)
			waited = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
	// Whoever held the lock before is gone: its scratch directories are
	// leftovers of a killed run.
	a.removeStaleWork(image)
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// applyPrefix is the prefix of the scratch directories install makes in
// work_dir for image; the rest of the name is digits (os.MkdirTemp).
func applyPrefix(image string) string { return "apply-" + image + "-" }

// removeStaleWork removes the scratch directories of image that a killed
// run left in work_dir. Only names that are the prefix followed by digits
// are taken, so image "web" never removes those of "web-2".
func (a *Agent) removeStaleWork(image string) {
	entries, err := os.ReadDir(a.cfg.WorkDir)
	if err != nil {
		return
	}
	pre := applyPrefix(image)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), pre)
		if !ok || rest == "" || strings.Trim(rest, "0123456789") != "" {
			continue
		}
		p := filepath.Join(a.cfg.WorkDir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			a.log.Warn("cannot remove a stale scratch directory", "image", image, "dir", p, "err", err)
		} else {
			a.log.Info("removed the scratch directory of an interrupted run", "image", image, "dir", p)
		}
	}
}

// complete reports whether path holds the whole file of digest dg and
// size (Fetch renames a download to path only when it is complete and
// verified; the digest is checked again all the same).
func complete(path string, dg digest.Digest, size int64) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || (size > 0 && fi.Size() != size) {
		return false
	}
	v := dg.Verifier()
	if _, err := io.Copy(v, f); err != nil {
		return false
	}
	return v.Verified()
}

// removeDoneDeltas removes the downloaded deltas in work_dir/deltas whose
// target is id, the image now running: a run killed after the load but
// before it removed its delta left them, and nothing would use them again.
func (a *Agent) removeDoneDeltas(id string) {
	dir := filepath.Join(a.cfg.WorkDir, "deltas")
	files, _ := filepath.Glob(filepath.Join(dir, "*.skiff"))
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		h, err := delta.ReadHeader(bufio.NewReader(f))
		f.Close()
		if err != nil || h.Manifest.Target.ConfigDigest.String() != id {
			continue
		}
		if err := os.Remove(p); err == nil {
			a.log.Info("removed a delta already applied", "file", p)
		}
	}
}
