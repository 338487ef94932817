package rollout

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Status is where a rollout is in its life.
//
//	running ──Pause / errors──▶ paused ──Resume──▶ running
//	running ──last wave done──▶ completed
//	running, paused ──Abort──▶ aborted
//
// completed and aborted are final.
type Status string

// The statuses of a rollout.
const (
	StatusRunning   Status = "running"
	StatusPaused    Status = "paused"
	StatusAborted   Status = "aborted"
	StatusCompleted Status = "completed"
)

// Final reports whether no transition leaves s.
func (s Status) Final() bool { return s == StatusAborted || s == StatusCompleted }

func (s Status) valid() bool {
	switch s {
	case StatusRunning, StatusPaused, StatusAborted, StatusCompleted:
		return true
	}
	return false
}

// Counts are what the server knows of the devices of the current wave.
// They are cumulative: a wave's devices are those whose wave (State.WaveOf)
// is at or below it, the earlier waves' included. State.Tally computes
// them from a list of devices.
type Counts struct {
	// Fleet is every device known on the rollout's (channel, image),
	// in a wave yet or not (for MinDevices).
	Fleet int `json:"fleet"`
	// Devices is how many of them are in the wave.
	Devices int `json:"devices"`
	// Installed: devices of the wave that run the target.
	Installed int `json:"installed"`
	// RolledBack: devices of the wave that loaded the target, failed its
	// hook or health check, and run the previous image again.
	RolledBack int `json:"rolled_back"`
	// Failed: devices of the wave whose install of the target failed
	// before it ran (fetch, apply, load).
	Failed int `json:"failed"`
}

// normalized makes c consistent: no negative counts, Devices at least the
// devices reported on, Fleet at least Devices.
func (c Counts) normalized() Counts {
	for _, p := range []*int{&c.Fleet, &c.Devices, &c.Installed, &c.RolledBack, &c.Failed} {
		*p = max(*p, 0)
	}
	c.Devices = max(c.Devices, c.Installed+c.RolledBack+c.Failed)
	c.Fleet = max(c.Fleet, c.Devices)
	return c
}

// WaveState is the progress of one wave.
type WaveState struct {
	// Started is when the wave started; zero for a wave not yet started.
	Started time.Time `json:"started,omitzero"`
	// Succeeded is when the wave first reached the success threshold (its
	// soak runs from then); zero before.
	Succeeded time.Time `json:"succeeded,omitzero"`
	// Cutoff, when above the wave's percentage, is the bucket below which
	// devices are in the wave, raised by Widen so the wave holds
	// MinDevices devices.
	Cutoff float64 `json:"cutoff,omitempty"`
	// Counts are the counts the last Advance of this wave saw.
	Counts Counts `json:"counts,omitzero"`
}

// State is one rollout: a target rolled out over a (channel, image) by a
// Plan. It is plain data (its JSON form is what a store keeps) with
// methods for its transitions; every method that changes it increments
// Rev, and a store writes it back only if Rev moved, with compare-and-set
// on the Rev it loaded (see the package doc).
type State struct {
	// ID names the rollout and salts its buckets: unique across all
	// tracks (e.g. 128 random bits in hex), not a per-track counter.
	ID string `json:"id"`
	// Rev counts the changes to this state.
	Rev     int64  `json:"rev"`
	Channel string `json:"channel"`
	Image   string `json:"image"`
	// Target is the config digest rolled out.
	Target string `json:"target"`
	// Previous is the config digest devices not (yet) in a wave are
	// offered: the track's target before this rollout; "" if there was
	// none (then those devices are offered nothing).
	Previous string `json:"previous,omitempty"`
	// Plan, with its defaults filled in.
	Plan   Plan   `json:"plan"`
	Status Status `json:"status"`
	// Wave is the index, from 0, of the current wave in Plan.Waves;
	// messages number waves from 1.
	Wave int `json:"wave"`
	// Waves has one entry per wave of the plan.
	Waves []WaveState `json:"waves"`
	// PauseReason says why the rollout is paused (by whom, or which
	// numbers crossed the error threshold).
	PauseReason string `json:"pause_reason,omitempty"`
	// Excused is how many rolled back or failed devices the last Resume
	// forgave: they count neither as errors nor as devices of a wave.
	Excused int `json:"excused,omitempty"`
	// Pins maps device IDs to the config digest an admin wants them to
	// run, whatever the rollout says.
	Pins    map[string]string `json:"pins,omitempty"`
	Created time.Time         `json:"created"`
}

