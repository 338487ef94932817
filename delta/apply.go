package delta

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/opencontainers/go-digest"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/gnugzip"
	"github.com/skiff-dev/skiff/delta/zsections"
	"github.com/skiff-dev/skiff/layerfs"
)

// ApplyOptions configure Apply.
type ApplyOptions struct {
	// WorkDir holds the content store, skeletons and rebuilt layers until
	// the Result is closed (default: a new temporary directory).
	WorkDir string
	// MaxWindow refuses deltas that declare a larger zstd window (device
	// memory); 0 means the format's limit.
	MaxWindow int64
	// Sync fsyncs what the content store writes.
	Sync bool
	// Progress, if set, is called as the delta body is read.
	Progress func(done, total int64)
	// TrustedKeys: the delta must carry a valid signature by one of these
	// keys, checked before anything else of it is used (FORMAT.md, "Trust
	// model").
	TrustedKeys []ed25519.PublicKey
	// AllowUnsigned accepts unsigned deltas, for development (Trust).
	// With neither this nor TrustedKeys, every delta is refused.
	AllowUnsigned bool
}

// Result is a rebuilt, verified target image, backed by files in the work
// directory until Close.
type Result struct {
	Image  v1.Image
	Header *Header
	// SignedBy is the ID of the trusted key whose signature verified, ""
	// when the options let an unverified delta through.
	SignedBy string
	// Timings of the phases: taking the base apart, reading the delta body,
	// rebuilding (and hashing) the changed layers, re-compressing blobs.
	BaseTime, BodyTime, RebuildTime, CompressTime time.Duration
	RebuiltBytes                                  int64 // tar bytes rebuilt
	work                                          string
	ownsWork                                      bool
}

// Close removes the work directory if Apply made it.
func (r *Result) Close() error {
	if r.ownsWork {
		return os.RemoveAll(r.work)
	}
	return nil
}

// testHookBeforeRebuild, when set, sees the work directory once the delta
// body is read (tests count what the content store holds then).
var testHookBeforeRebuild func(work string)

// Apply reads a delta from r and rebuilds the target image from base.
// Everything is verified before the Result is returned: the base identity,
// every blob and payload digest, every rebuilt layer's diff_id and the
// config digest. The signature is checked first, before the manifest is
// decompressed. The base is only read.
func Apply(ctx context.Context, base v1.Image, r io.Reader, opts ApplyOptions) (_ *Result, err error) {
	h, signedBy, err := format.ReadVerifiedHeader(r, Trust{Keys: opts.TrustedKeys, AllowUnsigned: opts.AllowUnsigned})
	if err != nil {
		return nil, err
	}
	m := &h.Manifest
	maxWin := opts.MaxWindow
	if maxWin == 0 {
		maxWin = format.MaxWindowLimit
	}
	if m.Limits.MaxWindow > maxWin {
		return nil, fmt.Errorf("%w: the delta needs a %d-byte zstd window, this device allows %d", ErrLimit, m.Limits.MaxWindow, maxWin)
	}
	if err := checkBase(base, m); err != nil {
		return nil, err
	}
	res := &Result{Header: h, SignedBy: signedBy, work: opts.WorkDir}
	if res.work == "" {
		if res.work, err = os.MkdirTemp("", "skiff-apply-"); err != nil {
			return nil, err
		}
		res.ownsWork = true
	}
	defer func() {
		if err != nil {
			res.Close()
		}
	}()
	if err := checkScratch(res.work, m.Limits.Scratch); err != nil {
		return nil, err
	}
	a := &applier{m: m, work: res.work, opts: opts, inBase: map[digest.Digest]bool{}}
	if a.store, err = layerfs.OpenStore(filepath.Join(res.work, "store"), layerfs.WithSync(opts.Sync)); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := a.loadBase(ctx, base); err != nil {
		return nil, err
	}
	t1 := time.Now()
	if err := a.readBody(ctx, r); err != nil {
		return nil, err
	}
	t2 := time.Now()
	if testHookBeforeRebuild != nil {
		testHookBeforeRebuild(res.work)
	}
	if err := a.rebuildLayers(ctx); err != nil {
		return nil, err
	}
	t3 := time.Now()
	res.BaseTime, res.BodyTime, res.RebuildTime = t1.Sub(t0), t2.Sub(t1), t3.Sub(t2)
	for i, l := range m.Layers {
		if a.tarOf[i] != "" {
			res.RebuiltBytes += l.Size
		}
	}
	if m.Target.Distribution != nil {
		blobs, err := a.compressLayers(ctx)
		if err != nil {
			return nil, err
		}
		res.CompressTime = time.Since(t3)
		if res.Image, err = partial.CompressedToImage(&distImage{a: a, blobs: blobs}); err != nil {
			return nil, err
		}
		return res, nil
	}
	if res.Image, err = a.image(base); err != nil {
		return nil, err
	}
	return res, nil
}

