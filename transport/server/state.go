package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/internal/atomicfile"
	"github.com/skiff-dev/skiff/internal/flock"
	"github.com/skiff-dev/skiff/transport/api"
)

// stateVersion is the version of state.json this server writes and reads.
const stateVersion = 1

// record is one image as it was published.
type record struct {
	// Ref is the reference as the admin published it (it may be a tag that
	// moves later).
	Ref string `json:"ref"`
	// Pinned names the same image in a way that does not move: a registry
	// image by manifest digest, an engine image by ID; other transports
	// keep Ref (the server checks the config digest when it opens them).
	Pinned         string    `json:"pinned"`
	ConfigDigest   string    `json:"config_digest"`
	ManifestDigest string    `json:"manifest_digest"`
	DiffIDs        []string  `json:"diff_ids"`
	Published      time.Time `json:"published"`
	// Serial is the track's publish number when this image last became
	// its target (api.Target.Serial).
	Serial int64 `json:"serial,omitempty"`
}

func (r record) target() *api.Target {
	return &api.Target{Ref: r.Ref, ConfigDigest: r.ConfigDigest, ManifestDigest: r.ManifestDigest, Serial: r.Serial}
}

// deviceTarget is target as devices see it: the reference only where a
// device can pull it (a registry's); an OCI layout's or archive's path, or
// an engine's name, is the server's own business.
func (r record) deviceTarget() *api.Target {
	t := r.target()
	if !strings.HasPrefix(t.Ref, "docker://") {
		t.Ref = ""
	}
	return t
}

// track is what the server knows about one (channel, image).
type track struct {
	// Current is the config digest of the image devices should run.
	Current string `json:"current"`
	// History holds every image ever published here, once per config
	// digest, in the order first published; these are the known bases.
	History []record `json:"history"`
	// Serial counts the publishes that set Current.
	Serial int64 `json:"serial,omitempty"`
	// Rollout is the ID of the staged rollout that governs the track's
	// check-ins (its state is in the fleet database), from its start until
	// it is settled; "" for none, and then a check-in reads no database.
	Rollout string `json:"rollout,omitempty"`
}

func (t *track) find(config string) (int, bool) {
	for i, r := range t.History {
		if r.ConfigDigest == config {
			return i, true
		}
	}
	return -1, false
}

type stateFile struct {
	Version int `json:"version"`
	// Tracks maps channel -> image -> track.
	Tracks map[string]map[string]*track `json:"tracks"`
}

// state is the persisted set of published images, in StateDir/state.json.
// Several servers may share the directory: a server re-reads the file when
// it changes on disk (checked at most once a second), and a publish holds
// an exclusive flock on StateDir/state.lock while it re-reads the file,
// changes it and renames the new one into place, so two servers publishing
// at once both land.
type state struct {
	path string
	lock string // the lock file serializing publishes across processes

	mu       sync.RWMutex
	f        stateFile
	byConfig map[string]record    // every known image, by config digest
	first    map[string]time.Time // when each was first published, anywhere
	mod      time.Time            // of the file as last read or written
	size     int64
	checked  time.Time // when the file was last stat'ed
}

func openState(dir string) (*state, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	st := &state{path: filepath.Join(dir, "state.json"), lock: filepath.Join(dir, "state.lock")}
	st.f = stateFile{Version: stateVersion, Tracks: map[string]map[string]*track{}}
	st.index()
	if err := st.reload(); err != nil {
		return nil, err
	}
	return st, nil
}

