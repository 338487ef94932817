// Package agent is the on-device side of skiff: state (what runs, last
// check, last update), update detection, policy, fetch, apply, verify, load
// into the engine and cleanup.
//
// An Agent is made from a YAML Config (LoadConfig). For each configured
// image it asks the source whether an update exists (Check: a rollout
// server's POST /v1/check, or a registry HEAD compared with the running
// manifest digest, mirror names normalized), fetches the delta (a resumable
// HTTP download or a registry artifact), applies it to the running image
// with delta.Apply, loads the verified result into the Engine (Docker,
// containerd or an OCI layout) under the configured ref, checks the image
// ID, runs the hook and prunes replaced images beyond `keep`. Failures
// before the load leave the running image untouched. Run repeats this on
// each image's schedule (interval, jitter, exponential backoff) and keeps
// the state in state_dir/state.json. See README.md in this directory.
package agent
