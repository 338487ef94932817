package delta

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/sign"
)

// Sentinel errors. They are wrapped with context and matched with errors.Is.
var (
	// ErrBadDelta: the delta does not follow FORMAT.md.
	ErrBadDelta = errors.New("bad delta")
	// ErrBaseMismatch: the delta was made for another base image.
	ErrBaseMismatch = errors.New("delta is for another base image")
	// ErrCorrupt: bytes do not hash to the digest the delta declares.
	ErrCorrupt = errors.New("corrupt delta content")
	// ErrLimit: a declared size is beyond what this reader allows.
	ErrLimit = errors.New("delta exceeds a limit")
)

var magic = [8]byte{'S', 'K', 'I', 'F', 'F', 'D', 'L', 1}

// Hard limits of this implementation (FORMAT.md).
const (
	maxHeader      = 16 << 20
	maxManifest    = 64 << 20
	maxSignature   = 64 << 10
	maxWindowLimit = 512 << 20
)

// Encoder names.
const (
	EncZstd     = "zstd"
	EncZstdDict = "zstd-dict"
	EncBsdiff   = "bsdiff"
	// EncBsdiffX86 is bsdiff of x86-64 ELF files after delta/exefilter's
	// reversible transform (absolute call/RIP targets, delta-coded symbols).
	EncBsdiffX86 = "bsdiff-x86"
)

// Manifest is the delta's header (FORMAT.md).
type Manifest struct {
	Version int     `json:"version"`
	Base    Base    `json:"base"`
	Target  Target  `json:"target"`
	Limits  Limits  `json:"limits"`
	Layers  []Layer `json:"layers"`
	Blobs   []Blob  `json:"blobs"`
	Ops     []Op    `json:"ops"`
	// Streams (manifest version 3) are the solid streams: each is one blob
	// whose decompressed bytes are its member ops' residues, one after the
	// other (FORMAT.md, "Solid streams").
	Streams []Stream `json:"streams,omitempty"`
}

// Stream codecs (manifest version 3).
const (
	CodecZstd   = "zstd"
	CodecBrotli = "brotli"
)

// Stream is one solid stream of a version 3 delta.
type Stream struct {
	Blob  int    `json:"blob"`
	Codec string `json:"codec"`
	// Window is the history the decoder keeps, in bytes: the zstd window,
	// or 1<<lgwin for brotli. At most limits.max_window.
	Window int64 `json:"window"`
	// Ops are the member ops, by index, in the order their residues follow
	// each other in the stream.
	Ops []int `json:"ops"`
	// Regions (version 5), when set, says the stream is columnar: its
	// decompressed bytes are numRegions regions of these sizes, each
	// holding one part of every member's residue (FORMAT.md, "Columnar
	// streams").
	Regions []int64 `json:"regions,omitempty"`
}

// The regions of a columnar stream, in stream order: bsdiff-x86's
// transform parameters, the split bsdiff parts (delta/bsdiff's columns
// but the extra bytes) and last the literals: extra bytes and plain
// members' contents, the one region a device reads as it decodes; the
// others it spills to a scratch file first.
const (
	regionParams   = 0
	regionLiterals = 1 + bsdiff.ColExtra
	numRegions     = regionLiterals + 1
)

// Base names the image a delta applies to.
type Base struct {
	ConfigDigest digest.Digest   `json:"config_digest"`
	DiffIDs      []digest.Digest `json:"diff_ids"`
	// Payloads is how many distinct payloads the base layers hold.
	Payloads int `json:"payloads"`
}

// Target is what a delta produces.
type Target struct {
	Config       []byte          `json:"config"`
	ConfigDigest digest.Digest   `json:"config_digest"`
	DiffIDs      []digest.Digest `json:"diff_ids"`
	Distribution *Distribution   `json:"distribution,omitempty"`
}

// Distribution is the target's registry form, reproduced when present.
type Distribution struct {
	Manifest  []byte      `json:"manifest"`
	MediaType string      `json:"media_type"`
	Layers    []BlobLayer `json:"layers"`
}

