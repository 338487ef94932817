package format

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/bits"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/gzrecipe"
)

// Validate checks the manifest's internal consistency and bounds, so that
// nothing later indexes out of range or allocates what was not declared.
// ReadHeader calls it; writers call it on what they are about to write.
func (m *Manifest) Validate() error {
	for _, c := range []struct {
		what  string
		check func(*Manifest) error
	}{
		{"identity", (*Manifest).checkIdentity},
		{"layers", (*Manifest).checkLayers},
		{"blobs", (*Manifest).checkBlobs},
		{"distribution", (*Manifest).checkDistribution},
	} {
		if err := c.check(m); err != nil {
			return err
		}
	}
	return nil
}

// bad is an ErrBadDelta saying what.
func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadDelta, fmt.Sprintf(format, args...))
}

// checkIdentity checks the version, the base and target identities and
// the window.
func (m *Manifest) checkIdentity() error {
	if m.Version < MinVersion || m.Version > MaxVersion {
		return bad("manifest version %d, this skiff reads %d to %d", m.Version, MinVersion, MaxVersion)
	}
	if err := m.Base.ConfigDigest.Validate(); err != nil {
		return bad("base config digest: %v", err)
	}
	if m.Base.Payloads < 0 {
		return bad("base payloads %d", m.Base.Payloads)
	}
	if digest.FromBytes(m.Target.Config) != m.Target.ConfigDigest {
		return fmt.Errorf("%w: target config does not hash to %s", ErrCorrupt, m.Target.ConfigDigest)
	}
	if len(m.Layers) != len(m.Target.DiffIDs) {
		return bad("%d layers for %d target diff_ids", len(m.Layers), len(m.Target.DiffIDs))
	}
	if m.Limits.MaxWindow < 0 || m.Limits.MaxWindow > MaxWindowLimit {
		return fmt.Errorf("%w: zstd window of %d bytes", ErrLimit, m.Limits.MaxWindow)
	}
	for _, d := range append(append([]digest.Digest{}, m.Base.DiffIDs...), m.Target.DiffIDs...) {
		if err := d.Validate(); err != nil {
			return bad("diff_id %q: %v", d, err)
		}
	}
	if err := m.checkKeep(); err != nil {
		return err
	}
	if len(m.Target.Names) > 0 && m.Version < 5 {
		return bad("target names need manifest version 5")
	}
	if len(m.Target.Names) > maxNames {
		return bad("%d target names, at most %d", len(m.Target.Names), maxNames)
	}
	for _, n := range m.Target.Names {
		if _, err := name.NewTag(n); err != nil || len(n) > 255 {
			return bad("target name %q: not a REPO:TAG", n)
		}
	}
	return nil
}

// maxNames bounds target.names.
const maxNames = 64

// checkLayers checks each target layer: its identity, how it is made, and
// that the sizes add up to the declared output.
func (m *Manifest) checkLayers() error {
	var total int64
	for i, l := range m.Layers {
		if l.DiffID != m.Target.DiffIDs[i] {
			return bad("layer %d diff_id %s is not target diff_id %s", i, l.DiffID, m.Target.DiffIDs[i])
		}
		if l.Size < 0 {
			return bad("layer %d has negative size", i)
		}
		total += l.Size
		switch {
		case l.BaseLayer != nil && l.Skeleton == nil:
			if *l.BaseLayer < 0 || *l.BaseLayer >= len(m.Base.DiffIDs) || m.Base.DiffIDs[*l.BaseLayer] != l.DiffID {
				return bad("layer %d: base layer %d is not the same layer", i, *l.BaseLayer)
			}
		case l.Skeleton != nil && l.BaseLayer == nil:
			if *l.Skeleton < 0 || *l.Skeleton >= len(m.Blobs) {
				return bad("layer %d: skeleton blob %d out of range", i, *l.Skeleton)
			}
			if l.DictLayer < -1 || l.DictLayer >= len(m.Base.DiffIDs) {
				return bad("layer %d: dictionary layer %d out of range", i, l.DictLayer)
			}
			if (l.SkeletonDelta || l.SkeletonPlain) && l.DictLayer < 0 && (m.Version < 5 || !l.SkeletonDelta || !l.SkeletonPlain) {
				return bad("layer %d: a skeleton delta against no base layer needs manifest version 5 (and skeleton_delta, skeleton_plain)", i)
			}
			switch {
			case l.SkeletonCodec == "":
			case l.SkeletonCodec != CodecBrotli || !l.SkeletonDelta || !l.SkeletonPlain:
				return bad("layer %d: skeleton codec %q (brotli codes a plain skeleton delta)", i, l.SkeletonCodec)
			case m.Version < 3:
				return bad("layer %d: a brotli skeleton needs manifest version 3", i)
			}
		default:
			return bad("layer %d needs exactly one of base_layer and skeleton", i)
		}
	}
	if m.Limits.Scratch < 0 || (m.Limits.Scratch > 0 && m.Version < 5) {
		return bad("scratch %d (a version 5 limit)", m.Limits.Scratch)
	}
	if m.Limits.MaxExpanded < m.Limits.MaxPayload || m.Limits.MaxPayload < 0 {
		return bad("max_expanded %d below max_payload %d", m.Limits.MaxExpanded, m.Limits.MaxPayload)
	}
	if total != m.Limits.TotalOutput {
		return bad("layers add up to %d bytes, limits say %d", total, m.Limits.TotalOutput)
	}
	return nil
}

