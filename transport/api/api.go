package api

import "time"

// Route paths of the server API.
const (
	PathCheck         = "/v1/check"
	PathDeltas        = "/v1/deltas/"  // + digest, e.g. "sha256:<hex>"
	PathTargets       = "/v1/targets/" // + channel + "/" + image
	PathNotifications = "/v1/notifications"
	PathReports       = "/v1/reports"
	PathDevices       = "/v1/devices"
	PathHealthz       = "/healthz"
	PathMetrics       = "/metrics"
)

// CheckRequest is what a device sends to POST /v1/check: what it runs for
// one logical image on one channel.
type CheckRequest struct {
	// Device identifies the device (for logs and metrics only).
	Device string `json:"device"`
	// Channel is the rollout channel, e.g. "stable".
	Channel string `json:"channel"`
	// Image is the logical image name, e.g. "web".
	Image string `json:"image"`
	// ConfigDigest is the config digest ("sha256:<hex>", the Docker image
	// ID) of the image the device runs; "" if it runs none.
	ConfigDigest string `json:"config_digest"`
	// DiffIDs are the uncompressed layer digests of the running image, in
	// order. The server uses a delta only if they match the known base.
	DiffIDs []string `json:"diff_ids,omitempty"`
	// AgentVersion is the agent's release (optional: older agents send
	// none).
	AgentVersion string `json:"agent_version,omitempty"`
	// Platform is the device's OS/ARCH[/VARIANT] (optional).
	Platform string `json:"platform,omitempty"`
	// Labels are the device's labels from its configuration, e.g.
	// {"group": "canary", "site": "berlin"} (optional): the group waves
	// of a staged rollout select devices by them. At most 32; keys are
	// 1-128 of [A-Za-z0-9._/-] starting alphanumeric, values 1-128 of
	// [A-Za-z0-9._:-].
	Labels map[string]string `json:"labels,omitempty"`
}

// CheckResponse answers a CheckRequest.
//
//   - Update=false: the device already runs Target.
//   - Update=true, Delta!=nil: fetch Delta.URL and apply it to the running image.
//   - Update=true, Delta=nil, Pending=false: no delta is possible (unknown
//     base, or Error says why the computation failed); pull Target.Ref whole.
//   - Pending=true: the delta is being computed; ask again after RetryAfter
//     seconds.
type CheckResponse struct {
	Update     bool    `json:"update"`
	Target     *Target `json:"target,omitempty"`
	Delta      *Delta  `json:"delta,omitempty"`
	Pending    bool    `json:"pending,omitempty"`
	RetryAfter int     `json:"retry_after,omitempty"`
	// Error, when set, says why no delta is offered (the computation failed).
	Error string `json:"error,omitempty"`
}

// Target is the image currently published for a (channel, image).
type Target struct {
	// Ref is the image reference as published (layerfs syntax, e.g.
	// "docker://registry:5000/app:2").
	Ref            string `json:"ref"`
	ConfigDigest   string `json:"config_digest"`
	ManifestDigest string `json:"manifest_digest"`
	// Serial is the publish number of this target on its (channel,
	// image): every publish that sets the target, a rollback to an older
	// image included, gets a higher one. An agent refuses a target with a
	// lower serial than the one it installed from the same channel (a
	// stale or replayed answer). 0: unknown (state written before serials).
	Serial int64 `json:"serial,omitempty"`
}

