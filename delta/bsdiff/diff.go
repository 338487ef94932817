package bsdiff

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"

	dsbzip2 "github.com/dsnet/compress/bzip2"
)

// Emitter receives a delta as the differ produces it. For every control
// triple the differ calls EmitControl once, then EmitDiff zero or more times
// with c.Add bytes in total, then EmitExtra zero or more times with c.Copy
// bytes in total. The slices are valid only during the call and must not be
// modified. An error from the Emitter stops Diff and is returned by it.
type Emitter interface {
	EmitControl(c Control) error
	// EmitDiff receives diff bytes: new[i] - old[j] modulo 256.
	EmitDiff(p []byte) error
	// EmitExtra receives bytes of new taken literally.
	EmitExtra(p []byte) error
}

// chunkSize bounds the scratch buffers of the differ and the patcher.
const chunkSize = 32 << 10

// prefixTableMin is the old size from which the differ builds a 2-byte
// prefix table (512 KiB) to narrow its suffix array searches.
const prefixTableMin = 1 << 16

// Diff computes the bsdiff delta of new against old and hands it to e.
//
// The algorithm is the classic one from Colin Percival's "Naive
// differences of executable code": for each position of new, find the
// longest match in old through old's suffix array; accept it once it beats
// the approximate match already being followed (the previous alignment) by
// more than 8 bytes, or equals it exactly; then extend the previous and the
// new alignment forwards and backwards while at least half the bytes agree,
// split any overlap where it scores best, and emit (diff, extra, seek).
//
// Memory: old and new as given, plus 4 bytes per old byte for the suffix
// array (plus during its construction one bit per old byte per SA-IS level
// and, only where the reduced alphabet outgrows the free part of the
// array, a transient bucket table of at most 2 bytes per old byte), a
// 512 KiB prefix table when old is 64 KiB or more, and a 32 KiB scratch
// buffer. WritePatch adds three bzip2 encoders (a few MB each) and the
// compressed output; DiffStreams adds the returned streams (len(new) bytes
// plus ctrl). With Go's default GOGC the process's peak RSS can approach
// twice the live heap; set GOMEMLIMIT where that matters. Time is O(len(old)) for the suffix array and
// O(len(new)·log len(old)·m) for the scan, where m is the typical match
// length; highly repetitive inputs are the slow case, so ctx is checked
// periodically and its error returned on cancellation.
//
// Inputs larger than MaxInputSize are rejected with ErrTooLarge.
func Diff(ctx context.Context, old, new []byte, e Emitter) error {
	if len(old) > MaxInputSize {
		return fmt.Errorf("old file of %d bytes (limit %d): %w", len(old), MaxInputSize, ErrTooLarge)
	}
	if len(new) > MaxInputSize {
		return fmt.Errorf("new file of %d bytes (limit %d): %w", len(new), MaxInputSize, ErrTooLarge)
	}
	sa, err := SuffixArray(ctx, old)
	if err != nil {
		return err
	}
	d := &differ{old: old, new: new, sa: sa, e: e}
	if len(old) >= prefixTableMin {
		d.buildPrefixTable()
	}
	return d.run(ctx)
}

type differ struct {
	old, new []byte
	sa       []int32
	// prefix[k] is the first index in sa of the suffixes whose first two
	// bytes are k>>8, k&0xff; prefix[k+1] is one past the last. Suffixes
	// shorter than two bytes are in no range.
	prefix  []int32
	e       Emitter
	scratch [chunkSize]byte
}

func (d *differ) buildPrefixTable() {
	// Suffixes sharing a 2-byte prefix are contiguous in sa, and a 1-byte
	// suffix c sorts just before the range of c, 0, so a count per key plus
	// a prefix sum that skips the lone 1-byte suffix gives the ranges.
	count := make([]int32, 1<<16+1)
	old := d.old
	for i := 0; i+1 < len(old); i++ {
		count[int(old[i])<<8|int(old[i+1])]++
	}
	d.prefix = count
	last := int(old[len(old)-1])
	var sum int32
	for k := 0; k < 1<<16; k++ {
		if k == last<<8 {
			sum++ // the 1-byte suffix old[len-1:] sits here
		}
		c := count[k]
		count[k] = sum
		sum += c
	}
	count[1<<16] = sum
}