// BlobLayer is one compressed target layer and how to reproduce it.
type BlobLayer struct {
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type"`
	// Recipe is a gzrecipe.Recipe (MarshalBinary); empty for uncompressed blobs.
	Recipe []byte `json:"recipe,omitempty"`
}

// Limits are declared up front so a device can refuse before starting.
type Limits struct {
	MaxPayload int64 `json:"max_payload"`
	// MaxExpanded is the largest file a patcher writes before an inverse
	// transform shrinks it (bsdiff-x86 with expanded sections); at least
	// MaxPayload.
	MaxExpanded int64 `json:"max_expanded"`
	MaxWindow   int64 `json:"max_window"`
	MaxSkeleton int64 `json:"max_skeleton"`
	TotalOutput int64 `json:"total_output"`
	// MaxControls is the most control triples of one split bsdiff residue
	// (version 3): a device spills them to disk and refuses more.
	MaxControls int64 `json:"max_controls,omitempty"`
}

// Layer is how to get target layer i.
type Layer struct {
	DiffID    digest.Digest `json:"diff_id"`
	Size      int64         `json:"size"`
	BaseLayer *int          `json:"base_layer,omitempty"`
	Skeleton  *int          `json:"skeleton,omitempty"`
	DictLayer int           `json:"dict_layer"`
	// SkeletonDelta: the skeleton blob holds a skeleton delta against the
	// dictionary layer's skeleton (layerfs.DiffSkeleton), not the skeleton.
	SkeletonDelta bool `json:"skeleton_delta,omitempty"`
	// SkeletonPlain: the skeleton blob's zstd frame uses no dictionary
	// (the dictionary layer's skeleton is then only a skeleton delta's
	// base), so a reader need not hold it as one.
	SkeletonPlain bool `json:"skeleton_plain,omitempty"`
	// SkeletonCodec (version 3) is "" for a zstd frame or "brotli" for a
	// brotli stream of the skeleton delta (SkeletonDelta and SkeletonPlain
	// set: no dictionary).
	SkeletonCodec string `json:"skeleton_codec,omitempty"`
}

// Blob is a run of bytes in the delta body.
type Blob struct {
	Digest digest.Digest `json:"digest"`
	Size   int64         `json:"size"`
}

// Op makes one target payload that is not in the base.
//
// The k-th op makes the k-th payload, in target layer order and then tar
// order (first appearance), that is not a base payload: its digest and size
// come from the target skeletons, so they are not repeated here.
type Op struct {
	Encoder string `json:"encoder"`
	// Base is the index of the base payload in the sorted list of base
	// payload digests (bsdiff and zstd-dict), -1 for plain zstd.
	Base int `json:"base"`
	Blob int `json:"blob"`
	// Coder compresses bsdiff streams: "" (zstd) or "brotli".
	Coder string `json:"coder,omitempty"`

	// Gzip, when set, says the target payload is a gzip member that
	// delta/gnugzip reproduces from its content: the op makes the content,
	// which apply compresses with the recipe (manifest version 2).
	Gzip *GzipOp `json:"gzip,omitempty"`

	Target     digest.Digest `json:"-"` // from the target skeletons
	Size       int64         `json:"-"`
	BaseDigest digest.Digest `json:"-"`
	// made: the target skeleton has a Made record for the payload (a lean
	// skeleton, version 5): Target is empty until the op has made it.
	made  bool
	index int // the op's index in Manifest.Ops
}

// target names the payload op makes in messages.
func (op Op) target() string {
	if op.made {
		return fmt.Sprintf("op %d's payload", op.index)
	}
	return string(op.Target)
}

// GzipOp is how a gzip payload is rebuilt from its content (Op.Gzip).
type GzipOp struct {
	// Level and Header are the gnugzip.Recipe: GNU gzip's level and the
	// member's header bytes, kept verbatim.
	Level  int    `json:"level"`
	Header []byte `json:"header"`
	// Size is the content's size: what the op makes.
	Size int64 `json:"size"`
	// BaseSize, when not 0, says the op's base is the base payload's
	// decompressed content, of this many bytes (else the payload itself).
	BaseSize int64 `json:"base_size,omitempty"`
}

