package delta

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/layerfs"
)

// write lays out the blobs (skeletons, pack, op blobs), then writes header
// and body.
func (d *differ) write(ctx context.Context, m *Manifest, plans []*planned, baseInfo, targetInfo []*layerInfo, w io.Writer) (*Report, error) {
	type blobSrc struct {
		data []byte // in memory
		file string // or on disk
	}
	var srcs []blobSrc
	addBlob := func(b []byte, file string) (int, error) {
		var dg digest.Digest
		var size int64
		if file != "" {
			f, err := os.Open(file)
			if err != nil {
				return 0, err
			}
			defer f.Close()
			v := digest.SHA256.Digester()
			n, err := io.Copy(v.Hash(), f)
			if err != nil {
				return 0, err
			}
			dg, size = v.Digest(), n
		} else {
			dg, size = digest.FromBytes(b), int64(len(b))
		}
		m.Blobs = append(m.Blobs, Blob{Digest: dg, Size: size})
		srcs = append(srcs, blobSrc{data: b, file: file})
		return len(m.Blobs) - 1, nil
	}
	track := func(window int64) { m.Limits.MaxWindow = max(m.Limits.MaxWindow, window) }

	// Skeletons first: the device learns from them which payloads the ops make.
	for i, li := range targetInfo {
		if li == nil {
			continue
		}
		dict := bestDictLayer(li, baseInfo)
		m.Layers[i].DictLayer = dict
		b, window, rawSize, isDelta, plain, err := compressSkeleton(li.skeleton, baseInfo, dict, d.level(), d.opts.Solid)
		if err != nil {
			return nil, fmt.Errorf("skeleton of layer %d: %w", i, err)
		}
		m.Layers[i].SkeletonDelta, m.Layers[i].SkeletonPlain = isDelta, plain
		if d.opts.Solid && isDelta {
			m.Version = max(m.Version, 3) // its headers may leave checksums out
		}
		if d.opts.Solid && isDelta && d.opts.BrotliQuality != 0 {
			// Version 3: a skeleton delta needs no dictionary, so brotli
			// may code it; kept where smaller (npm pair: 35.2 -> 30.5 KB).
			bb, bwin, ok, err := brotliSkeleton(li.skeleton, baseInfo[dict].skeleton, len(b))
			if err != nil {
				return nil, fmt.Errorf("skeleton of layer %d: %w", i, err)
			}
			if ok {
				b, window = bb, bwin
				m.Layers[i].SkeletonCodec, m.Layers[i].SkeletonPlain = CodecBrotli, true
				m.Version = max(m.Version, 3)
			}
		}
		m.Limits.MaxSkeleton = max(m.Limits.MaxSkeleton, rawSize)
		j, err := addBlob(b, "")
		if err != nil {
			return nil, err
		}
		m.Layers[i].Skeleton = &j
		track(window)
		d.rep.SkeletonBytes += int64(len(b))
		sizes := []string{li.skeleton}
		if dict >= 0 {
			sizes = append(sizes, baseInfo[dict].skeleton)
		}
		for _, p := range sizes {
			if st, err := os.Stat(p); err == nil {
				m.Limits.MaxSkeleton = max(m.Limits.MaxSkeleton, st.Size())
			}
		}
	}
	// Solid streams (version 3), or the pack: every plain-zstd payload, in
	// ops order, as one frame.
	var packMembers []*planned
	for _, p := range plans {
		if p.op.Encoder == EncZstd && !d.opts.Solid {
			packMembers = append(packMembers, p)
		}
	}
	if d.opts.Solid {
		if err := d.writeStreams(ctx, m, plans, addBlob, track); err != nil {
			return nil, err
		}
	}
	if len(packMembers) > 0 {
		packFile := filepath.Join(d.work, "pack.zst")
		window, err := d.writePack(ctx, packFile, packMembers)
		if err != nil {
			return nil, err
		}
		i, err := addBlob(nil, packFile)
		if err != nil {
			return nil, err
		}
		track(window)
		for _, p := range packMembers {
			p.op.Blob = i
		}
		d.rep.OpBytes[EncZstd] = m.Blobs[i].Size
	}
	// Small zstd-dict payloads share frames: their bases, concatenated, are
	// the dictionary of their targets, concatenated.
	groups, err := d.dictGroups(ctx, plans)
	if err != nil {
		return nil, err
	}
	for _, p := range plans {
		if p.op.Encoder == EncZstd || p.inStream {
			continue
		}
		if g := groups[p]; g != nil {
			if g.blob >= 0 {
				p.op.Blob = g.blob
				continue
			}
			i, err := addBlob(g.data, "")
			if err != nil {
				return nil, err
			}
			g.blob, p.op.Blob = i, i
			track(g.window)
			d.rep.OpBytes[EncZstdDict] += int64(len(g.data))
			continue
		}
		i, err := addBlob(p.blob, "")
		if err != nil {
			return nil, err
		}
		p.op.Blob = i
		d.rep.OpBytes[p.op.Encoder] += int64(len(p.blob))
		track(p.window)
	}
	for _, p := range plans {
		cost := int64(len(p.blob))
		switch {
		case p.inStream:
			cost = p.cost
		case p.op.Encoder == EncZstd:
			cost = p.zstdSize
		}
		d.rep.Largest = append(d.rep.Largest, FileCost{Path: p.path, Encoder: p.op.Encoder, Size: p.op.Size, Bytes: cost})
	}
	sort.SliceStable(d.rep.Largest, func(i, j int) bool { return d.rep.Largest[i].Bytes > d.rep.Largest[j].Bytes })
	if len(d.rep.Largest) > 20 {
		d.rep.Largest = d.rep.Largest[:20]
	}
	for _, p := range plans {
		m.Ops = append(m.Ops, p.op)
		m.Limits.MaxPayload = max(m.Limits.MaxPayload, p.op.Size)
		m.Limits.MaxExpanded = max(m.Limits.MaxExpanded, p.op.Size, p.expanded)
		if newExecutable(p.op) {
			m.Version = max(m.Version, 4)
		}
		if g := p.op.Gzip; g != nil {
			m.Version = max(m.Version, 2)
			m.Limits.MaxExpanded = max(m.Limits.MaxExpanded, g.Size, g.BaseSize)
			d.rep.Gunzipped++
		}
		d.rep.Ops[p.op.Encoder]++
		d.rep.PayloadBytes[p.op.Encoder] += p.op.Size
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("internal error: the delta written would be invalid: %w", err)
	}
	hn, err := writeHeader(w, m, d.opts.Signers...)
	if err != nil {
		return nil, err
	}
	total := hn
	for _, s := range srcs {
		var n int64
		if s.file != "" {
			f, err := os.Open(s.file)
			if err != nil {
				return nil, err
			}
			n, err = io.Copy(w, f)
			f.Close()
			if err != nil {
				return nil, err
			}
		} else {
			k, err := w.Write(s.data)
			if err != nil {
				return nil, err
			}
			n = int64(k)
		}
		total += n
	}
	d.rep.HeaderBytes = hn
	d.rep.DeltaBytes = total
	return d.rep, nil
}