// checkBlobs checks the body's layout: every blob is a skeleton's, a
// stream's, the pack's or an op's, in the order FORMAT.md gives, and every
// op is one this version can express.
func (m *Manifest) checkBlobs() error {
	for i, b := range m.Blobs {
		if err := b.Digest.Validate(); err != nil || b.Size < 0 {
			return bad("blob %d: digest %q size %d", i, b.Digest, b.Size)
		}
	}
	// Blob order: skeletons in layer order, the pack, then op blobs in
	// order of first use; only zstd-dict ops may share a blob, and only
	// when they are consecutive.
	next := 0
	for i, l := range m.Layers {
		if l.Skeleton != nil {
			if *l.Skeleton != next {
				return bad("layer %d: skeleton blob %d out of order (expected %d)", i, *l.Skeleton, next)
			}
			next++
		}
	}
	for k, op := range m.Ops {
		switch op.Encoder {
		case EncZstd, EncZstdDict, EncBsdiff, EncBsdiffX86:
		default:
			return bad("op %d: unknown encoder %q", k, op.Encoder)
		}
	}
	pack := -1
	inStream, err := m.validateStreams(&next)
	if err != nil {
		return err
	}
	for _, op := range m.Ops {
		if op.Encoder == EncZstd && m.Version < 3 {
			pack, next = next, next+1
			break
		}
	}
	groupBlob := map[int]bool{} // blobs of zstd-dict groups
	for k, op := range m.Ops {
		if g := op.Gzip; g != nil {
			switch {
			case m.Version < 2:
				return bad("op %d: gzip ops need manifest version 2", k)
			case g.Level < 1 || g.Level > 9 || len(g.Header) < 10 || len(g.Header) > 64<<10:
				return bad("op %d: gzip level %d with a %d-byte header", k, g.Level, len(g.Header))
			case g.Size < 0 || g.BaseSize < 0:
				return bad("op %d: gzip sizes %d and %d", k, g.Size, g.BaseSize)
			case g.Size > m.Limits.MaxExpanded || g.BaseSize > m.Limits.MaxExpanded:
				return fmt.Errorf("%w: op %d: gzip content of %d bytes (base %d) over the declared %d",
					ErrLimit, k, g.Size, g.BaseSize, m.Limits.MaxExpanded)
			case g.BaseSize > 0 && op.Encoder == EncZstd:
				return bad("op %d: a plain zstd op has no base to decompress", k)
			}
		}
		if inStream[k] {
			if op.Encoder == EncZstd && op.Base != -1 {
				return bad("op %d: a plain zstd op has no base", k)
			}
			if op.NewExecutable() {
				if m.Version < 4 {
					return bad("op %d: a bsdiff-x86 op without a base needs manifest version 4", k)
				}
				if op.Gzip != nil && op.Gzip.BaseSize != 0 {
					return bad("op %d: a bsdiff-x86 op without a base has no base content to decompress", k)
				}
			} else if op.Encoder != EncZstd && (op.Base < 0 || op.Base >= m.Base.Payloads) {
				return bad("op %d: base payload %d out of range (%d)", k, op.Base, m.Base.Payloads)
			}
			if op.Coder != "" {
				return bad("op %d: coder %q in a stream (the stream names its codec)", k, op.Coder)
			}
			continue
		}
		if m.Version >= 3 && op.Encoder != EncZstdDict {
			return bad("op %d: a %s op belongs to a stream in manifest version 3", k, op.Encoder)
		}
		switch op.Encoder {
		case EncZstd:
			if op.Blob != pack || op.Base != -1 {
				return bad("op %d: plain zstd ops use the pack (blob %d) and no base", k, pack)
			}
			continue
		case EncZstdDict, EncBsdiff, EncBsdiffX86:
			if op.Coder != CoderZstd && (op.Coder != CoderBrotli || op.Encoder == EncZstdDict) {
				return bad("op %d: coder %q for %s", k, op.Coder, op.Encoder)
			}
			if op.Base < 0 || op.Base >= m.Base.Payloads {
				return bad("op %d: base payload %d out of range (%d)", k, op.Base, m.Base.Payloads)
			}
		default:
			return bad("op %d: unknown encoder %q", k, op.Encoder)
		}
		switch {
		case op.Blob < 0 || op.Blob >= len(m.Blobs):
			return bad("op %d: blob %d out of range (%d blobs)", k, op.Blob, len(m.Blobs))
		case op.Blob == next:
			groupBlob[op.Blob] = op.Encoder == EncZstdDict
			next++
		case op.Encoder == EncZstdDict && groupBlob[op.Blob]:
			// a further member of a dictionary group
		case op.Blob < next:
			return bad("op %d: blob %d is already a skeleton's, the pack's or another op's (only zstd-dict ops share one)", k, op.Blob)
		default:
			return bad("op %d: blob %d out of order (expected %d)", k, op.Blob, next)
		}
	}
	if next != len(m.Blobs) {
		return bad("%d blobs, skeletons and ops use %d", len(m.Blobs), next)
	}
	return nil
}

