// Package server is skiff's rollout server: devices check in with the
// image they run and their channel, and get the target image and where to
// fetch the delta to it. Deltas are computed on demand, once per (base,
// target) pair, and kept content-addressed on disk.
//
// # API
//
// The JSON types are in package transport/api. Every /v1 route needs
// "Authorization: Bearer TOKEN".
//
//	POST /v1/check                     device  api.CheckRequest -> api.CheckResponse
//	GET  /v1/deltas/sha256:<hex>       device  the delta file (Range, ETag, If-None-Match)
//	PUT  /v1/targets/{channel}/{image} admin   api.PublishRequest -> api.Target
//	POST /v1/notifications             admin   distribution's notification envelope
//	POST /v1/reports                   device  api.Report -> api.ReportResponse
//	GET  /v1/devices                   admin   the inventory: api.DevicesResponse
//	POST /v1/rollouts/                 admin   api.RolloutRequest -> 201 api.Rollout
//	GET  /v1/rollouts/                 admin   ?channel=&image=&status= -> api.RolloutsResponse
//	GET  /v1/rollouts/{id}             admin   api.Rollout
//	POST /v1/rollouts/{id}/pause       admin   api.RolloutPauseRequest (optional) -> api.Rollout
//	POST /v1/rollouts/{id}/resume      admin   -> api.Rollout (also abort, skip)
//	PUT  /v1/rollouts/{id}/pins/{dev}  admin   api.RolloutPin -> api.Rollout (DELETE unpins)
//	GET  /healthz                      none    "ok"
//	GET  /metrics                      none    Prometheus text format
//
// A check is answered, in this order:
//
//   - 404 if nothing is published for (channel, image);
//   - the target is the track's, unless a staged rollout governs the track
//     (see Staged rollouts): then it is the image the rollout offers this
//     device, and everything below is about that image;
//   - Update=false if the device's config digest is the target's;
//   - Update=true, Delta=nil if the device's image is no base of this
//     target: published neither on this (channel, image) nor, first,
//     before the target on another channel — a newer image of another
//     channel never becomes a downgrade, unless an admin publishes the
//     older image on this track —, or it runs nothing, or its diff_ids
//     differ from those of the published image with that config digest:
//     pull the target whole (a check naming a config digest without
//     diff_ids is 400);
//   - Update=true with Delta if the delta is in the cache;
//   - Update=true, Delta=nil, Error if computing it failed within the
//     last FailureTTL (then it is tried again);
//   - otherwise Pending=true, RetryAfter (also a Retry-After header), and the
//     computation starts in the background.
//
// Target.Ref is given to devices only for a registry reference, which a
// device can pull; the server's own references (an OCI layout's path, an
// engine's name) stay on the server, as do the causes of a failed
// computation (the answer's Error names its class, the log the rest).
// Target.Serial numbers the publishes of a track (anti-rollback).
//
// Delta.URL is "/v1/deltas/<digest>" on this server (or PublicURL plus that
// path). The file is served with http.ServeContent: Range and If-Range for
// resuming, ETag "<digest>", and Cache-Control immutable, since the bytes
// behind a digest never change. Digests other than sha256:<64 lowercase
// hex> are refused with 400 before touching the disk.
//
// Errors are a non-2xx status with an api.Error body naming the problem:
// 400 malformed request, 401 missing or unknown token, 403 device token on
// an admin route or a scoped device token outside its scope, 404 nothing
// published / no such delta or rollout, 409 a change a rollout's status
// does not allow (or a publish of a track a rollout governs), 422 the
// published reference names no image, 501 a fleet database that keeps no
// rollouts.
//
// # Auth
//
// Admin tokens may do everything; device tokens may check in and download
// deltas, and Config.DeviceScopes may restrict one to some (channel, image)
// pairs ("stable/web", "beta/*"; skiff serve reads them after the token on
// its line of --device-token-file). Presented tokens are hashed with sha256 and compared with every
// configured token by crypto/subtle, so timing reveals neither length nor
// prefix. A role without tokens is refused to everyone: there is no open
// mode. /healthz and /metrics need no token; expose them to the monitoring
// network only.
//
// # State and cache
//
// StateDir/state.json (written atomically: temp file, fsync, rename, fsync
// of the directory) holds, per channel and image, the current target and
// every image ever published there: the known bases. Each image is kept
// with its config and manifest digests, diff_ids and a pinned reference:
// registry images by manifest digest (docker://HOST/REPO@sha256:...), so a
// tag that moves on does not change what a base is; engine images by image
// ID. Other transports (oci:, archives) are opened by the reference as
// published and refused as base or target if they no longer hold the
// published config digest. Republishing the current image changes nothing.
//
// CacheDir holds deltas/sha256/<hex> (the delta files), pairs/<base
// hex>_<target hex>.json (which delta turns base into target) and tmp/.
// Every file appears by rename, complete, so a crash never leaves half a
// delta under its name. A computation opens both images, runs delta.Diff
// (DefaultOptions unless Config.DiffOptions says otherwise; Manifest set for
// registry and OCI targets, as `skiff diff --manifest auto` does) into a
// temporary file while hashing it, renames it to its digest and writes the
// pair index. One computation per pair runs at a time (singleflight on the
// pair), and at most MaxConcurrentDiffs (default 2) pairs at once.
//
// A check-in always answers with the current target, so a delta to an
// image that has since been superseded is only still wanted by a device
// that was downloading it. Such a delta is evicted once nobody has fetched
// it for Config.CacheTTL (default 7 days, `skiff serve --cache-ttl`; serving
// records the time as the file's access time): its pair index, then the
// file; a download in progress reads on to its end. Deltas to current
// targets are kept however old; delta files no index names (a server
// killed between the two writes, deltas signed by retired keys) go once
// older than the TTL. The cache is swept at start and hourly;
// skiff_server_cache_evicted_total counts the files removed.
//
// # Inventory and reports
//
// Every valid check-in that names its device upserts the inventory row of
// (device, image): channel, running config digest, time, and the optional
// agent_version and platform (older agents send neither). The write comes
// after the answer is flushed, so a check-in never waits for the
// database; a failed write is logged, and the check-in answered anyway.
// POST /v1/reports stores an install report (installed, rolled_back,
// failed) once per report ID — a device re-sending after a lost answer
// gets Duplicate=true — and makes it the row's last report unless a newer
// one is there. A scoped device token may report only for its pairs (403
// otherwise), as for checks; bodies are bounded as for checks. Device
// names are whatever the devices say: a device token is not bound to one
// device.
//
// GET /v1/devices lists the inventory by device ID, each device with its
// rows; query parameters channel, image, config_digest, result (of the
// last report) and stale (a duration: rows whose last check-in is older,
// or that never checked in) select rows, limit (default 100, at most
// 1000) and after (the previous page's next) page. Unknown parameters are
// 400.
//
// Both live in Config.FleetDB (package fleetdb), never in state.json:
// "sqlite:PATH" (the default is sqlite:StateDir/fleet.db) for one server,
// or "postgres://…" for a PostgreSQL database several servers share.
//
// # Staged rollouts
//
// POST /v1/rollouts/ opens the request's Ref (or takes ConfigDigest from
// the track's history) and stages it: it enters the track's history with
// the track's next serial, as a publish would give it, but the track's
// Current stays the previous target. The rollout (package rollout's State,
// JSON in the fleet database's rollouts table) then governs the track:
// each check-in's target is the history record of rollout.TargetFor(state,
// device, labels, running) — the target for the devices of the started
// waves, the previous target for the others, a pin for a pinned device —
// and the delta offered is from the device's base to that record. Labels
// come with the check-in (api.CheckRequest.Labels) and are kept in the
// inventory for Tally. The track in state.json names the rollout that
// governs it (from the staging to the settling), so a check-in of a track
// without one reads no database; another server sees a new rollout when
// it re-reads state.json (at most a second later) and offers the previous
// target until then. The track's Current is what devices get when no
// rollout governs it.
//
// The rollout is judged (Widen, Tally over fleetdb's TrackDevices, Advance)
// after new reports of its track (reports arriving while an advance of the
// track runs make it run once more instead of each running its own) and
// every Config.RolloutTick, and
// written back with compare-and-set on its Rev; a lost race is dropped for
// an automatic advance and retried for an admin's change. A final rollout
// is settled: its outcome is written to state.json — completed: Current
// becomes the target, with the serial it was staged with; aborted: the
// previous target is published again with a serial above the target's, so
// agents that installed the target accept the older image (their
// anti-rollback refuses only lower serials) — and then the rollout is
// marked settled and governs nothing any more: the track is plain again,
// and pins end with it. Until settled (a server that stopped between the
// two writes), the final rollout still governs, and every tick retries the
// settling, which is idempotent. While a rollout governs a track, a plain
// publish of it (PUT /v1/targets, a notification) is 409 and a second
// rollout is refused; the rollouts table also holds at most one running or
// paused rollout per track (a partial unique index).
//
// Several servers agree: buckets are a fixed hash of the rollout and
// device IDs, and the state is in the shared database with
// compare-and-set. A track must have a target before a rollout (404
// otherwise); rolling out the current target is 400. Events (started,
// wave started, soaking, paused with the numbers, resumed, skipped,
// aborted, completed, pins) are logged and counted.
//
// # Scaling out
//
// A server keeps nothing but StateDir, CacheDir and its fleet database,
// so several can run behind a load balancer. Published targets and
// deltas are shared in one of two ways:
//
//   - Shared volume: all instances use the same StateDir and CacheDir. An
//     instance re-reads state.json when it changes (checked at most once a
//     second, and always before a publish), and sees the deltas others
//     computed. Two instances may compute the same pair at the same moment;
//     they write the same bytes under the same name, so that is only
//     wasted work. Publishes on several instances at once serialize on a
//     flock of StateDir/state.lock: none is lost.
//   - Per-instance directories: publish to every instance (publishing is
//     idempotent). Each instance computes its own copy of a delta, and
//     because delta.Diff is deterministic (same images, same options, same
//     bytes) every instance serves the same digest at the same URL: a
//     device may resume a download on another instance. Keep DiffOptions
//     identical on all instances.
//
// The inventory and the reports are shared through the database, not the
// volume: give every instance the same Config.FleetDB "postgres://…"
// URL. A check-in or report may reach any instance, and GET /v1/devices
// on any of them lists them all; a re-sent report is stored once
// whichever instance gets it. SQLite is one server's: instances that
// each open their own file each list only the devices that reached them,
// and one SQLite file on a shared network volume is not supported (its
// locks do not work there). Instances starting at once on an empty or
// older database migrate it once between them. What the database does
// not hold: the published targets and their history (state.json), the
// deltas (CacheDir), and the tokens and keys (each instance's flags).
//
// Put a CDN or cache in front of /v1/deltas/ freely (Config.PublicURL):
// responses are immutable.
//
// # Precompute on push
//
// distribution (the CNCF registry) can notify the server of pushes. A push
// event whose repository and tag are those of a published
// docker://HOST/REPO:TAG republishes that target and computes the deltas to
// it from every known base in the background, so devices never see Pending.
// The host is not compared: registries see themselves under other names
// than the server uses, and a false match only costs a manifest fetch that
// changes nothing. In the registry's config.yml:
//
//	notifications:
//	  events:
//	    includereferences: true
//	  endpoints:
//	    - name: skiff
//	      url: http://skiff-server:8080/v1/notifications
//	      headers:
//	        Authorization: [Bearer ADMIN_TOKEN]
//	      timeout: 5s
//	      threshold: 5
//	      backoff: 10s
//	      ignore:
//	        actions: [pull, delete]
//
// # Metrics
//
// Each Server has its own Prometheus registry: skiff_server_check_requests_total{result},
// skiff_server_delta_computations_total{result}, skiff_server_delta_computation_seconds,
// skiff_server_delta_bytes, skiff_server_delta_computations_in_progress,
// skiff_server_delta_served_bytes_total, skiff_server_publishes_total{result},
// skiff_server_notification_events_total{outcome},
// skiff_server_reports_total{result} (reports stored, a re-sent one once),
// skiff_server_http_request_duration_seconds{route,code}, the staged
// rollouts' skiff_rollout_devices{channel,image,rollout,state} (target,
// previous, pending, rolled_back, failed), skiff_rollout_wave (from 1),
// skiff_rollout_status{…,status} (0/1) and skiff_rollout_events_total{event}
// — series for a track's running or paused rollout and its last finished
// one only —, plus the Go and process collectors.
package server
