// Package transport moves skiff deltas: a single-file archive, an OCI
// artifact in a registry, a resumable HTTP(S) client and the rollout server.
package transport
