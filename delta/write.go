package delta

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/opencontainers/go-digest"
	"github.com/skiff-dev/skiff/delta/format"
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
	lean := d.opts.Lean && d.opts.Solid
	made := madePayloads(plans, targetInfo)
	for i, li := range targetInfo {
		if li == nil {
			continue
		}
		dict := bestDictLayer(li, baseInfo)
		m.Layers[i].DictLayer = dict
		var b []byte
		var window, rawSize int64
		var isDelta, plain bool
		var err error
		if lean {
			// Version 5: a lean skeleton delta, against nothing if need be.
			var codec string
			b, window, rawSize, plain, codec, err = leanSkeleton(li.skeleton, baseInfo, dict, made, d.level(), d.opts.BrotliQuality)
			m.Layers[i].SkeletonCodec = codec
			isDelta = true
			m.Version = max(m.Version, 5)
		} else {
			b, window, rawSize, isDelta, plain, err = compressSkeleton(li.skeleton, baseInfo, dict, d.level(), d.opts.Solid)
		}
		if err != nil {
			return nil, fmt.Errorf("skeleton of layer %d: %w", i, err)
		}
		m.Layers[i].SkeletonDelta, m.Layers[i].SkeletonPlain = isDelta, plain
		if d.opts.Solid && isDelta {
			m.Version = max(m.Version, 3) // its headers may leave checksums out
		}
		if !lean && d.opts.Solid && isDelta && d.opts.BrotliQuality != 0 {
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
		d.rep.Largest = append(d.rep.Largest, FileCost{Path: p.path, Encoder: p.op.Encoder, Transform: p.transform, Size: p.op.Size, Bytes: cost})
	}
	sort.SliceStable(d.rep.Largest, func(i, j int) bool { return d.rep.Largest[i].Bytes > d.rep.Largest[j].Bytes })
	if len(d.rep.Largest) > 20 {
		d.rep.Largest = d.rep.Largest[:20]
	}
	for _, p := range plans {
		m.Ops = append(m.Ops, p.op.Op)
		m.Limits.MaxPayload = max(m.Limits.MaxPayload, p.op.Size)
		m.Limits.MaxExpanded = max(m.Limits.MaxExpanded, p.op.Size, p.expanded)
		if p.op.NewExecutable() {
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
	if m.Version >= 5 {
		if d.opts.Keep {
			var kept int64
			m.Base.Keep, kept = keepOf(m, plans, baseInfo, targetInfo)
			m.Version = 6
			m.Limits.Scratch = scratchKept(m, plans, baseInfo, targetInfo, kept)
		} else {
			m.Limits.Scratch = scratchOf(m, plans, baseInfo)
		}
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("internal error: the delta written would be invalid: %w", err)
	}
	// The header as a device reads it: written, then read back (signature
	// block, decompression, JSON, validation) before any of it goes out.
	var hdr bytes.Buffer
	if _, err := format.WriteHeader(&hdr, m, d.opts.Signers...); err != nil {
		return nil, err
	}
	if _, err := format.ReadHeader(bytes.NewReader(hdr.Bytes())); err != nil {
		return nil, fmt.Errorf("internal error: the header written does not read back: %w", err)
	}
	hn, err := w.Write(hdr.Bytes())
	if err != nil {
		return nil, err
	}
	total := int64(hn)
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
	d.rep.HeaderBytes = int64(hn)
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

// scratchOf is limits.scratch: what applying m writes to its work
// directory at most (FORMAT.md, "limits").
func scratchOf(m *Manifest, plans []*planned, baseInfo []*layerInfo) int64 {
	var n int64
	for _, b := range baseInfo {
		n += b.size // the base's files in the store (at most its tars)
	}
	for _, p := range plans {
		n += p.op.Size // the payloads the ops make
	}
	for _, l := range m.Layers {
		if l.Skeleton == nil {
			continue
		}
		n += l.Size + 2*m.Limits.MaxSkeleton // the tar; the skeleton, patched and filled
		if m.Target.Distribution != nil {
			n += l.Size // its compressed blob, at most as big
		}
	}
	for _, s := range m.Streams {
		for i, r := range s.Regions {
			if i != format.RegionLiterals {
				n += r // spilled
			}
		}
	}
	return n + 3*m.Limits.MaxExpanded // one file patched: its base transformed, the output, the controls
}