// Delta locates a delta file on the server.
type Delta struct {
	// URL is an absolute path on the server, e.g. "/v1/deltas/sha256:<hex>".
	URL string `json:"url"`
	// Digest is the sha256 of the whole delta file ("sha256:<hex>").
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// PublishRequest is the body of PUT /v1/targets/{channel}/{image}.
type PublishRequest struct {
	// Ref is an image reference layerfs.Open understands, e.g.
	// "docker://127.0.0.1:5000/app:2" or "oci:/dir:tag".
	Ref string `json:"ref"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// Results of an install attempt (Report.Result).
const (
	// ResultInstalled: the target was loaded (and passed its health check).
	ResultInstalled = "installed"
	// ResultRolledBack: the target loaded but failed its hook or health
	// check, and the previous image runs again.
	ResultRolledBack = "rolled_back"
	// ResultFailed: the attempt failed (Report.Error says why); what ran
	// before still runs.
	ResultFailed = "failed"
)

// Report is the body of POST /v1/reports: one install attempt of one
// device. ID is random (128 bits, 32 lowercase hex digits) and makes the
// report idempotent: a report sent again is stored once.
type Report struct {
	ID      string `json:"id"`
	Device  string `json:"device"`
	Channel string `json:"channel"`
	Image   string `json:"image"`
	// FromDigest is the config digest the device ran before ("" none);
	// ToDigest the target's.
	FromDigest string `json:"from_config_digest,omitempty"`
	ToDigest   string `json:"to_config_digest,omitempty"`
	// Result is ResultInstalled, ResultRolledBack or ResultFailed.
	Result string `json:"result"`
	// Error is why the attempt failed or was rolled back (cut short).
	Error string `json:"error,omitempty"`
	// Bytes is how many delta bytes were downloaded.
	Bytes        int64     `json:"bytes_downloaded"`
	DurationMS   int64     `json:"duration_ms"`
	AgentVersion string    `json:"agent_version,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	Time         time.Time `json:"time"`
}

// ReportResponse answers a Report: Duplicate when its ID was stored
// before.
type ReportResponse struct {
	ID        string `json:"id"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// DevicesResponse is the body of GET /v1/devices: one page of the
// inventory, devices sorted by ID. Next, when set, is the "after" query
// parameter of the following page.
type DevicesResponse struct {
	Devices []Device `json:"devices"`
	Next    string   `json:"next,omitempty"`
}

// Device is one device of the inventory, with a row per logical image.
type Device struct {
	ID     string        `json:"id"`
	Images []DeviceImage `json:"images"`
}

// DeviceImage is what the server knows about one image of one device.
type DeviceImage struct {
	Channel string `json:"channel"`
	Image   string `json:"image"`
	// ConfigDigest is what the device ran at its last check-in.
	ConfigDigest string `json:"config_digest,omitempty"`
	// LastSeen is the last check-in (zero: none yet, only a report).
	LastSeen     time.Time `json:"last_seen,omitzero"`
	AgentVersion string    `json:"agent_version,omitempty"`
	Platform     string    `json:"platform,omitempty"`
	// Labels are the ones the device sent with its last check-in.
	Labels     map[string]string `json:"labels,omitempty"`
	LastReport *LastReport       `json:"last_report,omitempty"`
}

// LastReport is the newest install report of a device's image.
type LastReport struct {
	ID       string    `json:"id"`
	Result   string    `json:"result"`
	ToDigest string    `json:"to_config_digest,omitempty"`
	Error    string    `json:"error,omitempty"`
	Time     time.Time `json:"time"`
}

// PathRollouts is the prefix of the staged-rollout routes (issue 13), for
// the admin (the logic is in package transport/server/rollout):
//
//	POST   /v1/rollouts/                        RolloutRequest -> 201 Rollout
//	GET    /v1/rollouts/?channel=&image=&status= -> RolloutsResponse
//	GET    /v1/rollouts/{id}                    -> Rollout
//	POST   /v1/rollouts/{id}/pause              RolloutPauseRequest (optional) -> Rollout
//	POST   /v1/rollouts/{id}/resume|abort|skip  -> Rollout
//	PUT    /v1/rollouts/{id}/pins/{device}      RolloutPin -> Rollout
//	DELETE /v1/rollouts/{id}/pins/{device}      -> Rollout
const PathRollouts = "/v1/rollouts/"

// RolloutsResponse is the body of GET /v1/rollouts/: newest first, at
// most 100.
type RolloutsResponse struct {
	Rollouts []Rollout `json:"rollouts"`
}

// RolloutPauseRequest is the optional body of POST /v1/rollouts/{id}/pause.
type RolloutPauseRequest struct {
	Reason string `json:"reason,omitempty"`
}

// RolloutPin is the body of PUT /v1/rollouts/{id}/pins/{device}: the
// config digest (published on the rollout's track) the device is to run
// whatever the rollout says, while the rollout governs the track.
type RolloutPin struct {
	ConfigDigest string `json:"config_digest"`
}

// RolloutRequest starts a staged rollout of a target on (Channel, Image).
// A device's labels, which group waves select on, come from its check-ins.
type RolloutRequest struct {
	Channel string `json:"channel"`
	Image   string `json:"image"`
	// Ref is an image reference to publish (as PublishRequest.Ref) and
	// roll out; or ConfigDigest names an image already published on the
	// track. Exactly one of the two.
	Ref          string `json:"ref,omitempty"`
	ConfigDigest string `json:"config_digest,omitempty"`
	// Waves is the plan in the CLI syntax, e.g. "1%,10%,50%,100%" or
	// "group=canary,25%,100%"; or Plan lists the waves. Exactly one of
	// the two. The last wave is 100%.
	Waves string        `json:"waves,omitempty"`
	Plan  []RolloutWave `json:"plan,omitempty"`
	// SuccessThreshold is the fraction of a wave's devices that must have
	// installed the target before the next wave starts (0: 0.9).
	SuccessThreshold float64 `json:"success_threshold,omitempty"`
	// ErrorThreshold is the fraction of a wave's devices rolled back or
	// failed above which the rollout pauses (0: 0.05).
	ErrorThreshold float64 `json:"error_threshold,omitempty"`
	// MinDevices is the least number of devices a percentage wave is
	// judged on (0: 5).
	MinDevices int `json:"min_devices,omitempty"`
	// Soak is how long a successful wave waits before the next one starts,
	// a Go duration such as "30m" ("" or "0": none).
	Soak string `json:"soak,omitempty"`
}

// RolloutWave is one wave of a plan: a cumulative percentage of the
// devices, or the devices whose labels include all of Labels.
type RolloutWave struct {
	Percent float64           `json:"percent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Rollout is a staged rollout as the server shows it.
type Rollout struct {
	ID      string `json:"id"`
	Channel string `json:"channel"`
	Image   string `json:"image"`
	// Target is the config digest rolled out; Previous is what devices
	// outside the started waves are offered ("" if nothing).
	Target   string `json:"target"`
	Previous string `json:"previous,omitempty"`
	// Status is "running", "paused", "aborted" or "completed".
	Status string `json:"status"`
	// Wave is the index, from 0, of the current wave in Waves.
	Wave        int    `json:"wave"`
	PauseReason string `json:"pause_reason,omitempty"`
	// Plan is the waves in the CLI syntax ("1%,10%,100%").
	Plan             string              `json:"plan"`
	Waves            []RolloutWaveStatus `json:"waves"`
	SuccessThreshold float64             `json:"success_threshold"`
	ErrorThreshold   float64             `json:"error_threshold"`
	MinDevices       int                 `json:"min_devices"`
	Soak             string              `json:"soak,omitempty"`
	// Pins maps device IDs to the config digest an admin pinned them to.
	Pins map[string]string `json:"pins,omitempty"`
	// Created is an RFC 3339 time in UTC (a string, so that this file
	// needs no import).
	Created string `json:"created"`
	// Rev counts the rollout's changes.
	Rev int64 `json:"rev"`
}

// RolloutWaveStatus is one wave of a Rollout and its devices as last
// counted. Counts are cumulative: they include the earlier waves' devices.
type RolloutWaveStatus struct {
	// Wave is the wave in the CLI syntax: "10%" or "group=canary".
	Wave string `json:"wave"`
	// Started is when the wave started ("" not yet); Succeeded is when it
	// reached the success threshold (its soak runs from then). RFC 3339
	// times in UTC.
	Started    string `json:"started,omitempty"`
	Succeeded  string `json:"succeeded,omitempty"`
	Devices    int    `json:"devices"`
	Installed  int    `json:"installed"`
	RolledBack int    `json:"rolled_back"`
	Failed     int    `json:"failed"`
}
