package delta

import (
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/format"
)

// keepOf is base.keep (version 6): the base payloads applying m reads —
// the bases of its ops and the files its rebuilt layers take from the
// base — each marked at its first place in the base layers, so that the
// device stores those and only hashes the rest (FORMAT.md, "Kept base
// payloads"). It also returns their total size, for limits.scratch. When
// every payload is needed, keep is nil: the device keeps them all.
func keepOf(m *Manifest, plans []*planned, baseInfo, targetInfo []*layerInfo) (keep []string, size int64) {
	inBase := map[digest.Digest]bool{}
	for _, b := range baseInfo {
		for _, f := range b.files {
			inBase[f.Payload] = true
		}
	}
	need := map[digest.Digest]bool{}
	for _, p := range plans {
		if p.op.Base >= 0 {
			need[p.op.BaseDigest] = true
		}
	}
	for i, l := range m.Layers {
		if l.BaseLayer != nil {
			continue
		}
		for _, f := range targetInfo[i].files {
			if inBase[f.Payload] {
				need[f.Payload] = true
			}
		}
	}
	all := true
	kept := map[digest.Digest]bool{}
	for _, b := range baseInfo {
		bits := make([]bool, len(b.files))
		for k, f := range b.files {
			switch {
			case !need[f.Payload]:
				all = false
			case !kept[f.Payload]:
				kept[f.Payload], bits[k] = true, true
				size += f.DataSize
			}
		}
		keep = append(keep, format.EncodeKeep(bits))
	}
	if all {
		return nil, size
	}
	return keep, size
}

// scratchKept is limits.scratch of a version 6 delta (FORMAT.md,
// "limits"): the larger of what the body phase holds — the base's
// skeletons, the kept payloads, the payloads the ops make, a stream's
// spilled regions, the file being patched — and what the rebuild holds,
// where each payload leaves the store after the last layer that reads it
// is written; target skeletons and, with a distribution, blobs on top.
func scratchKept(m *Manifest, plans []*planned, baseInfo, targetInfo []*layerInfo, kept int64) int64 {
	var skeletons int64
	for _, b := range baseInfo {
		if st, err := os.Stat(b.skeleton); err == nil {
			skeletons += st.Size()
		}
	}
	body := kept
	for _, p := range plans {
		body += p.op.Size
	}
	for _, s := range m.Streams {
		for i, r := range s.Regions {
			if i != format.RegionLiterals {
				body += r
			}
		}
	}
	body += 3 * m.Limits.MaxExpanded
	// The rebuild: the store holds every payload a rebuilt layer reads;
	// a layer's tar grows by its headers (counted up front) and payloads.
	refs := map[digest.Digest]int{}
	var store, tars, blobs int64
	for i, l := range m.Layers {
		if l.Skeleton == nil {
			continue
		}
		skeletons += 2 * m.Limits.MaxSkeleton // patched and filled
		if m.Target.Distribution != nil {
			blobs += l.Size // its compressed blob, at most as big
		}
		for _, f := range targetInfo[i].files {
			if refs[f.Payload]++; refs[f.Payload] == 1 {
				store += f.DataSize
			}
		}
	}
	peak := store
	for i, l := range m.Layers {
		if l.Skeleton == nil {
			continue
		}
		var payloads int64
		for _, f := range targetInfo[i].files {
			payloads += f.DataSize
		}
		tars += l.Size - payloads
		for _, f := range targetInfo[i].files {
			tars += f.DataSize
			peak = max(peak, store+tars)
			if refs[f.Payload]--; refs[f.Payload] == 0 {
				store -= f.DataSize
			}
		}
		peak = max(peak, store+tars)
	}
	return skeletons + max(body, peak, tars+blobs)
}
