package server

import (
	"fmt"
	"time"
)

// stage puts rec into the history of (channel, image) with the next
// serial, as a publish does, but leaves the track's target where it is:
// a staged rollout offers rec to its waves only. It marks the track as
// governed by rollout id, and returns rec with its serial and the track's
// current target (the rollout's previous). The track must have a target,
// and rec must not be it.
func (st *state) stage(channel, image, id string, rec record) (staged, previous record, err error) {
	_, err = st.change(func(f *stateFile) (bool, error) {
		t := f.Tracks[channel][image]
		if t == nil {
			return false, fmt.Errorf("%s/%s: publish a first target (PUT %s) before rolling one out: %w", channel, image, "/v1/targets/…", ErrNotPublished)
		}
		if rec.ConfigDigest == t.Current {
			return false, fmt.Errorf("%s is already the target of %s/%s: %w", rec.ConfigDigest, channel, image, ErrBadRequest)
		}
		i, _ := t.find(t.Current)
		previous = t.History[i]
		t.Serial++
		rec.Serial = t.Serial
		if j, ok := t.find(rec.ConfigDigest); ok {
			if rec.Ref == "" { // staging an image of the history as it was
				rec = t.History[j]
				rec.Serial = t.Serial
			}
			t.History[j] = rec
		} else {
			t.History = append(t.History, rec)
		}
		staged = rec
		t.Rollout = id
		return true, nil
	})
	return staged, previous, err
}

// unmark clears the rollout mark of (channel, image) if it names id: a
// rollout that was staged but could not be stored.
func (st *state) unmark(channel, image, id string) error {
	_, err := st.change(func(f *stateFile) (bool, error) {
		t := f.Tracks[channel][image]
		if t == nil || t.Rollout != id {
			return false, nil
		}
		t.Rollout = ""
		return true, nil
	})
	return err
}

// rolloutOf returns the ID of the rollout marked as governing (channel,
// image), "" if none.
func (st *state) rolloutOf(channel, image string) string {
	st.mu.RLock()
	defer st.mu.RUnlock()
	if t := st.f.Tracks[channel][image]; t != nil {
		return t.Rollout
	}
	return ""
}

// recordFresh is record, re-reading state.json first if the image is not
// known: another server may have staged it within the last second.
func (st *state) recordFresh(channel, image, config string) (record, bool) {
	if r, ok := st.record(channel, image, config); ok {
		return r, true
	}
	st.mu.Lock()
	st.mod, st.size = time.Time{}, -1
	err := st.reload()
	st.mu.Unlock()
	if err != nil {
		return record{}, false
	}
	return st.record(channel, image, config)
}

// record returns the image with this config digest from the history of
// (channel, image).
func (st *state) record(channel, image, config string) (record, bool) {
	st.mu.RLock()
	defer st.mu.RUnlock()
	t := st.f.Tracks[channel][image]
	if t == nil {
		return record{}, false
	}
	i, ok := t.find(config)
	if !ok {
		return record{}, false
	}
	return t.History[i], true
}

// settle writes a final rollout's outcome to (channel, image):
//
//   - completed: target becomes the track's target, with the serial it
//     got when the rollout staged it (devices that installed it keep it);
//   - aborted (rollback): previous becomes the target again with a new
//     serial, above target's, so that agents which installed target
//     accept the older image (their anti-rollback only refuses lower
//     serials) — what an admin's publish of the old image would do.
//
// The track's rollout mark is cleared if it names id. It is idempotent: a
// second call (another server settling the same rollout after a crash)
// finds the work done and changes nothing.
func (st *state) settle(channel, image, id, target, previous string, rollback bool) (bool, error) {
	return st.change(func(f *stateFile) (bool, error) {
		t := f.Tracks[channel][image]
		if t == nil {
			return false, fmt.Errorf("%s/%s: %w", channel, image, ErrNotPublished)
		}
		unmarked := false
		if t.Rollout == id {
			t.Rollout, unmarked = "", true
		}
		ti, tok := t.find(target)
		if !rollback {
			if !tok {
				return false, fmt.Errorf("%s/%s: rollout target %s is not in the history: %w", channel, image, target, ErrCorruptState)
			}
			if t.Current == target {
				return unmarked, nil
			}
			t.Current = target
			return true, nil
		}
		pi, pok := t.find(previous)
		if !pok {
			return false, fmt.Errorf("%s/%s: rollout previous %s is not in the history: %w", channel, image, previous, ErrCorruptState)
		}
		if t.Current == previous && (!tok || t.History[pi].Serial > t.History[ti].Serial) {
			return unmarked, nil
		}
		t.Serial++
		t.History[pi].Serial = t.Serial
		t.Current = previous
		return true, nil
	})
}
