package api

// Route paths of the server API.
const (
	PathCheck         = "/v1/check"
	PathDeltas        = "/v1/deltas/"  // + digest, e.g. "sha256:<hex>"
	PathTargets       = "/v1/targets/" // + channel + "/" + image
	PathNotifications = "/v1/notifications"
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