// validateStreams checks the solid streams (version 3), whose blobs follow
// the skeletons' in stream order from *next on, and returns which ops are
// stream members.
func (m *Manifest) validateStreams(next *int) (map[int]bool, error) {
	if len(m.Streams) > 0 && m.Version < 3 {
		return nil, bad("streams need manifest version 3")
	}
	if m.Limits.MaxControls < 0 {
		return nil, bad("max_controls %d", m.Limits.MaxControls)
	}
	member := map[int]bool{}
	for s, st := range m.Streams {
		if st.Blob != *next {
			return nil, bad("stream %d: blob %d out of order (expected %d)", s, st.Blob, *next)
		}
		if st.Blob >= len(m.Blobs) {
			return nil, bad("stream %d: blob %d out of range (%d blobs)", s, st.Blob, len(m.Blobs))
		}
		*next++
		switch {
		case st.Codec != CodecZstd && st.Codec != CodecBrotli:
			return nil, bad("stream %d: unknown codec %q", s, st.Codec)
		case st.Window > m.Limits.MaxWindow:
			return nil, fmt.Errorf("%w: stream %d: a %d-byte window over the declared %d", ErrLimit, s, st.Window, m.Limits.MaxWindow)
		case st.Codec == CodecBrotli && (st.Window < 1<<10 || st.Window > MaxBrotliWindow || st.Window&(st.Window-1) != 0):
			return nil, bad("stream %d: brotli window %d", s, st.Window)
		case st.Codec == CodecZstd && st.Window < MinWindow:
			return nil, bad("stream %d: zstd window %d", s, st.Window)
		case len(st.Ops) == 0:
			return nil, bad("stream %d has no ops", s)
		case st.Regions != nil && m.Version < 5:
			return nil, bad("stream %d: a columnar stream needs manifest version 5", s)
		case st.Regions != nil && len(st.Regions) != NumRegions:
			return nil, bad("stream %d: %d regions, a columnar stream has %d", s, len(st.Regions), NumRegions)
		}
		var spill int64
		for i, n := range st.Regions {
			if n < 0 || n > m.Limits.TotalOutput {
				return nil, bad("stream %d: region %d of %d bytes", s, i, n)
			}
			if i != RegionLiterals {
				spill += n
			}
		}
		if spill > m.Limits.TotalOutput {
			// A device writes these regions to a scratch file before it
			// rebuilds anything: never more than it rebuilds.
			return nil, fmt.Errorf("%w: stream %d: %d bytes of regions to spill, over the %d bytes of output", ErrLimit, s, spill, m.Limits.TotalOutput)
		}
		for _, k := range st.Ops {
			if k < 0 || k >= len(m.Ops) {
				return nil, bad("stream %d: op %d out of range (%d ops)", s, k, len(m.Ops))
			}
			if member[k] {
				return nil, bad("stream %d: op %d is already in a stream", s, k)
			}
			member[k] = true
			switch op := m.Ops[k]; {
			case op.Encoder != EncZstd && op.Encoder != EncBsdiff && op.Encoder != EncBsdiffX86:
				return nil, bad("stream %d: a %q op cannot be in a stream", s, op.Encoder)
			case op.Blob != st.Blob:
				return nil, bad("stream %d: op %d names blob %d, not the stream's %d", s, k, op.Blob, st.Blob)
			}
		}
	}
	return member, nil
}

