package layerfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// Skeleton delta records (SKELETON.md, "Skeleton deltas"): a target
// skeleton written relative to a base skeleton. Every other record is as in
// a skeleton.
const (
	// tagHeaderXor: svarint(base entry index − previous base entry index − 1)
	// ‖ n bytes XORed with that base entry's header group (same length n).
	tagHeaderXor = 0x11
	// tagPayloadXor: uvarint(size) ‖ 32 bytes XORed with the matched base
	// entry's payload digest.
	tagPayloadXor = 0x12
	// tagHeaderXorSum: as tagHeaderXor, but every tar header block of the
	// group has its checksum field (8 bytes at 148) in the canonical form
	// (6 octal digits, NUL, space) of its unsigned sum, so the XOR bytes
	// there are left zero and the patcher computes the field. A checksum
	// changes with every changed mtime or size and differs from header to
	// header: npm pair, 23 KB of its 30.5 KB brotli'd skeleton delta were
	// headers, mostly their checksums. Only readers of delta manifest
	// version 3 know this tag (DiffSkeletonSums).
	tagHeaderXorSum = 0x13
	// tagPayloadSame (lean deltas): the matched base entry's payload, of
	// the size the rebuilt header gives, followed by the zero padding to
	// the next block. Nothing else: an unchanged file costs one byte here.
	tagPayloadSame = 0x14
	// tagPayloadMade (lean deltas): a payload the caller makes (a skiff
	// delta's next op), of the size the header gives, then zero padding.
	// Its digest is not in the delta: PatchSkeleton writes a Made record,
	// and FillMade puts in the digest once the payload exists.
	tagPayloadMade = 0x15
)

// headerBlocks returns the offsets of the tar header blocks of header group
// g (meta headers and the entry's own), false if g is not such a sequence.
func headerBlocks(g []byte) ([]int, bool) {
	var offs []int
	for off := 0; off+blockSize <= len(g); {
		hdr := g[off : off+blockSize]
		offs = append(offs, off)
		if t := hdr[156]; isMetaType(t) || t == typePAXGlob {
			_, padded, err := metaDataLen(hdr)
			if err != nil || padded > int64(len(g)-off-blockSize) {
				return nil, false
			}
			off += blockSize + int(padded)
			continue
		}
		return offs, off+blockSize == len(g)
	}
	return nil, false
}

// canonicalSum writes the checksum of header block b into its field as
// GNU tar, Go's archive/tar and bsdtar do: 6 octal digits, NUL, space.
func canonicalSum(b []byte) {
	var sum int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// canonicalSums reports whether every header block of g holds the
// canonical form of its checksum.
func canonicalSums(g []byte) bool {
	offs, ok := headerBlocks(g)
	if !ok {
		return false
	}
	var b [blockSize]byte
	for _, off := range offs {
		copy(b[:], g[off:off+blockSize])
		canonicalSum(b[:])
		if !bytes.Equal(b[148:156], g[off+148:off+156]) {
			return false
		}
	}
	return true
}

// skelEntry is one entry of a base skeleton: where its header group is in
// the raw skeleton bytes and its payload digest.
type skelEntry struct {
	off, n  int
	payload []byte // 32 bytes, nil when none
}

// indexSkeleton lists the entries of a raw skeleton and maps paths to them.
func indexSkeleton(raw []byte) ([]skelEntry, map[string]int, error) {
	sr, err := newSkelReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, err
	}
	var entries []skelEntry
	byName := map[string]int{}
	pos := len(skeletonMagic)
	for {
		start := pos
		rec, err := sr.next()
		if err == io.EOF {
			return entries, byName, nil
		}
		if err != nil {
			return nil, nil, err
		}
		pos += recordLen(rec)
		switch rec.tag {
		case tagHeader:
			e, err := parseGroup(rec.data)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %v", ErrBadSkeleton, err)
			}
			hdrOff := start + 1 + uvarintLen(uint64(rec.n))
			entries = append(entries, skelEntry{off: hdrOff, n: int(rec.n)})
			byName[e.Name] = len(entries) - 1
		case tagPayload:
			if len(entries) > 0 {
				entries[len(entries)-1].payload = digestBytes(rec.digest)
			}
		}
	}
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

// recordLen is the encoded length of a record.
func recordLen(r record) int {
	n := 1 + uvarintLen(uint64(r.n))
	switch r.tag {
	case tagHeader, tagLiteral:
		n += int(r.n)
	case tagPayload, tagEnd:
		n += 32
	}
	return n
}

