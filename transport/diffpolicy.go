package transport

import "github.com/skiff-dev/skiff/layerfs"

// CarriesManifest is the `--manifest auto` policy that skiff diff and the
// rollout server share: a delta to target carries the target's registry
// manifest and gzip recipes (so apply reproduces the manifest digest) when
// the target came with a real manifest — a registry, an OCI layout or
// archive. A docker-archive's manifest is made up by the reader, and an
// engine's is not the registry's, so reproducing them is pointless.
func CarriesManifest(target layerfs.Ref) bool {
	switch target.Transport {
	case layerfs.TransportOCI, layerfs.TransportOCIArchive, layerfs.TransportRegistry:
		return true
	}
	return false
}