// checkDistribution checks that the distribution manifest, if any, names
// the target config and the declared blobs, so the rebuilt image is
// self-consistent.
func (m *Manifest) checkDistribution() error {
	d := m.Target.Distribution
	if d == nil {
		return nil
	}
	if len(d.Layers) != len(m.Layers) {
		return bad("distribution has %d layers for %d target layers", len(d.Layers), len(m.Layers))
	}
	var mf v1.Manifest
	if err := json.Unmarshal(d.Manifest, &mf); err != nil {
		return fmt.Errorf("%w: distribution manifest: %v", ErrBadDelta, err)
	}
	if mf.Config.Digest.String() != m.Target.ConfigDigest.String() || len(mf.Layers) != len(d.Layers) {
		return fmt.Errorf("%w: distribution manifest does not name the target config and layers", ErrBadDelta)
	}
	for i, l := range mf.Layers {
		if l.Digest.String() != d.Layers[i].Digest.String() || l.Size != d.Layers[i].Size || string(l.MediaType) != d.Layers[i].MediaType {
			return fmt.Errorf("%w: distribution manifest layer %d does not match", ErrBadDelta, i)
		}
		if len(d.Layers[i].Recipe) > 0 {
			var r gzrecipe.Recipe
			if err := r.UnmarshalBinary(d.Layers[i].Recipe); err != nil {
				return fmt.Errorf("%w: layer %d recipe: %v", ErrBadDelta, i, err)
			}
		}
	}
	return nil
}

// checkKeep checks base.keep's shape; whether each bit set stands for a
// payload of its layer is only known once the layer is taken apart
// (KeepBits).
func (m *Manifest) checkKeep() error {
	if len(m.Base.Keep) == 0 {
		return nil
	}
	if m.Version < 6 {
		return bad("base keep needs manifest version 6")
	}
	if len(m.Base.Keep) != len(m.Base.DiffIDs) {
		return bad("base keep has %d entries for %d base layers", len(m.Base.Keep), len(m.Base.DiffIDs))
	}
	for i := range m.Base.Keep {
		if _, err := m.KeepBits(i); err != nil {
			return err
		}
	}
	return nil
}

// KeepBits decodes base.keep for base layer i; nil means keep everything.
func (m *Manifest) KeepBits(i int) (KeepSet, error) {
	if len(m.Base.Keep) == 0 {
		return nil, nil
	}
	b, err := base64.RawStdEncoding.Strict().DecodeString(m.Base.Keep[i])
	if err != nil {
		return nil, bad("base keep %d: %v", i, err)
	}
	if len(b) > 0 && b[len(b)-1] == 0 {
		return nil, bad("base keep %d ends in a zero byte", i)
	}
	return KeepSet(b), nil
}

// KeepSet is a decoded base.keep entry.
type KeepSet []byte

// Has reports whether payload k is kept.
func (s KeepSet) Has(k int) bool {
	return k/8 < len(s) && s[k/8]&(1<<(k%8)) != 0
}

// Len is one more than the highest payload kept, 0 for none.
func (s KeepSet) Len() int {
	if len(s) == 0 {
		return 0
	}
	return 8*(len(s)-1) + bits.Len8(s[len(s)-1])
}

// EncodeKeep encodes the set of kept payload indices of one layer.
func EncodeKeep(keep []bool) string {
	n := len(keep)
	for n > 0 && !keep[n-1] {
		n--
	}
	b := make([]byte, (n+7)/8)
	for k := range n {
		if keep[k] {
			b[k/8] |= 1 << (k % 8)
		}
	}
	return base64.RawStdEncoding.EncodeToString(b)
}