// checkBase refuses a base image other than the one the delta names.
func checkBase(base v1.Image, m *Manifest) error {
	cd, err := base.ConfigName()
	if err != nil {
		return fmt.Errorf("base config: %w", err)
	}
	layers, err := layerfs.ConfigLayers(base)
	if err != nil {
		return fmt.Errorf("base layers: %w", err)
	}
	var ids []digest.Digest
	for _, l := range layers {
		h, err := l.DiffID()
		if err != nil {
			return fmt.Errorf("base layer: %w", err)
		}
		ids = append(ids, digest.Digest(h.String()))
	}
	same := cd.String() == m.Base.ConfigDigest.String() && len(ids) == len(m.Base.DiffIDs)
	for i := 0; same && i < len(ids); i++ {
		same = ids[i] == m.Base.DiffIDs[i]
	}
	if !same {
		var which string // the first layer that differs, when the counts agree
		for i := 0; i < len(ids) && len(ids) == len(m.Base.DiffIDs); i++ {
			if ids[i] != m.Base.DiffIDs[i] {
				which = fmt.Sprintf(": its layer %d is %s, the delta needs %s", i, ids[i], m.Base.DiffIDs[i])
				break
			}
		}
		return fmt.Errorf("%w: the delta needs image %s (%d layers), the base given is %s (%d layers)%s",
			ErrBaseMismatch, m.Base.ConfigDigest, len(m.Base.DiffIDs), cd, len(ids), which)
	}
	return nil
}

type applier struct {
	m      *Manifest
	work   string
	opts   ApplyOptions
	store  *layerfs.Store
	baseSk []string // raw skeleton file of each base layer
	baseL  []v1.Layer
	// inBase and baseList: the base payloads, as a set and sorted.
	inBase   map[digest.Digest]bool
	baseList []digest.Digest
	tarOf    []string // rebuilt tar of each target layer ("" when taken from the base)
	// madeOps are the ops whose payloads the skeletons hold as Made
	// records, in skeleton order; madeDigest what each made.
	madeOps    []int
	madeDigest map[int]digest.Digest
	ops        []resolvedOp // the manifest's ops, resolved (resolveOps)
}

// checkReusedSize refuses a delta that declares a target layer taken from
// base layer j with another size than its tar's.
func (a *applier) checkReusedSize(j int, size int64) error {
	for i, l := range a.m.Layers {
		if l.BaseLayer != nil && *l.BaseLayer == j && l.Size != size {
			return fmt.Errorf("%w: target layer %d is base layer %d of %d bytes, the delta says %d", ErrBadDelta, i, j, size, l.Size)
		}
	}
	return nil
}

func (a *applier) loadBase(ctx context.Context, base v1.Image) error {
	layers, err := layerfs.ConfigLayers(base)
	if err != nil {
		return err
	}
	a.baseL = layers
	for i, l := range layers {
		p := filepath.Join(a.work, fmt.Sprintf("base-%d.skel", i))
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		ki, err := a.keeper(i)
		var st layerfs.Stats
		if err == nil {
			st, err = layerfs.DisassembleLayer(ctx, l, ki, f)
		}
		if err == nil {
			err = ki.check(i)
		}
		if err == nil {
			err = a.checkReusedSize(i, st.TarSize)
		}
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err == nil {
			err = layerfs.Walk(f, func(file layerfs.File) error {
				if file.Payload != "" {
					a.inBase[file.Payload] = true
				}
				return nil
			})
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("base layer %d: %w", i, err)
		}
		a.baseSk = append(a.baseSk, p)
	}
	a.baseList = sortedDigests(a.inBase)
	if len(a.baseList) != a.m.Base.Payloads {
		return fmt.Errorf("%w: the base holds %d payloads, the delta expects %d", ErrBaseMismatch, len(a.baseList), a.m.Base.Payloads)
	}
	return nil
}