// writePack writes the pack: the members' contents as one zstd frame,
// whose window (returned) is no bigger than the content needs.
func (d *differ) writePack(ctx context.Context, path string, members []*planned) (int64, error) {
	var total int64
	for _, p := range members {
		total += p.size
	}
	window := windowFor(0, total)
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	enc, err := newEncoder(f, d.level(), window, nil)
	if err != nil {
		return 0, err
	}
	for _, p := range members {
		rc, err := d.store.Open(ctx, p.content)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(enc, rc)
		rc.Close()
		if err != nil {
			return 0, err
		}
	}
	if err := enc.Close(); err != nil {
		return 0, err
	}
	return window, f.Close()
}

// dictGroup is a zstd frame shared by several zstd-dict payloads.
type dictGroup struct {
	members        []*planned
	dictSize, size int64
	data           []byte
	window         int64
	blob           int
}

// groupMax is the largest payload put in a shared dictionary frame.
const groupMax = 256 << 10

// dictGroups gathers the small zstd-dict payloads, in ops order, into groups
// whose dictionaries stay within MaxDictBase, and compresses each group;
// a group is kept only where it is smaller than its members on their own.
func (d *differ) dictGroups(ctx context.Context, plans []*planned) (map[*planned]*dictGroup, error) {
	var groups []*dictGroup
	var cur *dictGroup
	for _, p := range plans {
		if p.op.Encoder != EncZstdDict || p.size > groupMax || p.baseSize > groupMax {
			continue
		}
		if cur == nil || cur.dictSize+p.baseSize > d.opts.MaxDictBase {
			cur = &dictGroup{blob: -1}
			groups = append(groups, cur)
		}
		cur.members = append(cur.members, p)
		cur.dictSize += p.baseSize
		cur.size += p.size
	}
	out := map[*planned]*dictGroup{}
	for _, g := range groups {
		if len(g.members) < 2 {
			continue
		}
		var dict, content []byte
		alone := 0
		for _, p := range g.members {
			b, err := d.readPayload(ctx, p.base)
			if err != nil {
				return nil, err
			}
			t, err := d.readPayload(ctx, p.content)
			if err != nil {
				return nil, err
			}
			dict, content = append(dict, b...), append(content, t...)
			alone += len(p.blob)
		}
		data, window, err := encodeZstdDict(dict, content, d.level())
		if err != nil {
			return nil, err
		}
		if len(data) >= alone {
			continue
		}
		g.data, g.window = data, window
		for _, p := range g.members {
			out[p] = g
		}
	}
	return out, nil
}

