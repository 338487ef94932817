package bsdiff

import (
	"context"
	"fmt"
	"math"
)

// MaxInputSize is the largest old or new file the differ accepts. Suffix
// array entries are int32, so positions must fit in 31 bits.
const MaxInputSize = math.MaxInt32 - 1

// SuffixArray returns the suffix array of text: the starting positions of
// all suffixes of text in ascending lexicographic order (a proper prefix
// sorts before every longer string it starts). It runs in O(len(text)) time
// with the SA-IS algorithm (Nong, Zhang and Chan, 2009) and needs, besides
// the 4 bytes per input byte of the result, a type bitmap of one bit per
// byte per recursion level and a bucket table per level (256 entries at the
// top level; one int32 per reduced symbol below it, taken from the unused
// part of the result when it fits, as it does for typical inputs).
//
// ctx is checked between the algorithm's phases; on cancellation the partial
// result is discarded and ctx's error returned. Inputs of MaxInputSize bytes
// or more are rejected with ErrTooLarge.
func SuffixArray(ctx context.Context, text []byte) ([]int32, error) {
	if len(text) > MaxInputSize {
		return nil, fmt.Errorf("suffix array of %d bytes (limit %d): %w", len(text), MaxInputSize, ErrTooLarge)
	}
	sa := make([]int32, len(text))
	if err := sais(ctx, text, sa, 256, nil); err != nil {
		return nil, err
	}
	return sa, nil
}

// bitset is a fixed-size set of small integers.
type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) set(i int)      { b[i>>6] |= 1 << (uint(i) & 63) }
func (b bitset) get(i int) bool { return b[i>>6]&(1<<(uint(i)&63)) != 0 }

// isLMS reports whether position i is LMS: S-type with an L-type left
// neighbour.
func isLMS(stype bitset, i int) bool { return i > 0 && stype.get(i) && !stype.get(i-1) }

// symbol is the alphabet of one SA-IS level: bytes at the top, int32 names
// of LMS substrings in the recursive levels.
type symbol interface{ ~byte | ~int32 }