// readBody streams the blobs in order: the skeletons (which tell what the
// ops make), then the pack and the op blobs, turning them into payloads.
func (a *applier) readBody(ctx context.Context, r io.Reader) error {
	var done, total int64
	for _, b := range a.m.Blobs {
		total += b.Size
	}
	blob := func(i int) io.Reader {
		b := a.m.Blobs[i]
		body := &blobBody{r: r, blob: i, size: b.Size, left: b.Size}
		vr := &blobReader{r: layerfs.VerifyReader(body, b.Digest, b.Size), blob: i}
		return &progressReader{r: vr, done: &done, total: total, fn: a.opts.Progress}
	}
	// finish reads what is left of a blob, which checks its digest.
	finish := func(i int, br io.Reader) error {
		if _, err := io.Copy(io.Discard, br); err != nil {
			return asCorrupt(err)
		}
		return nil
	}
	// fail reports what went wrong while blob i was decoded: the blob's own
	// fault (truncated, not its digest) if it has one, as that is the
	// cause, else err.
	fail := func(i int, br io.Reader, err error) error {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if ferr := finish(i, br); ferr != nil {
			return ferr
		}
		return err
	}
	a.tarOf = make([]string, len(a.m.Layers))
	for i, l := range a.m.Layers {
		if l.Skeleton == nil {
			continue
		}
		br := blob(*l.Skeleton)
		if err := a.readSkeleton(i, l, br); err != nil {
			return fail(*l.Skeleton, br, asCorrupt(err))
		}
		if err := finish(*l.Skeleton, br); err != nil {
			return err
		}
	}
	if err := a.resolveOps(); err != nil {
		return err
	}
	ops := a.ops
	// The solid streams (version 3).
	inStream := map[int]bool{}
	for _, s := range a.m.Streams {
		br := blob(s.Blob)
		if err := a.applyStream(ctx, s, br); err != nil {
			return fail(s.Blob, br, asCorrupt(err))
		}
		if err := finish(s.Blob, br); err != nil {
			return err
		}
		for _, k := range s.Ops {
			inStream[k] = true
		}
	}
	// The pack.
	var pack []resolvedOp
	for _, op := range ops {
		if op.Encoder == EncZstd && len(a.m.Streams) == 0 {
			pack = append(pack, op)
		}
	}
	if len(pack) > 0 {
		br := blob(pack[0].Blob)
		dec, err := newDecoder(br, a.m.Limits.MaxWindow, nil)
		if err != nil {
			return err
		}
		for _, op := range pack {
			if err := a.ingest(ctx, op, dec); err != nil {
				dec.Close()
				return fail(pack[0].Blob, br, asCorrupt(err))
			}
		}
		dec.Close()
		if err := finish(pack[0].Blob, br); err != nil {
			return err
		}
	}
	doneBlob := map[int]bool{}
	for k, op := range ops {
		if op.Encoder == EncZstd || inStream[k] || doneBlob[op.Blob] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		doneBlob[op.Blob] = true
		var members []resolvedOp
		for _, o := range ops {
			if o.Blob == op.Blob {
				members = append(members, o)
			}
		}
		br := blob(op.Blob)
		var err error
		if len(members) > 1 {
			err = a.applyGroup(ctx, members, br)
		} else {
			err = a.applyOp(ctx, op, br)
		}
		if err != nil {
			return fail(op.Blob, br, fmt.Errorf("op %d: %w", k, asCorrupt(err)))
		}
		if err := finish(op.Blob, br); err != nil {
			return err
		}
	}
	// Nothing may follow the last blob.
	var one [1]byte
	if n, _ := r.Read(one[:]); n != 0 {
		return fmt.Errorf("%w: bytes after the last blob", ErrBadDelta)
	}
	return nil
}