// search returns the position in old and length of the longest prefix of
// q that occurs in old.
func (d *differ) search(q []byte) (pos, n int) {
	old, sa := d.old, d.sa
	lo, hi := 0, len(sa)
	if d.prefix != nil && len(q) >= 2 {
		k := int(q[0])<<8 | int(q[1])
		if a, b := int(d.prefix[k]), int(d.prefix[k+1]); a < b {
			lo, hi = a, b
		}
	}
	if lo == hi {
		return 0, 0
	}
	first, end := lo, hi
	// Find the first suffix in [lo, hi) that is >= q.
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if bytes.Compare(old[sa[mid]:], q) < 0 {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	// The longest match is with a neighbour of the insertion point.
	if lo < end {
		pos = int(sa[lo])
		n = matchLen(old[pos:], q)
	}
	if lo > first {
		p := int(sa[lo-1])
		if m := matchLen(old[p:], q); m > n {
			pos, n = p, m
		}
	}
	return pos, n
}

// matchLen returns the length of the common prefix of a and b.
func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	i := 0
	for ; i+8 <= n; i += 8 {
		x := binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:])
		if x != 0 {
			return i + bits.TrailingZeros64(x)>>3
		}
	}
	for ; i < n && a[i] == b[i]; i++ {
	}
	return i
}

func (d *differ) run(ctx context.Context) error {
	old, new := d.old, d.new
	oldN, newN := len(old), len(new)

	// The previous alignment: new[lastScan:] pairs with old[lastPos:], and
	// lastOffset = lastPos-lastScan carries it forward.
	var lastScan, lastPos, lastOffset int
	// The current candidate match: new[scan:scan+n] == old[pos:pos+n].
	var scan, pos, n int
	steps := 0

	for scan < newN {
		// score counts how many bytes of new[scan:scan+n] the previous
		// alignment already gets right; a new match is only worth a
		// control triple if it is clearly better.
		score := 0
		scan += n
		counted := scan
		for ; scan < newN; scan++ {
			if steps++; steps&0x3ff == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			pos, n = d.search(new[scan:])
			for ; counted < scan+n; counted++ {
				if j := counted + lastOffset; j < oldN && old[j] == new[counted] {
					score++
				}
			}
			if (n == score && n != 0) || n > score+8 {
				break
			}
			if j := scan + lastOffset; j < oldN && old[j] == new[scan] {
				score--
			}
		}
		if n == score && scan != newN {
			continue // the previous alignment still fits: keep going
		}

		// Extend the previous alignment forwards from lastScan while at
		// least half the bytes match, keeping the best-scoring length.
		lenF := 0
		for i, s, best := 0, 0, 0; lastScan+i < scan && lastPos+i < oldN; {
			if old[lastPos+i] == new[lastScan+i] {
				s++
			}
			i++
			if 2*s-i > 2*best-lenF {
				best, lenF = s, i
			}
		}
		// Extend the new match backwards from scan the same way.
		lenB := 0
		if scan < newN {
			for i, s, best := 1, 0, 0; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if 2*s-i > 2*best-lenB {
					best, lenB = s, i
				}
			}
		}
		// If the extensions overlap, cut where the forward one stops
		// paying off against the backward one.
		if overlap := lastScan + lenF - (scan - lenB); overlap > 0 {
			s, best, lenS := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastScan+lenF-overlap+i] == old[lastPos+lenF-overlap+i] {
					s++
				}
				if new[scan-lenB+i] == old[pos-lenB+i] {
					s--
				}
				if s > best {
					best, lenS = s, i+1
				}
			}
			lenF += lenS - overlap
			lenB -= lenS
		}

		c := Control{
			Add:  int64(lenF),
			Copy: int64((scan - lenB) - (lastScan + lenF)),
			Seek: int64((pos - lenB) - (lastPos + lenF)),
		}
		if err := d.emit(c, lastScan, lastPos); err != nil {
			return err
		}
		lastScan, lastPos, lastOffset = scan-lenB, pos-lenB, pos-scan
	}
	return nil
}