// bestDictLayer picks the base layer sharing the most payloads with li
// (ties: the lowest index); -1 when there is no base layer.
func bestDictLayer(li *layerInfo, baseInfo []*layerInfo) int {
	if len(baseInfo) == 0 {
		return -1
	}
	want := make(map[digest.Digest]bool, len(li.files))
	for _, f := range li.files {
		want[f.Payload] = true
	}
	best, bestN := len(baseInfo)-1, -1
	for i, b := range baseInfo {
		n := 0
		for _, f := range b.files {
			if want[f.Payload] {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	return best
}

// compressSkeleton returns the compressed skeleton blob, its zstd window,
// the size of what was compressed, and whether that is a skeleton delta.
// With a dictionary layer it tries the raw skeleton and the skeleton delta
// against that layer's skeleton, both with it as zstd dictionary, and keeps
// the smaller: the delta wins when headers changed (say every mtime), the
// raw form when they did not.
func compressSkeleton(path string, baseInfo []*layerInfo, dict int, level zstd.EncoderLevel, sums bool) (blob []byte, window, rawSize int64, isDelta, plain bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, 0, false, false, err
	}
	var base []byte
	if dict >= 0 {
		if base, err = os.ReadFile(baseInfo[dict].skeleton); err != nil {
			return nil, 0, 0, false, false, err
		}
	}
	// A base skeleton too big to be a dictionary within a device's memory
	// budget (its bytes plus a window covering them) is only the base of a
	// skeleton delta, compressed on its own in a small window (SkeletonPlain).
	zdict := base
	plain = len(base) > maxSkeletonDict
	if plain {
		zdict = nil
	}
	compress := func(content []byte) ([]byte, int64, error) {
		window := windowFor(int64(len(zdict)), int64(len(content)))
		if plain {
			window = plainSkeletonWindow
		}
		var buf bytes.Buffer
		enc, err := newEncoder(&buf, level, window, zdict)
		if err != nil {
			return nil, 0, err
		}
		if _, err := enc.Write(content); err != nil {
			return nil, 0, err
		}
		if err := enc.Close(); err != nil {
			return nil, 0, err
		}
		return buf.Bytes(), window, nil
	}
	blob, window, err = compress(raw)
	if err != nil || dict < 0 {
		return blob, window, int64(len(raw)), false, false, err
	}
	var d bytes.Buffer
	diffSkel := layerfs.DiffSkeleton
	if sums {
		diffSkel = layerfs.DiffSkeletonSums // version 3 readers compute checksums
	}
	if err := diffSkel(base, raw, &d); err != nil {
		return nil, 0, 0, false, false, err
	}
	dblob, dwindow, err := compress(d.Bytes())
	if err != nil {
		return nil, 0, 0, false, false, err
	}
	if len(dblob) < len(blob) {
		return dblob, dwindow, int64(max(d.Len(), len(raw))), true, plain, nil
	}
	return blob, window, int64(len(raw)), false, plain, nil
}

// A base skeleton is a zstd dictionary only up to maxSkeletonDict bytes:
// the device holds the dictionary and a window as big, which for the Go
// toolchain's 5.8 MB skeleton put apply over its 32 MiB budget. Bigger
// ones only serve as the base of a skeleton delta, whose frame has no
// dictionary and a small window (the Go toolchain's skeleton then costs
// 94.5 KB instead of 76.3 KB).
var maxSkeletonDict = 4 << 20 // a variable for tests

const plainSkeletonWindow = 1 << 20

// brotliSkeleton codes the skeleton delta of the target skeleton in file
// path against the base skeleton in file base with brotli (quality 11, a
// window covering it) and returns it when it is smaller than than bytes.
func brotliSkeleton(path, base string, than int) (blob []byte, window int64, ok bool, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, false, err
	}
	b, err := os.ReadFile(base)
	if err != nil {
		return nil, 0, false, err
	}
	var d bytes.Buffer
	if err := layerfs.DiffSkeletonSums(b, raw, &d); err != nil {
		return nil, 0, false, err
	}
	// A 1 MiB window, as plain zstd skeletons have: the device holds the
	// base skeleton besides, and a skeleton delta's matches are near (the
	// toolchain's 5.8 MB skeleton in an 8 MiB window put apply at 37 MiB).
	lgwin := min(streamWindowBits(int64(d.Len())), 20)
	var out bytes.Buffer
	w := brotli.NewWriterOptions(&out, brotli.WriterOptions{Quality: 11, LGWin: lgwin})
	if _, err := (&pieceWriter{w: w, piece: 64 << 10}).Write(d.Bytes()); err != nil {
		return nil, 0, false, err
	}
	if err := w.Close(); err != nil {
		return nil, 0, false, err
	}
	if out.Len() >= than {
		return nil, 0, false, nil
	}
	return out.Bytes(), 1 << lgwin, true, nil
}
