// Package agent is the on-device side of skiff: state (what runs, last
// check, last update), update detection, policy, fetch, apply, verify, load
// into the engine and cleanup.
package agent