// DiffSkeleton writes target, a raw skeleton, relative to base, another raw
// skeleton: each header group of a path the base has, with the same length,
// is XORed with the base's (mostly zeros when only times or sizes changed),
// and so is the payload digest after it. The result compresses far better
// than the target itself; PatchSkeleton turns it back.
func DiffSkeleton(base, target []byte, w io.Writer) error {
	return diffSkeleton(base, target, w, false, nil)
}

// DiffSkeletonSums is DiffSkeleton that leaves out the checksums of
// headers whose checksums are canonical (tagHeaderXorSum), for the device
// to compute. PatchSkeleton reads both forms.
func DiffSkeletonSums(base, target []byte, w io.Writer) error {
	return diffSkeleton(base, target, w, true, nil)
}

// DiffSkeletonLean is DiffSkeletonSums that also leaves out what the
// patcher can work out (SKELETON.md, "Lean skeleton deltas"): the size of
// a payload (the header has it), the zero padding after it, the digest of
// a payload the base entry of the same path has (tagPayloadSame), and
// the digest of every payload for which made reports true
// (tagPayloadMade): the caller makes those and learns their digests then.
// base may be nil: the delta is then against the empty skeleton.
// PatchSkeleton reads it; what it writes holds Made records until
// FillMade.
func DiffSkeletonLean(base, target []byte, w io.Writer, made func(digest.Digest) bool) error {
	if made == nil {
		made = func(digest.Digest) bool { return false }
	}
	return diffSkeleton(base, target, w, true, made)
}

func diffSkeleton(base, target []byte, w io.Writer, sums bool, made func(digest.Digest) bool) error {
	var entries []skelEntry
	byName := map[string]int{}
	if base != nil || made == nil {
		var err error
		if entries, byName, err = indexSkeleton(base); err != nil {
			return fmt.Errorf("base skeleton: %w", err)
		}
	}
	sr, err := newSkelReader(bytes.NewReader(target))
	if err != nil {
		return fmt.Errorf("target skeleton: %w", err)
	}
	bw := bufio.NewWriter(w)
	bw.Write(skeletonMagic[:])
	prev := -1
	matched := -1 // base entry of the last target header, or -1
	buf := make([]byte, 0, 64)
	var held *record // a record read ahead, to be handled next
	for {
		var rec record
		if held != nil {
			rec, held = *held, nil
		} else if rec, err = sr.next(); err == io.EOF {
			return bw.Flush()
		} else if err != nil {
			return fmt.Errorf("target skeleton: %w", err)
		}
		if rec.tag == tagPayload && made != nil {
			// Lean: the payload's size and zero padding are implied, and
			// so is its digest when the base entry has it or the caller
			// makes it.
			same := matched >= 0 && entries[matched].payload != nil && bytes.Equal(entries[matched].payload, digestBytes(rec.digest))
			if same || made(rec.digest) {
				pad := roundBlock(rec.n) - rec.n
				var next record
				if pad > 0 {
					if next, err = sr.next(); err != nil {
						return fmt.Errorf("target skeleton: %w", noEOF(err))
					}
					held = &next
				}
				if pad == 0 || (next.tag == tagZeros && next.n >= pad) {
					tag := byte(tagPayloadMade)
					if same {
						tag = tagPayloadSame
					}
					bw.WriteByte(tag)
					if next.n -= pad; pad > 0 && next.n == 0 {
						held = nil
					}
					continue
				}
			}
		}
		switch rec.tag {
		case tagHeader:
			matched = -1
			e, err := parseGroup(rec.data)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrBadSkeleton, err)
			}
			if i, ok := byName[e.Name]; ok && entries[i].n == len(rec.data) {
				matched = i
				tag := byte(tagHeaderXor)
				omitSums := sums && canonicalSums(rec.data)
				if omitSums {
					tag = tagHeaderXorSum
				}
				buf = append(buf[:0], tag)
				buf = binary.AppendVarint(buf, int64(i-prev-1))
				buf = binary.AppendUvarint(buf, uint64(len(rec.data)))
				bw.Write(buf)
				x := make([]byte, len(rec.data))
				b := base[entries[i].off : entries[i].off+entries[i].n]
				for k := range x {
					x[k] = rec.data[k] ^ b[k]
				}
				if omitSums {
					offs, _ := headerBlocks(rec.data)
					for _, off := range offs {
						clear(x[off+148 : off+156])
					}
				}
				bw.Write(x)
				prev = i
				continue
			}
		case tagPayload:
			if matched >= 0 && entries[matched].payload != nil {
				buf = append(buf[:0], tagPayloadXor)
				buf = binary.AppendUvarint(buf, uint64(rec.n))
				d := digestBytes(rec.digest)
				for k := range d {
					d[k] ^= entries[matched].payload[k]
				}
				bw.Write(append(buf, d...))
				continue
			}
		}
		writeRecord(bw, rec)
	}
}