// New starts a rollout of target on (channel, image) by plan at now, its
// first wave started. previous is the track's target before ("" if none).
// The plan's zero thresholds are set to the defaults. Errors wrap ErrPlan
// or ErrInvalid.
func New(id, channel, image, target, previous string, plan Plan, now time.Time) (*State, error) {
	if err := plan.Validate(); err != nil {
		return nil, err
	}
	s := &State{
		ID: id, Channel: channel, Image: image, Target: target, Previous: previous,
		Plan: plan.withDefaults(), Status: StatusRunning, Created: now,
		Waves: make([]WaveState, len(plan.Waves)),
	}
	s.Plan.Waves = slices.Clone(plan.Waves)
	s.Waves[0].Started = now
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Validate checks that s is a state this package could have made: a store
// calls it on what it loads. Errors wrap ErrInvalid or ErrPlan.
func (s *State) Validate() error {
	switch {
	case !validID(s.ID):
		return fmt.Errorf("rollout ID %q: 1-128 printable characters: %w", s.ID, ErrInvalid)
	case s.Channel == "" || s.Image == "":
		return fmt.Errorf("rollout %s: channel and image are required: %w", s.ID, ErrInvalid)
	case !validDigest(s.Target):
		return fmt.Errorf("rollout %s: target %q: not sha256:<64 hex>: %w", s.ID, s.Target, ErrInvalid)
	case s.Previous != "" && !validDigest(s.Previous):
		return fmt.Errorf("rollout %s: previous %q: not sha256:<64 hex>: %w", s.ID, s.Previous, ErrInvalid)
	case s.Previous == s.Target:
		return fmt.Errorf("rollout %s: target is the previous target: %w", s.ID, ErrInvalid)
	}
	if err := s.Plan.Validate(); err != nil {
		return fmt.Errorf("rollout %s: %w", s.ID, err)
	}
	switch {
	case !s.Status.valid():
		return fmt.Errorf("rollout %s: unknown status %q: %w", s.ID, s.Status, ErrInvalid)
	case len(s.Waves) != len(s.Plan.Waves):
		return fmt.Errorf("rollout %s: %d wave states for %d waves: %w", s.ID, len(s.Waves), len(s.Plan.Waves), ErrInvalid)
	case s.Wave < 0 || s.Wave >= len(s.Waves):
		return fmt.Errorf("rollout %s: wave index %d out of range: %w", s.ID, s.Wave, ErrInvalid)
	case s.Excused < 0:
		return fmt.Errorf("rollout %s: negative excused count: %w", s.ID, ErrInvalid)
	}
	for d, dg := range s.Pins {
		if d == "" || !validDigest(dg) {
			return fmt.Errorf("rollout %s: pin %q -> %q: %w", s.ID, d, dg, ErrInvalid)
		}
	}
	return nil
}

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	c := *s
	c.Plan.Waves = make([]Wave, len(s.Plan.Waves))
	for i, w := range s.Plan.Waves {
		c.Plan.Waves[i] = Wave{Percent: w.Percent, Labels: maps.Clone(w.Labels)}
	}
	c.Waves = slices.Clone(s.Waves)
	c.Pins = maps.Clone(s.Pins)
	return &c
}