// resolveOps fills in each op's target digest and size from the target
// skeletons, and its base digest from the sorted base payload list.
func (a *applier) resolveOps() error {
	var need []layerfs.File
	seen := map[digest.Digest]bool{}
	for i := range a.m.Layers {
		if a.tarOf[i] == "" {
			continue
		}
		f, err := os.Open(a.tarOf[i])
		if err != nil {
			return err
		}
		// The rebuilt layers' paths are checked here, before any payload
		// is made (FORMAT.md, "Path safety").
		paths := layerfs.NewPathChecker(i)
		err = layerfs.Walk(f, func(file layerfs.File) error {
			if err := paths.Check(&file.Entry); err != nil {
				return fmt.Errorf("%w: target image: %w", ErrBadDelta, err)
			}
			if !file.Made && a.inBase[file.Payload] {
				return a.checkKept(file.Payload, fmt.Sprintf("target layer %d", i))
			}
			if !file.Made && (file.Payload == "" || seen[file.Payload]) {
				return nil
			}
			seen[file.Payload] = true
			need = append(need, file)
			if len(need) > len(a.m.Ops) {
				return fmt.Errorf("%w: the skeletons need more new payloads than the %d ops make", ErrBadDelta, len(a.m.Ops))
			}
			return nil
		})
		f.Close()
		if err != nil {
			return asCorrupt(err)
		}
	}
	if len(need) != len(a.m.Ops) {
		return fmt.Errorf("%w: the skeletons need %d new payloads, the delta has %d ops", ErrBadDelta, len(need), len(a.m.Ops))
	}
	a.ops = make([]resolvedOp, len(a.m.Ops))
	for k := range a.m.Ops {
		op := &a.ops[k]
		op.Op = a.m.Ops[k]
		op.Target, op.Size = need[k].Payload, need[k].DataSize
		op.made, op.index = need[k].Made, k
		if op.made {
			a.madeOps = append(a.madeOps, k)
		}
		if op.Size > a.m.Limits.MaxPayload {
			return fmt.Errorf("%w: payload of %d bytes over the declared %d", ErrLimit, op.Size, a.m.Limits.MaxPayload)
		}
		if op.Base >= 0 {
			op.BaseDigest = a.baseList[op.Base]
			if err := a.checkKept(op.BaseDigest, fmt.Sprintf("op %d", k)); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyGroup decodes a shared zstd-dict frame: the members' bases,
// concatenated, are the dictionary of their targets, concatenated.
func (a *applier) applyGroup(ctx context.Context, members []resolvedOp, br io.Reader) error {
	var dict []byte
	for _, op := range members {
		if op.Encoder != EncZstdDict {
			return fmt.Errorf("%w: a %s op shares a blob", ErrBadDelta, op.Encoder)
		}
		f, _, done, err := a.opBase(ctx, op)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(f, a.m.Limits.MaxWindow-int64(len(dict))+1))
		done()
		if err != nil {
			return err
		}
		dict = append(dict, b...)
		if int64(len(dict)) > a.m.Limits.MaxWindow {
			return fmt.Errorf("%w: dictionary over the declared window", ErrLimit)
		}
	}
	dec, err := newDecoder(br, a.m.Limits.MaxWindow, dict)
	if err != nil {
		return err
	}
	defer dec.Close()
	for _, op := range members {
		if err := a.ingest(ctx, op, dec); err != nil {
			return err
		}
	}
	return nil
}

// errIngestStopped stops a gzip op's compressor when the store stops reading.
var errIngestStopped = errors.New("ingest stopped")

// ingest stores op.Size bytes of r as op.Target, checking the digest. For
// a gzip op, r holds the content (op.Gzip.Size bytes), which is compressed
// on the way with the op's recipe.
func (a *applier) ingest(ctx context.Context, op resolvedOp, r io.Reader) error {
	var got digest.Digest
	var err error
	if g := op.Gzip; g != nil {
		content := &io.LimitedReader{R: r, N: g.Size}
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			err := gnugzip.Recipe{Level: g.Level, Header: g.Header}.Compress(pw, content)
			pw.CloseWithError(err)
			done <- err
		}()
		got, err = a.store.Ingest(ctx, pr, op.Size)
		pr.CloseWithError(errIngestStopped)
		if cerr := <-done; err == nil && cerr != nil {
			err = cerr
		}
		if err == nil && content.N != 0 {
			err = fmt.Errorf("%w: gzip content short by %d bytes", ErrCorrupt, content.N)
		}
	} else {
		got, err = a.store.Ingest(ctx, r, op.Size)
	}
	if err != nil {
		return fmt.Errorf("payload %s: %w", op.target(), asCorrupt(err))
	}
	if op.made {
		// Lean skeletons (version 5) leave this digest out: the layer's
		// diff_id, checked when it is assembled, covers the payload.
		if a.madeDigest == nil {
			a.madeDigest = map[int]digest.Digest{}
		}
		a.madeDigest[op.index] = got
		return nil
	}
	if got != op.Target {
		return fmt.Errorf("payload is %s, the delta says %s: %w", got, op.Target, ErrCorrupt)
	}
	return nil
}

// outSize is the size of what op's encoder makes: the payload, or a gzip
// op's content.
func outSize(op resolvedOp) int64 {
	if op.Gzip != nil {
		return op.Gzip.Size
	}
	return op.Size
}

// opBase opens what op is encoded against: the base payload or, for a
// gzip op with a base size, its decompressed content in a temporary file
// (bspatch reads its base by random access). The caller calls done.
func (a *applier) opBase(ctx context.Context, op resolvedOp) (f *os.File, size int64, done func(), err error) {
	rc, err := a.store.Open(ctx, op.BaseDigest)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("op for %s: base payload %s: %w", op.target(), op.BaseDigest, err)
	}
	f, ok := rc.(*os.File)
	if !ok {
		rc.Close()
		return nil, 0, nil, fmt.Errorf("content store returned %T", rc)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	if op.Gzip == nil || op.Gzip.BaseSize == 0 {
		return f, st.Size(), func() { f.Close() }, nil
	}
	defer f.Close()
	cr, err := gnugzip.NewContentReader(f, st.Size())
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: op for %s: base payload %s: %v", ErrBadDelta, op.target(), op.BaseDigest, err)
	}
	defer cr.Close()
	tmp, err := os.CreateTemp(a.work, "gzbase-")
	if err != nil {
		return nil, 0, nil, err
	}
	done = func() { tmp.Close(); os.Remove(tmp.Name()) }
	n, err := io.Copy(tmp, io.LimitReader(cr, op.Gzip.BaseSize+1))
	if err == nil && n != op.Gzip.BaseSize {
		err = fmt.Errorf("%w: op for %s: base content is %d bytes or more, the delta says %d", ErrBadDelta, op.target(), n, op.Gzip.BaseSize)
	}
	if err != nil {
		done()
		return nil, 0, nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, 0, nil, err
	}
	return tmp, n, done, nil
}

