package format

import (
	"github.com/opencontainers/go-digest"
)

// magic starts every delta; its last byte is the container version.
// ContainerVersion is the container format version, the magic's last
// byte (FORMAT.md, "Byte grammar").
const ContainerVersion = 1

var magic = [8]byte{'S', 'K', 'I', 'F', 'F', 'D', 'L', ContainerVersion}

// Hard limits of this implementation (FORMAT.md).
const (
	maxHeader    = 16 << 20
	maxManifest  = 64 << 20
	maxSignature = 64 << 10
	// MaxWindowLimit is the largest window (zstd, with its dictionary, or
	// a stream's) any delta may declare.
	MaxWindowLimit = 512 << 20
	// MinWindow is the smallest zstd window writers declare and readers
	// accept.
	MinWindow = 1 << 20
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
	// decompressed bytes are NumRegions regions of these sizes, each
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
	RegionParams = 0
	// RegionCounts to RegionDiff are delta/bsdiff's columns ColCount to
	// ColDiff, one up.
	RegionCounts   = 1
	RegionDiff     = 7
	RegionLiterals = 8
	NumRegions     = 9
)

// Base names the image a delta applies to.
type Base struct {
	ConfigDigest digest.Digest   `json:"config_digest"`
	DiffIDs      []digest.Digest `json:"diff_ids"`
	// Payloads is how many distinct payloads the base layers hold.
	Payloads int `json:"payloads"`
	// Keep (version 6), one per base layer, says which of the layer's
	// payloads the device keeps in its content store while applying: bit
	// k (least significant first, base64 without padding) stands for the
	// k-th entry with data in tar order. The others are only hashed. Empty:
	// every payload is kept (FORMAT.md, "Kept base payloads").
	Keep []string `json:"keep,omitempty"`
}

// Target is what a delta produces.
type Target struct {
	Config       []byte          `json:"config"`
	ConfigDigest digest.Digest   `json:"config_digest"`
	DiffIDs      []digest.Digest `json:"diff_ids"`
	Distribution *Distribution   `json:"distribution,omitempty"`
	// Names (version 5) are the names (REPO:TAG) the target is known by,
	// as its maker gave them: apply writes them into a docker-archive
	// whose reference names no tag.
	Names []string `json:"names,omitempty"`
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
	// Scratch (version 5) is about how many bytes applying writes to its
	// work directory at most: the base's files, the payloads the ops make,
	// the skeletons, a columnar stream's spilled regions, the rebuilt
	// layer tars (and their compressed blobs, with a distribution) and
	// the largest file's patching. A device checks its free space first.
	Scratch int64 `json:"scratch,omitempty"`
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
}

// NewExecutable reports whether op is a bsdiff-x86 op whose base is the
// empty file (manifest version 4): a new executable carried through the
// transforms.
func (op Op) NewExecutable() bool { return op.Encoder == EncBsdiffX86 && op.Base == -1 }

// Patch coders (Op.Coder) of bsdiff blobs outside streams.
const (
	CoderZstd   = ""       // one zstd frame (the default)
	CoderBrotli = "brotli" // brotli, 1 MiB window: smaller than zstd on patches
)

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
// (FORMAT.md "Lean skeletons"); 6 adds Base.Keep (FORMAT.md "Kept base
// payloads"). A writer uses the lowest version that can
// express its delta.
const (
	MinVersion = 1
	MaxVersion = 6
)

// MaxBrotliWindow is the largest brotli window a stream may declare
// (1<<24, the format's own maximum without its large-window extension).
const MaxBrotliWindow = 1 << 24
