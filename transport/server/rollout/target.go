package rollout

import "fmt"

// TargetFor returns the config digest a device should be offered while s
// is the rollout of its track, and why (for logs and the check's answer):
//
//   - a pinned device: its pin, in every status;
//   - aborted: Previous;
//   - completed: Target;
//   - running: Target if the device's wave (State.WaveOf) has started,
//     else Previous;
//   - paused: Target only to a device that already runs it (the rollout
//     never spreads while paused), else Previous.
//
// running is the config digest the device runs ("" if none). "" is
// returned when the answer is Previous and there was none: the device is
// offered nothing.
//
// A device that rolled back stays in its wave and keeps being offered the
// target; it runs the previous image because its agent holds back a
// target that failed its health check or hook (until a newer one) and
// backs off from one that failed to install. The rollout counts it among
// the wave's errors (Counts), which is what can pause the rollout; it is
// never offered the previous image by this function, which would be a
// downgrade the agent refuses unless it has a higher serial.
//
// After an Abort, devices that installed the target are offered Previous:
// the server must publish it with a serial above the target's (as a
// republish does), or agents refuse the older image.
func TargetFor(s *State, deviceID string, labels map[string]string, running string) (configDigest, why string) {
	if pin, ok := s.Pins[deviceID]; ok {
		return pin, "pinned by an admin"
	}
	switch s.Status {
	case StatusAborted:
		return s.Previous, fmt.Sprintf("rollout %s aborted", s.ID)
	case StatusCompleted:
		return s.Target, fmt.Sprintf("rollout %s completed", s.ID)
	}
	w := s.WaveOf(deviceID, labels)
	if s.Status == StatusPaused {
		if running == s.Target {
			return s.Target, fmt.Sprintf("rollout %s paused; the device already runs the target", s.ID)
		}
		return s.Previous, fmt.Sprintf("rollout %s paused at %s", s.ID, s.waveName(s.Wave))
	}
	if w <= s.Wave {
		return s.Target, fmt.Sprintf("rollout %s: in %s", s.ID, s.waveName(w))
	}
	if w >= len(s.Plan.Waves) {
		return s.Previous, fmt.Sprintf("rollout %s: in no wave", s.ID)
	}
	return s.Previous, fmt.Sprintf("rollout %s: %s not started", s.ID, s.waveName(w))
}