func (a *applier) applyOp(ctx context.Context, op resolvedOp, br io.Reader) error {
	f, size, done, err := a.opBase(ctx, op)
	if err != nil {
		return err
	}
	defer done()
	switch op.Encoder {
	case EncZstdDict:
		if size > a.m.Limits.MaxWindow {
			return fmt.Errorf("%w: dictionary of %d bytes over the declared window", ErrLimit, size)
		}
		dict, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		dec, err := newDecoder(br, a.m.Limits.MaxWindow, dict)
		if err != nil {
			return err
		}
		defer dec.Close()
		return a.ingest(ctx, op, dec)
	case EncBsdiff:
		dec, err := patchDecompressor(br, op.Coder, a.m.Limits.MaxWindow)
		if err != nil {
			return err
		}
		defer dec.Close()
		pr, pw := io.Pipe()
		go func() {
			pw.CloseWithError(bsdiff.ApplyStream(f, size, dec, outSize(op), pw))
		}()
		err = a.ingest(ctx, op, pr)
		pr.CloseWithError(errors.New("ingest stopped"))
		return err
	case EncBsdiffX86:
		return a.applyBsdiffX86(ctx, op, f, size, br)
	}
	return fmt.Errorf("%w: encoder %q", ErrBadDelta, op.Encoder)
}