// emit hands one triple and its bytes to the Emitter.
func (d *differ) emit(c Control, newAt, oldAt int) error {
	if err := d.e.EmitControl(c); err != nil {
		return err
	}
	add := int(c.Add)
	for done := 0; done < add; {
		m := min(add-done, len(d.scratch))
		nb := d.new[newAt+done : newAt+done+m]
		ob := d.old[oldAt+done : oldAt+done+m]
		buf := d.scratch[:m]
		for i := range buf {
			buf[i] = nb[i] - ob[i]
		}
		if err := d.e.EmitDiff(buf); err != nil {
			return err
		}
		done += m
	}
	if c.Copy > 0 {
		from := newAt + add
		if err := d.e.EmitExtra(d.new[from : from+int(c.Copy)]); err != nil {
			return err
		}
	}
	return nil
}

// DiffStreams computes the delta of new against old as three raw streams:
// ctrl in the compact encoding (per triple uvarint(Add) || uvarint(Copy) ||
// varint(Seek), encoding/binary varints, no count or terminator), diff and
// extra as bsdiff defines them. Apply them with PatchStreams and
// len(new) as newSize. The streams are uncompressed; diff is mostly zeros
// and compresses well with any general-purpose compressor.
func DiffStreams(ctx context.Context, old, new []byte) (ctrl, diff, extra []byte, err error) {
	var s streams
	if err := Diff(ctx, old, new, &s); err != nil {
		return nil, nil, nil, err
	}
	return s.ctrl, s.diff, s.extra, nil
}

type streams struct{ ctrl, diff, extra []byte }

func (s *streams) EmitControl(c Control) error { s.ctrl = appendControl(s.ctrl, c); return nil }
func (s *streams) EmitDiff(p []byte) error     { s.diff = append(s.diff, p...); return nil }
func (s *streams) EmitExtra(p []byte) error    { s.extra = append(s.extra, p...); return nil }

// WritePatch writes a BSDIFF40 file for new against old to w: the 32-byte
// header and the bzip2-compressed (level 9, as bsdiff 4.3) control, diff
// and extra blocks. The result is interoperable with bsdiff/bspatch 4.3 and
// other BSDIFF40 implementations. The three blocks are compressed while
// diffing and buffered (compressed) in memory, since the header that
// precedes them records their lengths.
func WritePatch(ctx context.Context, old, new []byte, w io.Writer) error {
	var bufs [3]bytes.Buffer
	var zs [3]*dsbzip2.Writer
	for i := range zs {
		z, err := dsbzip2.NewWriter(&bufs[i], &dsbzip2.WriterConfig{Level: dsbzip2.BestCompression})
		if err != nil {
			return fmt.Errorf("bsdiff: bzip2 writer: %w", err)
		}
		zs[i] = z
	}
	pw := &patchWriter{ctrl: zs[0], diff: zs[1], extra: zs[2]}
	if err := Diff(ctx, old, new, pw); err != nil {
		return err
	}
	for i, z := range zs {
		if err := z.Close(); err != nil {
			return fmt.Errorf("bsdiff: bzip2 block %d: %w", i, err)
		}
	}
	var hdr [headerSize]byte
	copy(hdr[:], magic)
	putOfft(hdr[8:], int64(bufs[0].Len()))
	putOfft(hdr[16:], int64(bufs[1].Len()))
	putOfft(hdr[24:], int64(len(new)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	for i := range bufs {
		if _, err := bufs[i].WriteTo(w); err != nil {
			return err
		}
	}
	return nil
}

// patchWriter feeds a differ's output to three compressors in the
// BSDIFF40 control encoding.
type patchWriter struct {
	ctrl, diff, extra io.Writer
	rec               [24]byte
}

func (p *patchWriter) EmitControl(c Control) error {
	putOfft(p.rec[0:], c.Add)
	putOfft(p.rec[8:], c.Copy)
	putOfft(p.rec[16:], c.Seek)
	_, err := p.ctrl.Write(p.rec[:])
	return err
}
func (p *patchWriter) EmitDiff(b []byte) error  { _, err := p.diff.Write(b); return err }
func (p *patchWriter) EmitExtra(b []byte) error { _, err := p.extra.Write(b); return err }
