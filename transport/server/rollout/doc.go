// Package rollout is the logic of staged rollouts (issue 13): a target is
// offered to a growing share of a track's devices, wave by wave, and the
// rollout pauses itself when too many of them roll back. It is pure logic
// — no storage, no HTTP: a server keeps State in its store and calls the
// functions here.
//
// # Model
//
// A Plan is a list of waves and thresholds. A wave is either a percentage
// of the devices ("10%") or a label selector ("group=canary"). Percentages
// are cumulative: a device is in the first wave whose percentage is above
// its Bucket, a number in [0, 100) from a hash of the rollout ID and the
// device ID, so wave "10%" after "1%" adds about 9% of the devices. A group
// wave takes the devices whose labels include its pairs; a device's labels
// come from its check-ins (the server passes them in; this package does not
// read requests). The last wave is always 100%, so a completed rollout has
// reached every device. ParsePlan reads the CLI form
// ("group=canary,1%,10%,100%"); Plan also has a JSON form.
//
// A State is one rollout: its ID, (channel, image), the target and the
// previous config digest, the plan, a status (running, paused, aborted,
// completed), the current wave and when each wave started, the pause
// reason, and admins' pins (device → config digest). Pause, Resume, Abort,
// Skip, Pin and Unpin change it and refuse what the status does not allow
// (ErrTransition). Advance judges the current wave from its Counts (Tally
// makes them from the devices): more than ErrorThreshold of the wave's
// devices rolled back or failed pauses the rollout; SuccessThreshold
// installed, and Soak passed, starts the next wave or completes the
// rollout. Counts are cumulative, like the waves: the devices of the
// current wave and of every earlier one. MinDevices keeps a tiny
// percentage wave from deciding alone: it is judged on at least
// min(MinDevices, devices on the track), and Widen adds the lowest-bucket
// devices to it until it holds that many.
//
// TargetFor answers a check-in: the config digest the device is offered
// (pin; previous when aborted; target when completed or the device's wave
// has started; while paused, the target only to devices already running
// it). A device that rolled back keeps being offered the target and keeps
// running the previous image: its agent holds back a target that failed
// its health check.
//
// # API
//
// PlanFromRequest turns an api.RolloutRequest into a Plan, and State.API
// shows a State as an api.Rollout (per-wave counts as Advance last saw
// them). A device's labels come with its check-in (api.CheckRequest.Labels,
// ValidLabel's rules); the server passes them to TargetFor, and keeps them
// in its inventory for Tally and Widen; a device without labels is only in
// percentage waves.
//
// # Salt
//
// Buckets are salted with the rollout ID, not the target digest: every
// rollout draws its canaries afresh, so the same devices are not always the
// first to get a new image, and a target rolled out again after an abort is
// tried on other devices first. The ID must be unique across tracks (random
// bits, not a per-track counter) and never change once devices were
// offered the target; otherwise waves would reshuffle.
//
// # Several servers
//
// Every server computes the same answer from the same state: Bucket is a
// fixed hash (pinned by a golden test), WaveOf and TargetFor only read the
// state and their arguments, and Widen's cutoffs are stored in the state.
// So the state lives in the shared database, and no server keeps its own.
//
// Changes must not be lost when two servers (or a server and an admin)
// change one rollout at once, and a wave must start once. The store's
// contract: load the state and its Rev, call the methods (Widen, Tally,
// Advance; or an admin's Pause, Resume, Abort, Skip, Pin, Unpin), and if
// Rev moved, write it back with compare-and-set on the Rev loaded:
//
//	UPDATE rollouts SET state = $new, rev = $new_rev
//	 WHERE id = $id AND rev = $old_rev
//
// (or SELECT … FOR UPDATE around it). If no row changed, another writer
// won: load again and retry, or drop the attempt for an Advance (the next
// one will judge anew). Comparing the wave index alone
// (WHERE wave = $old) would keep a wave from being started twice but lose
// an admin's Pause that raced an Advance recording counts in the same wave;
// Rev covers both. Every method increments Rev on each change, so a store
// that keeps a Rev column only has to copy it.
package rollout