// writeRecord writes a record as it was read.
func writeRecord(w *bufio.Writer, r record) {
	var b [1 + binary.MaxVarintLen64]byte
	n := binary.PutUvarint(b[1:], uint64(r.n))
	b[0] = r.tag
	w.Write(b[:1+n])
	switch r.tag {
	case tagHeader, tagLiteral:
		w.Write(r.data)
	case tagPayload, tagEnd:
		w.Write(digestBytes(r.digest))
	}
}

// FillMade copies a skeleton that PatchSkeleton wrote from r to w with
// each Made record replaced by a Payload record of the digest next gives,
// called once per Made record, in order, with the payload's size. What it
// writes is a finished skeleton, for Assemble.
func FillMade(r io.Reader, w io.Writer, next func(size int64) (digest.Digest, error)) error {
	sr, err := newSkelReader(r)
	if err != nil {
		return err
	}
	sr.made = true
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(skeletonMagic[:])
	for {
		rec, err := sr.next()
		if err == io.EOF {
			return bw.Flush()
		}
		if err != nil {
			return err
		}
		if rec.tag == tagMade {
			d, err := next(rec.n)
			if err != nil {
				return err
			}
			if d.Algorithm() != digest.SHA256 || d.Validate() != nil {
				return fmt.Errorf("%w: made payload has no sha256 digest: %q", ErrBadSkeleton, d)
			}
			rec = record{tag: tagPayload, n: rec.n, digest: d}
		}
		writeRecord(bw, rec)
	}
}

// PatchSkeleton reads a skeleton delta made by DiffSkeleton or
// DiffSkeletonSums against base and writes the target skeleton. Every
// index and length is checked; the output is then an ordinary skeleton,
// checked again when assembled. Lean records are refused.
func PatchSkeleton(base []byte, r io.Reader, w io.Writer) error {
	if base == nil {
		return fmt.Errorf("%w: base skeleton: none", ErrBadSkeleton)
	}
	return patchSkeleton(base, r, w, false)
}

// PatchSkeletonLean is PatchSkeleton that also reads the records of
// DiffSkeletonLean, against base or, when base is nil, the empty
// skeleton. For a made payload it writes a Made record, which Walk reads
// (File.Made) and FillMade replaces.
func PatchSkeletonLean(base []byte, r io.Reader, w io.Writer) error {
	return patchSkeleton(base, r, w, true)
}

