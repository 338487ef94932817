package agent

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/internal/flock"
)

// lockImage takes the inter-process lock of image (an exclusive flock on
// state_dir/<image>.lock), waiting until it is free or ctx ends. Two agents
// (or an agent and `skiff agent apply`) on the same state directory thus
// fetch, apply and load one at a time; the second sees what the first did.
// The kernel drops the lock when its holder dies, even by SIGKILL. Locks
// are per open file, so two Agents in one process exclude each other too.
func (a *Agent) lockImage(ctx context.Context, image string) (unlock func(), err error) {
	p := filepath.Join(a.cfg.StateDir, image+".lock")
	unlock, err = flock.File(ctx, p, func() {
		a.log.Info("another agent is updating this image; waiting", "image", image, "lock", p)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: lock %s: %w", ErrState, p, err)
	}
	// Whoever held the lock before is gone: its scratch directories are
	// leftovers of a killed run.
	a.removeStaleWork(image)
	return unlock, nil
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
		h, err := format.ReadHeader(bufio.NewReader(f))
		f.Close()
		if err != nil || h.Manifest.Target.ConfigDigest.String() != id {
			continue
		}
		if err := os.Remove(p); err == nil {
			a.log.Info("removed a delta already applied", "file", p)
		}
	}
}

const (
	// deltaGrace: a download no image wants is left alone while it was
	// written to this recently (another process may be writing it).
	deltaGrace = 10 * time.Minute
	// deltaMaxAge: a download older than this is removed unless the image
	// being updated wants it now.
	deltaMaxAge = 7 * 24 * time.Hour
)

// deltaFileRe matches what Fetch and Pull leave in work_dir/deltas.
var deltaFileRe = regexp.MustCompile(`^([0-9a-f]{64})\.skiff(\.part)?$`)

// removeUnwantedDeltas records the delta the check cr of image wants
// (none if cr offers none) and removes the downloads in work_dir/deltas,
// whole or partial, that no configured image wants: a delta for a target
// a newer one replaced, or one applied by another path. Images share
// work_dir, so a delta any image's state still wants is kept; so is one
// written in the last deltaGrace. Anything older than deltaMaxAge goes
// unless this check wants it.
func (a *Agent) removeUnwantedDeltas(image string, cr *CheckResult) {
	want := ""
	if cr.Update && cr.Delta != nil {
		if dg, err := digest.Parse(cr.Delta.Digest); err == nil {
			want = dg.Encoded()
		}
	}
	all, err := a.state.Load()
	if err != nil {
		return
	}
	if s := all.Images[image]; s == nil || s.WantedDelta != want {
		if _, err := a.state.Update(image, func(s *ImageState) { s.WantedDelta = want }); err != nil {
			a.log.Warn("cannot record the wanted delta", "image", image, "err", err)
			return
		}
		if all, err = a.state.Load(); err != nil {
			return
		}
	}
	wanted := map[string]bool{}
	for _, s := range all.Images {
		if s.WantedDelta != "" {
			wanted[s.WantedDelta] = true
		}
	}
	dir := filepath.Join(a.cfg.WorkDir, "deltas")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	now := time.Now()
	for _, e := range entries {
		m := deltaFileRe.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() || m[1] == want {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		age := now.Sub(fi.ModTime())
		if age < deltaGrace || (wanted[m[1]] && age < deltaMaxAge) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err == nil {
			a.log.Info("removed a download no image wants", "file", p, "age", age.Round(time.Second))
		}
	}
}
