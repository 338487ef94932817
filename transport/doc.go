// Package transport moves skiff deltas to devices: as OCI artifacts in any
// registry, and over plain HTTP(S) with a resumable client. The rollout
// server is transport/server; its JSON types are transport/api.
//
// # The artifact
//
// Push stores a delta file (delta/FORMAT.md) as an OCI image manifest:
//
//	artifactType  application/vnd.skiff.delta.v1
//	config        application/vnd.oci.empty.v1+json, the 2 bytes "{}"
//	layers[0]     application/vnd.skiff.delta.header.v1: the file's first
//	              Header.BodyOffset bytes (magic, header, signature)
//	layers[1..n]  application/vnd.skiff.delta.blob.v1: blob i-1 of the
//	              delta, in manifest order; its digest is Manifest.Blobs[i-1]
//	subject       the target image's manifest (when known)
//	annotations   dev.skiff.delta.base.config-digest, ...target.config-digest
//
// Concatenating the layers gives back the delta file byte for byte. Since
// every blob is its own registry blob, a device that lost its link fetches
// only the blobs it lacks (Pull keeps verified blobs, and partial ones, by
// digest in a cache directory and continues partial ones with Range), and
// patches shared by two deltas are stored once. The subject makes deltas
// discoverable from the target: FindDeltas asks the referrers API, or reads
// the sha256-<hex> fallback tag on registries without it (distribution 2.x).
// The base annotation lets a device pick the delta for the image it runs.
//
// Pull checks the artifactType and media types, fetches the header first
// and compares its blob list with the layers before fetching anything
// else, verifies each blob's digest, and writes the destination through a
// temporary file and a rename.
//
// # Fleets
//
// Deltas are static and content-addressed, so the usual distribution
// machinery carries them unchanged: push them to Harbor, a cloud registry
// (ECR, GCR/Artifact Registry, ACR, all OCI 1.1 artifact stores) or a
// pull-through mirror near the devices, and let the registry's replication
// copy them between regions and onto site caches. For an HTTP CDN, serve
// the delta file itself (the rollout server's /v1/deltas/{digest}, or any
// object store) with Range support; devices use Fetch, which resumes from
// dst+".part" after a cut, backs off with full jitter, limits its rate,
// and verifies digest and size before the file appears. A URL that names
// the digest can be cached forever.
package transport