func patchSkeleton(base []byte, r io.Reader, w io.Writer, lean bool) error {
	var entries []skelEntry
	if base != nil {
		var err error
		if entries, _, err = indexSkeleton(base); err != nil {
			return fmt.Errorf("base skeleton: %w", err)
		}
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var m [8]byte
	if _, err := io.ReadFull(br, m[:]); err != nil || m != skeletonMagic {
		return fmt.Errorf("%w: skeleton delta: bad magic", ErrBadSkeleton)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(skeletonMagic[:])
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: skeleton delta: %s", ErrBadSkeleton, fmt.Sprintf(format, args...))
	}
	prev, matched := -1, -1
	var data []byte
	var check walkCheck
	// The zero padding a lean payload record implies is merged with the
	// Zeros record that follows it, as in the skeleton the delta was made
	// from.
	var padding int64
	emit := func(rec record) {
		if rec.tag == tagZeros {
			rec.n += padding
		} else if padding > 0 {
			writeRecord(bw, record{tag: tagZeros, n: padding})
		}
		padding = 0
		writeRecord(bw, rec)
	}
	for {
		tag, err := br.ReadByte()
		if err != nil {
			return bad("ends before its End record")
		}
		switch tag {
		case tagPayloadSame, tagPayloadMade:
			if !lean {
				return bad("lean record %#x in a skeleton delta that may not have them", tag)
			}
			if check.cur == nil || check.hasPayload || check.cur.DataSize == 0 {
				return bad("payload record %#x without an entry that has data", tag)
			}
			size := check.cur.DataSize
			rec := record{tag: tagMade, n: size}
			if tag == tagPayloadSame {
				if matched < 0 || entries[matched].payload == nil {
					return bad("Same payload without a matched base payload")
				}
				rec = record{tag: tagPayload, n: size, digest: digest.NewDigestFromBytes(digest.SHA256, entries[matched].payload)}
			}
			if err := check.record(rec); err != nil {
				return bad("%v", err)
			}
			emit(rec)
			padding = roundBlock(size) - size
			continue
		case tagHeaderXor, tagHeaderXorSum:
			delta, err := binary.ReadVarint(br)
			if err != nil {
				return bad("entry index: %v", err)
			}
			i := int64(prev) + 1 + delta
			if i < 0 || i >= int64(len(entries)) {
				return bad("base entry %d out of range", i)
			}
			n, err := binary.ReadUvarint(br)
			if err != nil || n != uint64(entries[i].n) {
				return bad("header length %d for base entry of %d", n, entries[i].n)
			}
			if cap(data) < int(n) {
				data = make([]byte, n)
			}
			data = data[:n]
			if _, err := io.ReadFull(br, data); err != nil {
				return bad("header truncated")
			}
			b := base[entries[i].off : entries[i].off+entries[i].n]
			for k := range data {
				data[k] ^= b[k]
			}
			if tag == tagHeaderXorSum {
				offs, ok := headerBlocks(data)
				if !ok {
					return bad("rebuilt header group of base entry %d is not a sequence of tar headers", i)
				}
				for _, off := range offs {
					canonicalSum(data[off : off+blockSize])
				}
			}
			rec := record{tag: tagHeader, n: int64(n), data: data}
			if err := check.record(rec); err != nil {
				return bad("rebuilt %v", err)
			}
			emit(rec)
			prev, matched = int(i), int(i)
		case tagPayloadXor:
			size, err := binary.ReadUvarint(br)
			if err != nil || size == 0 || size > 1<<62 {
				return bad("payload size")
			}
			if matched < 0 || entries[matched].payload == nil {
				return bad("payload XOR without a matched base payload")
			}
			var d [32]byte
			if _, err := io.ReadFull(br, d[:]); err != nil {
				return bad("payload truncated")
			}
			for k := range d {
				d[k] ^= entries[matched].payload[k]
			}
			rec := record{tag: tagPayload, n: int64(size), digest: digest.NewDigestFromBytes(digest.SHA256, d[:])}
			if err := check.record(rec); err != nil {
				return bad("%v", err)
			}
			emit(rec)
		default:
			// An ordinary record: let the skeleton reader check it.
			if err := br.UnreadByte(); err != nil {
				return err
			}
			sr := &skelReader{r: br}
			rec, err := sr.next()
			if err != nil && err != io.EOF {
				return err
			}
			if rec.tag == tagHeader {
				matched = -1
			}
			if err := check.record(rec); err != nil {
				return bad("%v", err)
			}
			emit(rec)
			if rec.tag == tagEnd {
				return bw.Flush()
			}
		}
	}
}

// walkCheck applies Walk's checks to the records PatchSkeleton writes, so
// that what it writes is a skeleton Walk accepts: every header group
// parses, and a Payload record follows exactly the entries with data, of
// their size.
type walkCheck struct {
	cur        *Entry
	hasPayload bool
}

func (c *walkCheck) record(r record) error {
	switch r.tag {
	case tagHeader:
		if err := c.flush(); err != nil {
			return err
		}
		e, err := parseGroup(r.data)
		if err != nil {
			return fmt.Errorf("header: %v", err)
		}
		c.cur, c.hasPayload = &e, false
	case tagPayload, tagMade:
		if c.cur == nil || c.hasPayload || c.cur.DataSize != r.n {
			return fmt.Errorf("Payload record of %d bytes does not belong to an entry", r.n)
		}
		c.hasPayload = true
	case tagEnd:
		return c.flush()
	}
	return nil
}

func (c *walkCheck) flush() error {
	if c.cur != nil && c.cur.DataSize > 0 && !c.hasPayload {
		return fmt.Errorf("entry %q has %d bytes of data but no Payload record", c.cur.Name, c.cur.DataSize)
	}
	c.cur = nil
	return nil
}