// applyBsdiffX86: E(T(base)) is written to a temporary file (the patcher
// reads it by random access) and patched into E(T(target)), which streams
// through E⁻¹ and T⁻¹ into the store.
func (a *applier) applyBsdiffX86(ctx context.Context, op resolvedOp, base *os.File, baseSize int64, br io.Reader) error {
	bbr := bufio.NewReader(br)
	var xp exefilter.Params
	var zBase, zTarget zsections.Params
	if err := readX86Params(bbr, a.m.Version, &xp, &zBase, &zTarget); err != nil {
		return err
	}
	outSize := outSize(op) + zTarget.Growth()
	if zTarget.Growth() < 0 || outSize > a.m.Limits.MaxExpanded {
		return fmt.Errorf("%w: bsdiff-x86 expanded size %d over the declared %d", ErrLimit, outSize, a.m.Limits.MaxExpanded)
	}
	tmp, tn, cleanup, err := a.transformBase(base, baseSize, xp, zBase)
	if err != nil {
		return err
	}
	defer cleanup()
	dec, err := patchDecompressor(bbr, op.Coder, a.m.Limits.MaxWindow)
	if err != nil {
		return err
	}
	defer dec.Close()
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(bsdiff.ApplyStream(tmp, tn, dec, outSize, pw))
	}()
	err = a.ingest(ctx, op, exefilter.NewDecoder(zsections.NewCompressor(pr, zTarget), xp))
	pr.CloseWithError(errors.New("ingest stopped"))
	return err
}

func (a *applier) readSkeleton(i int, l Layer, br io.Reader) error {
	var dict []byte // the base skeleton: zstd dictionary and/or delta base
	if l.DictLayer >= 0 && (l.SkeletonDelta || !l.SkeletonPlain) {
		st, err := os.Stat(a.baseSk[l.DictLayer])
		if err != nil {
			return err
		}
		if st.Size() > a.m.Limits.MaxSkeleton {
			return fmt.Errorf("%w: base skeleton of %d bytes over the declared %d", ErrLimit, st.Size(), a.m.Limits.MaxSkeleton)
		}
		if dict, err = os.ReadFile(a.baseSk[l.DictLayer]); err != nil {
			return err
		}
	}
	zdict := dict
	if l.SkeletonPlain {
		zdict = nil
	}
	var dec io.Reader
	if l.SkeletonCodec == CodecBrotli {
		r, done, err := openStream(br, Stream{Codec: CodecBrotli, Window: a.m.Limits.MaxWindow}, a.m.Limits.MaxWindow)
		if err != nil {
			return err
		}
		defer done()
		dec = r
	} else {
		zd, err := newDecoder(br, a.m.Limits.MaxWindow, zdict)
		if err != nil {
			return err
		}
		defer zd.Close()
		dec = zd
	}
	p := filepath.Join(a.work, fmt.Sprintf("target-%d.skel", i))
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	// The skeleton is written relative to the dictionary's (a skeleton
	// delta) when there is one; bound what it may grow to either way.
	lw := &limitedWriter{w: f, left: a.m.Limits.MaxSkeleton}
	switch {
	case l.SkeletonDelta && a.m.Version >= 5:
		err = layerfs.PatchSkeletonLean(dict, io.LimitReader(dec, a.m.Limits.MaxSkeleton+1), lw)
	case l.SkeletonDelta:
		err = layerfs.PatchSkeleton(dict, io.LimitReader(dec, a.m.Limits.MaxSkeleton+1), lw)
	default:
		_, err = io.Copy(lw, io.LimitReader(dec, a.m.Limits.MaxSkeleton+1))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("skeleton of layer %d: %w", i, asCorrupt(err))
	}
	a.tarOf[i] = p
	return nil
}

// rebuildLayers assembles every changed target layer into a tar file and
// checks it against its diff_id.
//
// Each payload leaves the content store once the last layer that reads it
// is written, so the store's bytes move into the tars instead of being
// there twice (limits.scratch counts it so in version 6).
func (a *applier) rebuildLayers(ctx context.Context) error {
	made := 0 // Made records filled in so far
	for i := range a.m.Layers {
		if a.tarOf[i] == "" || len(a.madeOps) == 0 {
			continue
		}
		filled, err := a.fillMade(i, a.tarOf[i], &made)
		if err != nil {
			return fmt.Errorf("target layer %d: %w", i, err)
		}
		os.Remove(a.tarOf[i])
		a.tarOf[i] = filled
	}
	cs, err := a.consumingStore()
	if err != nil {
		return err
	}
	for i, l := range a.m.Layers {
		skel := a.tarOf[i]
		if skel == "" {
			continue
		}
		p := filepath.Join(a.work, fmt.Sprintf("layer-%d.tar", i))
		if err := a.assemble(ctx, skel, p, l, cs); err != nil {
			return fmt.Errorf("target layer %d: %w", i, err)
		}
		os.Remove(skel)
		a.tarOf[i] = p
	}
	return nil
}