// reload reads state.json if it differs from what was last read or
// written. The caller holds mu for writing (or owns st exclusively).
func (st *state) reload() error {
	st.checked = time.Now()
	fi, err := os.Stat(st.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	if fi.ModTime().Equal(st.mod) && fi.Size() == st.size {
		return nil
	}
	b, err := os.ReadFile(st.path)
	if err != nil {
		return fmt.Errorf("state: %w", err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("state %s: %v: %w", st.path, err, ErrCorruptState)
	}
	if f.Version != stateVersion {
		return fmt.Errorf("state %s: version %d, this server reads %d: %w", st.path, f.Version, stateVersion, ErrCorruptState)
	}
	if f.Tracks == nil {
		f.Tracks = map[string]map[string]*track{}
	}
	for ch, imgs := range f.Tracks {
		for img, t := range imgs {
			if t == nil {
				return fmt.Errorf("state %s: %s/%s: empty track: %w", st.path, ch, img, ErrCorruptState)
			}
			if _, ok := t.find(t.Current); !ok {
				return fmt.Errorf("state %s: %s/%s: current %s is not in its history: %w", st.path, ch, img, t.Current, ErrCorruptState)
			}
		}
	}
	st.f, st.mod, st.size = f, fi.ModTime(), fi.Size()
	st.index()
	return nil
}

func (st *state) index() {
	st.byConfig = map[string]record{}
	st.first = map[string]time.Time{}
	for _, imgs := range st.f.Tracks {
		for _, t := range imgs {
			for _, r := range t.History {
				if old, ok := st.byConfig[r.ConfigDigest]; !ok || r.Published.After(old.Published) {
					st.byConfig[r.ConfigDigest] = r
				}
				if f, ok := st.first[r.ConfigDigest]; !ok || r.Published.Before(f) {
					st.first[r.ConfigDigest] = r.Published
				}
			}
		}
	}
}

// refresh re-reads the file if it changed and was not checked within the
// last second. Errors are returned but the old state stays in use.
func (st *state) refresh() error {
	st.mu.RLock()
	fresh := time.Since(st.checked) < time.Second
	st.mu.RUnlock()
	if fresh {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if time.Since(st.checked) < time.Second {
		return nil
	}
	return st.reload()
}

// current returns the target of (channel, image).
func (st *state) current(channel, image string) (record, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	t := st.f.Tracks[channel][image]
	if t == nil {
		return record{}, false
	}
	i, _ := t.find(t.Current)
	return t.History[i], true
}

// base returns the image with this config digest as a base of deltas to
// target on (channel, image): one the track itself published (whatever
// the order: an admin who publishes an older image again chose that
// rollback), or one another track published first before target was — an
// upgrade across channels. Never a newer image of another channel: a
// device token could make the server compute, and sign, a downgrade to
// this channel's target from any image ever published.
func (st *state) base(channel, image, config, target string) (record, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if t := st.f.Tracks[channel][image]; t != nil {
		if i, ok := t.find(config); ok {
			return t.History[i], true
		}
	}
	r, ok := st.byConfig[config]
	if !ok || !st.first[config].Before(st.first[target]) {
		return record{}, false
	}
	return r, true
}

// bases returns the images ever published on (channel, image) other than
// its current target, newest first.
func (st *state) bases(channel, image string) []record {
	st.mu.RLock()
	defer st.mu.RUnlock()
	t := st.f.Tracks[channel][image]
	if t == nil {
		return nil
	}
	var out []record
	for i := len(t.History) - 1; i >= 0; i-- {
		if t.History[i].ConfigDigest != t.Current {
			out = append(out, t.History[i])
		}
	}
	return out
}

// published is one (channel, image) and its current target.
type published struct {
	Channel, Image string
	Target         record
}

// all lists every (channel, image) with its target, sorted.
func (st *state) all() []published {
	st.mu.RLock()
	defer st.mu.RUnlock()
	var out []published
	for ch, imgs := range st.f.Tracks {
		for img, t := range imgs {
			i, _ := t.find(t.Current)
			out = append(out, published{ch, img, t.History[i]})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return out[i].Image < out[j].Image
	})
	return out
}

// change runs edit on a copy of the state file under the publish lock
// (an exclusive flock, so servers sharing the directory take turns),
// after re-reading it from disk whatever its time stamp says (another
// server's write within the file system's time granularity could have the
// same mtime and size), and writes the copy back if edit reports a change;
// a failed edit or write leaves memory as the disk is.
func (st *state) change(edit func(f *stateFile) (bool, error)) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	unlock, err := flock.File(context.Background(), st.lock, nil)
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	defer unlock()
	st.mod, st.size = time.Time{}, -1
	if err := st.reload(); err != nil {
		return false, err
	}
	var f stateFile
	if b, err := json.Marshal(st.f); err != nil {
		return false, err
	} else if err := json.Unmarshal(b, &f); err != nil {
		return false, err
	}
	changed, err := edit(&f)
	if err != nil || !changed {
		return false, err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteFile(st.path, append(b, '\n')); err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	st.f = f
	if fi, err := os.Stat(st.path); err == nil {
		st.mod, st.size = fi.ModTime(), fi.Size()
	}
	st.index()
	return true, nil
}

// publish makes rec the target of (channel, image) and persists the state.
// Publishing the image that is already the target (same config and
// manifest digest and ref) changes nothing and returns false.
func (st *state) publish(channel, image string, rec record) (bool, error) {
	return st.change(func(f *stateFile) (bool, error) {
		imgs := f.Tracks[channel]
		if imgs == nil {
			imgs = map[string]*track{}
			f.Tracks[channel] = imgs
		}
		t := imgs[image]
		if t == nil {
			t = &track{}
			imgs[image] = t
		}
		if t.Rollout != "" {
			// Checked under the lock, so a publish racing a rollout's start
			// on another server cannot move the target under it.
			return false, fmt.Errorf("%s/%s: rollout %s governs the track: %w", channel, image, t.Rollout, ErrRolloutActive)
		}
		i, ok := t.find(rec.ConfigDigest)
		if ok {
			old := t.History[i]
			if t.Current == rec.ConfigDigest && old.ManifestDigest == rec.ManifestDigest && old.Ref == rec.Ref && old.Pinned == rec.Pinned {
				return false, nil
			}
		}
		t.Serial++
		rec.Serial = t.Serial
		if ok {
			t.History[i] = rec
		} else {
			t.History = append(t.History, rec)
		}
		t.Current = rec.ConfigDigest
		return true, nil
	})
}