func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range []byte(id) {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// validDigest reports whether d is "sha256:" and 64 lowercase hex digits.
func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range []byte(hex) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// WaveOf returns the index of the first wave the device belongs to, as
// the package function WaveOf does with the rollout's ID as salt, and
// with the cutoffs Widen raised.
func (s *State) WaveOf(deviceID string, labels map[string]string) int {
	cut := make([]float64, len(s.Waves))
	for i, w := range s.Waves {
		cut[i] = w.Cutoff
	}
	return waveOf(s.Plan.Waves, cut, s.ID, deviceID, labels)
}

// waveName is wave i for messages: "wave 2 (10%)", numbered from 1.
func (s *State) waveName(i int) string {
	return fmt.Sprintf("wave %d (%s)", i+1, s.Plan.Waves[i])
}

func (s *State) transition(verb string, from ...Status) error {
	if slices.Contains(from, s.Status) {
		return nil
	}
	article := "a"
	if s.Status == StatusAborted {
		article = "an"
	}
	return fmt.Errorf("rollout %s: cannot %s %s %s rollout: %w", s.ID, verb, article, s.Status, ErrTransition)
}

// Pause stops a running rollout from spreading: no device that does not
// run the target yet is offered it (TargetFor). reason is shown to admins
// ("" becomes "paused by an admin").
func (s *State) Pause(reason string) error {
	if err := s.transition("pause", StatusRunning); err != nil {
		return err
	}
	if reason == "" {
		reason = "paused by an admin"
	}
	s.Status, s.PauseReason = StatusPaused, reason
	s.Rev++
	return nil
}

// Resume lets a paused rollout go on. The rolled back and failed devices
// of the current wave's last counts are excused: they no longer count,
// neither as errors nor as devices, so a rollout paused for errors is not
// paused again by the same devices (new failures still pause it).
func (s *State) Resume() error {
	if err := s.transition("resume", StatusPaused); err != nil {
		return err
	}
	c := s.Waves[s.Wave].Counts
	s.Status, s.PauseReason = StatusRunning, ""
	s.Excused = max(s.Excused, c.RolledBack+c.Failed)
	s.Rev++
	return nil
}

// Abort ends a running or paused rollout: every device not pinned is
// offered the previous target again.
func (s *State) Abort() error {
	if err := s.transition("abort", StatusRunning, StatusPaused); err != nil {
		return err
	}
	s.Status, s.PauseReason = StatusAborted, ""
	s.Rev++
	return nil
}

// Skip starts the next wave of a running rollout now, whatever the current
// wave's counts (or completes it after the last wave): an admin's way past
// a wave that cannot succeed, such as a group no device has yet.
func (s *State) Skip(now time.Time) (event string, err error) {
	if err := s.transition("skip a wave of", StatusRunning); err != nil {
		return "", err
	}
	return s.next(now, "skipped by an admin"), nil
}

// Pin makes the device be offered digest whatever the rollout says, in
// every status. Pinning a device to its current pin changes nothing.
func (s *State) Pin(deviceID, digest string) error {
	if deviceID == "" {
		return fmt.Errorf("pin: empty device ID: %w", ErrInvalid)
	}
	if !validDigest(digest) {
		return fmt.Errorf("pin %s: digest %q: not sha256:<64 hex>: %w", deviceID, digest, ErrInvalid)
	}
	if old, ok := s.Pins[deviceID]; ok && old == digest {
		return nil
	}
	if s.Pins == nil {
		s.Pins = map[string]string{}
	}
	s.Pins[deviceID] = digest
	s.Rev++
	return nil
}

// Unpin removes the device's pin; ErrNotPinned if it has none.
func (s *State) Unpin(deviceID string) error {
	if _, ok := s.Pins[deviceID]; !ok {
		return fmt.Errorf("unpin %q: %w", deviceID, ErrNotPinned)
	}
	delete(s.Pins, deviceID)
	if len(s.Pins) == 0 {
		s.Pins = nil
	}
	s.Rev++
	return nil
}

// Device is what the server knows of one device of the rollout's track,
// for Tally and Widen.
type Device struct {
	ID     string
	Labels map[string]string
	// Running is the config digest the device last said it runs.
	Running string
	// Result is the device's last reported outcome for the rollout's
	// target ("" if it reported none).
	Result Result
}

// Result is a device's reported outcome of installing a target.
type Result string

// The results of an install a device reports.
const (
	ResultNone       Result = ""
	ResultInstalled  Result = "installed"
	ResultRolledBack Result = "rolled_back"
	ResultFailed     Result = "failed"
)

// Tally counts fleet (every device known on the track) for the current
// wave: a device is installed if it runs the target or reported
// "installed", else rolled back or failed as it reported.
func (s *State) Tally(fleet []Device) Counts {
	c := Counts{Fleet: len(fleet)}
	for _, d := range fleet {
		if s.WaveOf(d.ID, d.Labels) > s.Wave {
			continue
		}
		c.Devices++
		switch {
		case d.Running == s.Target || d.Result == ResultInstalled:
			c.Installed++
		case d.Result == ResultRolledBack:
			c.RolledBack++
		case d.Result == ResultFailed:
			c.Failed++
		}
	}
	return c
}

// Widen raises the current wave's cutoff, if it is a running percentage
// wave, so that at least min(MinDevices, len(fleet)) devices of fleet
// (every device known on the track) are in it or an earlier wave: the
// lowest buckets of the devices not in yet join. A wave only grows. It
// reports whether s changed; call it before Advance, in the same
// compare-and-set, whenever the fleet may have grown. Without it, a small
// fleet's percentage wave can hold fewer devices than MinDevices and never
// succeed.
func (s *State) Widen(fleet []Device) bool {
	if s.Status != StatusRunning || s.Plan.Waves[s.Wave].IsGroup() {
		return false
	}
	need := min(s.Plan.withDefaults().MinDevices, len(fleet))
	in := 0
	var out []float64 // the buckets of the devices not in yet
	for _, d := range fleet {
		if s.WaveOf(d.ID, d.Labels) <= s.Wave {
			in++
		} else {
			out = append(out, Bucket(s.ID, d.ID))
		}
	}
	if in >= need {
		return false
	}
	// Every device not in has a bucket at or above the wave's cutoff (it
	// would be in otherwise), so the cutoff only rises.
	slices.Sort(out)
	s.Waves[s.Wave].Cutoff = math.Nextafter(out[need-in-1], math.Inf(1))
	s.Rev++
	return true
}

// slack absorbs float rounding, so that 9 of 10 meets a 0.9 threshold.
const slack = 1e-12

// Advance judges the current wave of a running rollout by c (its
// cumulative counts) at now, and reports whether s changed and, if its
// status or wave did, an event for the log:
//
//   - more than ErrorThreshold of the wave's devices rolled back or failed:
//     paused, with a reason naming the numbers;
//   - at least SuccessThreshold installed: the wave's success time is
//     recorded the first time, and once Soak has passed since, the next
//     wave starts (or, after the last, the rollout completes) at an
//     Advance that still sees SuccessThreshold installed;
//   - otherwise only the counts are recorded (changed, no event).
//
// A wave is judged on n = max(Devices, min(MinDevices, Fleet)) devices for
// a percentage wave and on Devices for a group wave, less Excused; a wave
// with n = 0 (no devices yet) waits. Advance moves at most one wave per
// call and does nothing to a rollout that is not running.
func (s *State) Advance(now time.Time, c Counts) (changed bool, event string) {
	if s.Status != StatusRunning {
		return false, ""
	}
	c = c.normalized()
	ws := &s.Waves[s.Wave]
	if ws.Counts != c {
		ws.Counts, changed = c, true
	}
	p := s.Plan.withDefaults()
	n := c.Devices
	if !p.Waves[s.Wave].IsGroup() {
		n = max(n, min(p.MinDevices, c.Fleet))
	}
	n = max(n-s.Excused, 0)
	errs := max(c.RolledBack+c.Failed-s.Excused, 0)
	excused := ""
	if s.Excused > 0 {
		excused = fmt.Sprintf(", %d excused", s.Excused)
	}
	if n > 0 && errs > 0 && float64(errs)/float64(n) > p.ErrorThreshold+slack {
		s.Status = StatusPaused
		s.PauseReason = fmt.Sprintf("%s: %d of %d devices rolled back or failed (%s%% > %s%%%s)",
			s.waveName(s.Wave), errs, n, pct(float64(errs)/float64(n)), pct(p.ErrorThreshold), excused)
		s.Rev++
		return true, "paused: " + s.PauseReason
	}
	if n == 0 || float64(c.Installed)/float64(n) < p.SuccessThreshold-slack {
		if changed {
			s.Rev++
		}
		return changed, ""
	}
	why := fmt.Sprintf("%s: %d of %d devices installed (%s%% ≥ %s%%%s)",
		s.waveName(s.Wave), min(c.Installed, n), n, pct(min(float64(c.Installed)/float64(n), 1)), pct(p.SuccessThreshold), excused)
	if ws.Succeeded.IsZero() {
		ws.Succeeded = now
		if p.Soak > 0 {
			s.Rev++
			return true, fmt.Sprintf("%s; soaking until %s", why, now.Add(p.Soak).UTC().Format(time.RFC3339))
		}
	}
	if now.Before(ws.Succeeded.Add(p.Soak)) {
		if changed {
			s.Rev++
		}
		return changed, ""
	}
	return true, s.next(now, why)
}

// next starts the wave after the current one, or completes the rollout
// after the last, and returns the event.
func (s *State) next(now time.Time, why string) string {
	s.Rev++
	if s.Wave == len(s.Waves)-1 {
		s.Status = StatusCompleted
		return "completed: " + why
	}
	s.Wave++
	s.Waves[s.Wave].Started = now
	return fmt.Sprintf("%s started: %s", s.waveName(s.Wave), why)
}

// pct formats a fraction as a percentage with at most one decimal.
func pct(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64)
}