// fillMade writes layer i's skeleton with the digests of the payloads
// its Made records stand for (made counts those of earlier layers) and
// returns the new file.
func (a *applier) fillMade(i int, skel string, made *int) (string, error) {
	in, err := os.Open(skel)
	if err != nil {
		return "", err
	}
	defer in.Close()
	p := filepath.Join(a.work, fmt.Sprintf("target-%d.filled.skel", i))
	out, err := os.Create(p)
	if err != nil {
		return "", err
	}
	err = layerfs.FillMade(bufio.NewReader(in), out, func(size int64) (digest.Digest, error) {
		if *made >= len(a.madeOps) {
			return "", fmt.Errorf("%w: more Made records than ops that make them", ErrBadDelta)
		}
		k := a.madeOps[*made]
		*made++
		d, ok := a.madeDigest[k]
		if !ok || size != a.ops[k].Size {
			return "", fmt.Errorf("%w: op %d made no payload of %d bytes", ErrBadDelta, k, size)
		}
		return d, nil
	})
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", asCorrupt(err)
	}
	return p, nil
}

func (a *applier) assemble(ctx context.Context, skel, out string, l Layer, p layerfs.Provider) error {
	sf, err := os.Open(skel)
	if err != nil {
		return err
	}
	defer sf.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	got, err := layerfs.Assemble(ctx, sf, p, f)
	var n int64
	if err == nil {
		n, err = f.Seek(0, io.SeekCurrent)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return asCorrupt(err)
	}
	if got != l.DiffID {
		return fmt.Errorf("rebuilt layer is %s, the target's diff_id is %s: %w", got, l.DiffID, ErrCorrupt)
	}
	if n != l.Size {
		return fmt.Errorf("%w: the rebuilt layer is %d bytes, the delta says %d", ErrBadDelta, n, l.Size)
	}
	return nil
}

// asCorrupt maps errors met while decoding delta content to ErrCorrupt
// (keeping the cause); errors already classed (ErrBadDelta, ErrLimit), I/O
// errors of this machine and cancellation stay what they are.
func asCorrupt(err error) error {
	var pe *fs.PathError
	switch {
	case err == nil, errors.Is(err, ErrCorrupt), errors.Is(err, ErrLimit), errors.Is(err, ErrBadDelta),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.As(err, &pe):
		return err
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// limitedWriter fails once more than left bytes are written.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.left {
		return 0, fmt.Errorf("%w: skeleton over the declared size", ErrLimit)
	}
	l.left -= int64(len(p))
	return l.w.Write(p)
}

// blobBody reads blob i's size bytes of the delta body, and says so when
// the delta ends before them.
type blobBody struct {
	r          io.Reader
	blob       int
	size, left int64
}

func (b *blobBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = fmt.Errorf("%w: blob %d truncated: the delta ends after %d of its %d bytes", ErrCorrupt, b.blob, b.size-b.left, b.size)
	}
	return n, err
}

// blobReader names blob i in the errors of its verified reader.
type blobReader struct {
	r    io.Reader
	blob int
}

func (b *blobReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("%w: blob %d: %w", ErrCorrupt, b.blob, err)
	}
	return n, err
}

type progressReader struct {
	r     io.Reader
	done  *int64
	total int64
	fn    func(done, total int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	*p.done += int64(n)
	if p.fn != nil && n > 0 {
		p.fn(*p.done, p.total)
	}
	return n, err
}

// transformBase writes E(T(base)), bsdiff-x86's base (FORMAT.md), to a
// scratch file the patcher reads by random access; cleanup removes it.
func (a *applier) transformBase(base io.ReaderAt, baseSize int64, xp exefilter.Params, zBase zsections.Params) (*os.File, int64, func(), error) {
	lo := exefilter.Analyze(base, baseSize, xp.Layout.Forms)
	tmp, err := os.CreateTemp(a.work, "xbase-")
	if err != nil {
		return nil, 0, nil, err
	}
	cleanup := func() { tmp.Close(); os.Remove(tmp.Name()) }
	src := zsections.NewExpander(exefilter.NewEncoder(io.NewSectionReader(base, 0, baseSize), lo), zBase)
	n, err := io.Copy(tmp, src)
	if err != nil {
		cleanup()
		return nil, 0, nil, fmt.Errorf("transforming base: %w", asCorrupt(err))
	}
	return tmp, n, cleanup, nil
}