// Manifest versions: 2 adds Op.Gzip; 3 replaces the pack and the
// per-op bsdiff blobs by solid streams; 4 lets a bsdiff-x86 stream member
// have no base (a new executable, FORMAT.md "New executables"); 5 makes
// skeleton deltas lean, and lets a layer have one against no base layer
// (FORMAT.md "Lean skeletons"). A writer uses the lowest version that can
// express its delta.
const (
	minVersion = 1
	maxVersion = 5
)

// maxBrotliWindow is the largest brotli window a stream may declare
// (1<<24, the format's own maximum without its large-window extension).
const maxBrotliWindow = 1 << 24

// validate checks the manifest's internal consistency and bounds, so that
// nothing later indexes out of range or allocates what was not declared.
func (m *Manifest) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadDelta, fmt.Sprintf(format, args...))
	}
	if m.Version < minVersion || m.Version > maxVersion {
		return bad("manifest version %d, this skiff reads %d to %d", m.Version, minVersion, maxVersion)
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
	if m.Limits.MaxWindow < 0 || m.Limits.MaxWindow > maxWindowLimit {
		return fmt.Errorf("%w: zstd window of %d bytes", ErrLimit, m.Limits.MaxWindow)
	}
	for _, d := range append(append([]digest.Digest{}, m.Base.DiffIDs...), m.Target.DiffIDs...) {
		if err := d.Validate(); err != nil {
			return bad("diff_id %q: %v", d, err)
		}
	}
	var total int64
	skeletons := 0
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
			skeletons++
		default:
			return bad("layer %d needs exactly one of base_layer and skeleton", i)
		}
	}
	if m.Limits.MaxExpanded < m.Limits.MaxPayload || m.Limits.MaxPayload < 0 {
		return bad("max_expanded %d below max_payload %d", m.Limits.MaxExpanded, m.Limits.MaxPayload)
	}
	if total != m.Limits.TotalOutput {
		return bad("layers add up to %d bytes, limits say %d", total, m.Limits.TotalOutput)
	}
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
			if newExecutable(op) {
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
	if d := m.Target.Distribution; d != nil {
		if len(d.Layers) != len(m.Layers) {
			return bad("distribution has %d layers for %d target layers", len(d.Layers), len(m.Layers))
		}
		if err := checkDistribution(m); err != nil {
			return err
		}
	}
	return nil
}