// sais writes into sa (len(sa) == len(text)) the suffix array of text, whose
// symbols are all in [0, k). Conceptually text is followed by a unique
// sentinel smaller than every symbol; the sentinel is never stored.
// work is scratch space that sais may use for its bucket table if it holds
// at least k entries; otherwise the table is allocated.
//
// Notation: suffix i is S-type if it is smaller than suffix i+1, L-type if
// larger; the last suffix is L-type (the sentinel after it is smaller). An
// LMS position is an S-type position whose left neighbour is L-type.
func sais[T symbol](ctx context.Context, text []T, sa []int32, k int, work []int32) error {
	n := len(text)
	switch n {
	case 0:
		return nil
	case 1:
		sa[0] = 0
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Classify every position.
	stype := newBitset(n)
	for i := n - 2; i >= 0; i-- {
		if text[i] < text[i+1] || (text[i] == text[i+1] && stype.get(i+1)) {
			stype.set(i)
		}
	}

	var bkt []int32
	if len(work) >= k {
		bkt = work[:k]
	} else {
		bkt = make([]int32, k)
	}

	// Stage 1: sort the LMS substrings by placing the LMS positions at the
	// ends of their buckets and inducing L- then S-type positions.
	for i := range sa {
		sa[i] = -1
	}
	bucketEnds(text, bkt)
	for i := 1; i < n; i++ {
		if isLMS(stype, i) {
			c := text[i]
			bkt[c]--
			sa[bkt[c]] = int32(i)
		}
	}
	induceL(text, sa, bkt, stype)
	induceS(text, sa, bkt, stype)
	if err := ctx.Err(); err != nil {
		return err
	}

	// Move the sorted LMS positions to the front of sa.
	n1 := 0
	for i := 0; i < n; i++ {
		if isLMS(stype, int(sa[i])) {
			sa[n1] = sa[i]
			n1++
		}
	}

	// Name the LMS substrings: equal substrings get equal names, and names
	// grow with the substrings' order. Names are stored at n1 + pos/2, which
	// is unique per LMS position because LMS positions are at least two
	// apart, and stays inside sa because n1 <= n/2.
	for i := n1; i < n; i++ {
		sa[i] = -1
	}
	names := 0
	prev := -1
	for i := 0; i < n1; i++ {
		pos := int(sa[i])
		if prev < 0 || !equalLMS(text, stype, pos, prev) {
			names++
			prev = pos
		}
		sa[n1+pos/2] = int32(names - 1)
	}
	// Gather the names, in text order, into the tail of sa: that is the
	// reduced string s1.
	j := n - 1
	for i := n - 1; i >= n1; i-- {
		if sa[i] >= 0 {
			sa[j] = sa[i]
			j--
		}
	}
	s1 := sa[n-n1:]
	sa1 := sa[:n1]

	// Stage 2: sort the suffixes of the reduced string, recursing only when
	// two LMS substrings share a name.
	if names < n1 {
		// sa[n1:n-n1] is free until stage 3: lend it to the recursion.
		if err := sais(ctx, s1, sa1, names, sa[n1:n-n1]); err != nil {
			return err
		}
	} else {
		for i := 0; i < n1; i++ {
			sa1[s1[i]] = int32(i)
		}
	}

	// Stage 3: the sorted LMS suffixes seed the final induction. Reuse s1
	// to map reduced indices back to text positions.
	j = 0
	for i := 1; i < n; i++ {
		if isLMS(stype, i) {
			s1[j] = int32(i)
			j++
		}
	}
	for i := 0; i < n1; i++ {
		sa1[i] = s1[sa1[i]]
	}
	for i := n1; i < n; i++ {
		sa[i] = -1
	}
	bucketEnds(text, bkt)
	// Place from the largest down; a target slot is never left of i, so no
	// unplaced entry is overwritten.
	for i := n1 - 1; i >= 0; i-- {
		p := sa[i]
		sa[i] = -1
		c := text[p]
		bkt[c]--
		sa[bkt[c]] = p
	}
	induceL(text, sa, bkt, stype)
	induceS(text, sa, bkt, stype)
	return ctx.Err()
}

// equalLMS reports whether the LMS substrings starting at a and b (both LMS
// positions, a != b) are equal in symbols and types. A substring reaching
// the end of text includes the unique sentinel, so it equals no other.
func equalLMS[T symbol](text []T, stype bitset, a, b int) bool {
	n := len(text)
	for d := 0; ; d++ {
		if a+d == n || b+d == n {
			return false
		}
		if text[a+d] != text[b+d] || stype.get(a+d) != stype.get(b+d) {
			return false
		}
		if d > 0 && isLMS(stype, a+d) {
			// Types agree so far, so b+d is LMS too: both substrings end.
			return true
		}
	}
}

// bucketStarts sets bkt[c] to the index in sa where bucket c starts.
func bucketStarts[T symbol](text []T, bkt []int32) {
	clear(bkt)
	for _, c := range text {
		bkt[c]++
	}
	var sum int32
	for c, cnt := range bkt {
		bkt[c] = sum
		sum += cnt
	}
}

// bucketEnds sets bkt[c] to the index in sa just past bucket c.
func bucketEnds[T symbol](text []T, bkt []int32) {
	clear(bkt)
	for _, c := range text {
		bkt[c]++
	}
	var sum int32
	for c, cnt := range bkt {
		sum += cnt
		bkt[c] = sum
	}
}

// induceL places every L-type suffix from the S-type ones already in sa,
// scanning left to right.
func induceL[T symbol](text []T, sa, bkt []int32, stype bitset) {
	bucketStarts(text, bkt)
	n := len(text)
	// The sentinel suffix comes first and induces suffix n-1, which is
	// L-type.
	c := text[n-1]
	sa[bkt[c]] = int32(n - 1)
	bkt[c]++
	for i := 0; i < n; i++ {
		p := sa[i]
		if p <= 0 {
			continue
		}
		// While L-types are induced sa holds only LMS and L-type
		// positions, and p-1 is L-type exactly when text[p-1] >= text[p]
		// (before an LMS position by definition; before an L-type one
		// because a tie takes the type of the right neighbour). Comparing
		// text saves a random access to the type bitmap.
		if j := int(p) - 1; text[j] >= text[p] {
			c := text[j]
			sa[bkt[c]] = int32(j)
			bkt[c]++
		}
	}
}

// induceS places every S-type suffix from the L-type ones in sa, scanning
// right to left.
func induceS[T symbol](text []T, sa, bkt []int32, stype bitset) {
	bucketEnds(text, bkt)
	for i := len(text) - 1; i >= 0; i-- {
		p := sa[i]
		if p <= 0 {
			continue
		}
		if j := int(p) - 1; stype.get(j) {
			c := text[j]
			bkt[c]--
			sa[bkt[c]] = int32(j)
		}
	}
}
