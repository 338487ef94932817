package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-dev/skiff/internal/atomicfile"
)

// StateFile is the name of the state file in the state directory.
const StateFile = "state.json"

// State is what the agent remembers across restarts (state_dir/state.json).
type State struct {
	Images map[string]*ImageState `json:"images"`
}

// ImageState is the state of one configured image.
type ImageState struct {
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastUpdate time.Time `json:"last_update,omitzero"`
	NextCheck  time.Time `json:"next_check,omitzero"`
	// Current is the image the device runs, as last seen or loaded.
	Current Current `json:"current"`
	// Available is the target of the last check when an update exists.
	Available *Current `json:"available,omitempty"`
	LastError string   `json:"last_error,omitempty"`
	// Failures counts checks or updates that failed in a row (backoff).
	Failures int `json:"failures,omitempty"`
	// Previous lists the image IDs this agent replaced, newest first; the
	// first `keep` are kept, older ones pruned.
	Previous []string `json:"previous,omitempty"`
	// Install is set from just before a load until the hook of that load
	// has run: a run killed in between left it, and the next run finishes
	// the install (state, hook, prune) if the engine holds the target, or
	// drops it if the engine still holds the old image.
	Install *PendingInstall `json:"install,omitempty"`
	// Failed is the last target whose install failed after its load (and
	// was rolled back): it is not tried again before Failed.Until.
	Failed *FailedInstall `json:"failed,omitempty"`
	// WantedDelta is the digest of the delta the last check asked for;
	// downloads in work_dir/deltas no image wants are removed.
	WantedDelta string `json:"wanted_delta,omitempty"`
}

// PendingInstall is an install whose load may have happened but whose hook
// has not run yet.
type PendingInstall struct {
	// Target is the image being loaded under Target.Ref.
	Target Current `json:"target"`
	// Previous is the image ID ref named before the load ("" if none).
	Previous string `json:"previous,omitempty"`
	// Via is how the target was made: "delta", "full-pull" or "file".
	Via   string    `json:"via,omitempty"`
	Since time.Time `json:"since,omitzero"`
	// PreviousCurrent is what the state said the device ran before the
	// load (a health-checked rollback restores it).
	PreviousCurrent Current `json:"previous_current,omitzero"`
	// RollingBack is set once a failed health check (or hook) decided to
	// roll back: a run killed later puts the previous image back too.
	RollingBack bool `json:"rolling_back,omitempty"`
}

// FailedInstall is a target whose install failed after its load.
type FailedInstall struct {
	// Target is the config digest of the image that failed.
	Target string `json:"target"`
	// Via is how it was made: "delta", "full-pull" or "file".
	Via string `json:"via,omitempty"`
	// Count is how many installs of Target failed in a row.
	Count int       `json:"count"`
	At    time.Time `json:"at,omitzero"`
	// Until is when Target may be tried again (backoff_min·2^(Count-1),
	// capped at backoff_max, drawn from the upper half).
	Until time.Time `json:"until,omitzero"`
	// Unhealthy: Target loaded but failed its hook or health check, and
	// was rolled back; it is not installed again (a newer target is).
	Unhealthy bool `json:"unhealthy,omitempty"`
	// Reason is why it failed, cut short.
	Reason string `json:"reason,omitempty"`
}

// Current identifies an image.
type Current struct {
	ConfigDigest   string `json:"config_digest,omitempty"`
	ManifestDigest string `json:"manifest_digest,omitempty"`
	Ref            string `json:"ref,omitempty"`
	// Serial and Channel: the server's publish number of this target on
	// Channel (api.Target.Serial), when it came from a rollout server.
	Serial  int64  `json:"serial,omitempty"`
	Channel string `json:"channel,omitempty"`
}

// StateStore reads and writes state.json. Writes are atomic (temporary
// file, fsync, rename, fsync of the directory) so a power cut leaves either
// the old or the new state. It is safe for concurrent use.
type StateStore struct {
	path string
	mu   sync.Mutex
}

// OpenState returns the store of state_dir, creating the directory.
func OpenState(dir string) (*StateStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	return &StateStore{path: filepath.Join(dir, StateFile)}, nil
}

// Path is the state file's path.
func (s *StateStore) Path() string { return s.path }

// Load reads the state; a missing file is an empty state.
func (s *StateStore) Load() (*State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load()
}

func (s *StateStore) load() (*State, error) {
	st := &State{Images: map[string]*ImageState{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrState, s.path, err)
	}
	if st.Images == nil {
		st.Images = map[string]*ImageState{}
	}
	return st, nil
}

// Update loads the state, lets fn change the entry of image (created if
// missing) and writes the state back atomically.
func (s *StateStore) Update(image string, fn func(*ImageState)) (ImageState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.load()
	if err != nil {
		return ImageState{}, err
	}
	is := st.Images[image]
	if is == nil {
		is = &ImageState{}
		st.Images[image] = is
	}
	fn(is)
	if err := s.save(st); err != nil {
		return ImageState{}, err
	}
	return *is, nil
}

// Save writes the whole state atomically.
func (s *StateStore) Save(st *State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.save(st)
}

func (s *StateStore) save(st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := atomicfile.WriteFile(s.path, append(b, '\n')); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrState, s.path, err)
	}
	return nil
}