// validateStreams checks the solid streams (version 3), whose blobs follow
// the skeletons' in stream order from *next on, and returns which ops are
// stream members.
func (m *Manifest) validateStreams(next *int) (map[int]bool, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadDelta, fmt.Sprintf(format, args...))
	}
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
		case st.Codec == CodecBrotli && (st.Window < 1<<10 || st.Window > maxBrotliWindow || st.Window&(st.Window-1) != 0):
			return nil, bad("stream %d: brotli window %d", s, st.Window)
		case st.Codec == CodecZstd && st.Window < minWindow:
			return nil, bad("stream %d: zstd window %d", s, st.Window)
		case len(st.Ops) == 0:
			return nil, bad("stream %d has no ops", s)
		case st.Regions != nil && m.Version < 5:
			return nil, bad("stream %d: a columnar stream needs manifest version 5", s)
		case st.Regions != nil && len(st.Regions) != numRegions:
			return nil, bad("stream %d: %d regions, a columnar stream has %d", s, len(st.Regions), numRegions)
		}
		var spill int64
		for i, n := range st.Regions {
			if n < 0 || n > m.Limits.TotalOutput {
				return nil, bad("stream %d: region %d of %d bytes", s, i, n)
			}
			if i != regionLiterals {
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

// Header is a parsed delta header.
type Header struct {
	Manifest  Manifest
	Raw       []byte // the stored (compressed) header bytes a signature covers
	Signature []byte
	// BodyOffset is where the first blob starts.
	BodyOffset int64
}

// writeHeader writes magic, manifest and the signature block by signers
// (empty when there are none).
func writeHeader(w io.Writer, m *Manifest, signers ...crypto.Signer) (int64, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return 0, err
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return 0, err
	}
	hdr := enc.EncodeAll(js, nil)
	enc.Close()
	if len(hdr) > maxHeader || len(js) > maxManifest {
		return 0, fmt.Errorf("%w: manifest of %d bytes", ErrLimit, len(js))
	}
	var sig []byte
	if len(signers) > 0 {
		if sig, err = sign.Sign(hdr, signers...); err != nil {
			return 0, err
		}
	}
	return writeFrame(w, hdr, sig)
}

// ReadHeader reads and validates a delta's header from r, leaving r at the
// first blob.
func ReadHeader(r io.Reader) (*Header, error) { return readHeader(r, nil) }

// readHeader is ReadHeader; check, if set, sees the stored header and
// signature before anything is decompressed (signature verification).
func readHeader(r io.Reader, check func(h *Header) error) (*Header, error) {
	var m [8]byte
	if _, err := io.ReadFull(r, m[:]); err != nil {
		return nil, fmt.Errorf("%w: reading magic: %v", ErrBadDelta, err)
	}
	if m != magic {
		if bytes.Equal(m[:7], magic[:7]) {
			return nil, fmt.Errorf("%w: format version %d, this skiff reads %d", ErrBadDelta, m[7], magic[7])
		}
		return nil, fmt.Errorf("%w: not a skiff delta", ErrBadDelta)
	}
	readLen := func(what string, max uint32) (uint32, error) {
		var n uint32
		if err := binary.Read(r, binary.LittleEndian, &n); err != nil {
			return 0, fmt.Errorf("%w: reading %s length: %v", ErrBadDelta, what, err)
		}
		if n > max {
			return 0, fmt.Errorf("%w: %s of %d bytes (max %d)", ErrLimit, what, n, max)
		}
		return n, nil
	}
	n, err := readLen("header", maxHeader)
	if err != nil {
		return nil, err
	}
	h := &Header{Raw: make([]byte, n)}
	if _, err := io.ReadFull(r, h.Raw); err != nil {
		return nil, fmt.Errorf("%w: header truncated: %v", ErrBadDelta, err)
	}
	sn, err := readLen("signature", maxSignature)
	if err != nil {
		return nil, err
	}
	h.Signature = make([]byte, sn)
	if _, err := io.ReadFull(r, h.Signature); err != nil {
		return nil, fmt.Errorf("%w: signature truncated: %v", ErrBadDelta, err)
	}
	h.BodyOffset = int64(8 + 4 + n + 4 + sn)
	if check != nil {
		if err := check(h); err != nil {
			return nil, err
		}
	}
	dec, err := zstd.NewReader(bytes.NewReader(h.Raw), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxManifest), zstd.WithDecoderMaxWindow(maxManifest))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	js, err := io.ReadAll(io.LimitReader(dec, maxManifest+1))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadDelta, err)
	}
	if len(js) > maxManifest {
		return nil, fmt.Errorf("%w: manifest over %d bytes", ErrLimit, maxManifest)
	}
	d := json.NewDecoder(bytes.NewReader(js))
	d.DisallowUnknownFields()
	if err := d.Decode(&h.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadDelta, err)
	}
	if err := h.Manifest.validate(); err != nil {
		return nil, err
	}
	return h, nil
}

// HeaderDigest is what a signature will cover: the sha256 of the stored header.
func (h *Header) HeaderDigest() digest.Digest {
	s := sha256.Sum256(h.Raw)
	return digest.NewDigestFromBytes(digest.SHA256, s[:])
}

// newExecutable reports whether op is a bsdiff-x86 op whose base is the
// empty file (manifest version 4): a new executable carried through the
// transforms.
func newExecutable(op Op) bool { return op.Encoder == EncBsdiffX86 && op.Base == -1 }
