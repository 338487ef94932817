package gnugzip

import "io"

// This file holds the block writer: symbol buffering (ct_tally), Huffman
// tree construction with gzip's heap and depth tie-break, bit-length
// overflow fixing, the stored/static/dynamic choice and the bit output.

const (
	maxBits     = 15
	maxBLBits   = 7
	endBlock    = 256
	lengthCodes = 29
	literals    = 256
	lCodes      = literals + 1 + lengthCodes // 286
	dCodes      = 30
	blCodes     = 19
	heapSize    = 2*lCodes + 1
	litBufSize  = 0x8000
	distBufSize = litBufSize

	rep3to6     = 16
	repz3to10   = 17
	repz11to138 = 18

	storedBlock = 0
	staticTrees = 1
	dynTrees    = 2
)

var (
	extraLBits  = [lengthCodes]int{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	extraDBits  = [dCodes]int{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	extraBLBits = [blCodes]int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 7}
	blOrder     = [blCodes]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// ctData is a tree node. gzip overlays Freq with Code and Dad with Len;
// keeping them apart changes nothing because no field is read after the
// one sharing its storage has been written.
type ctData struct {
	freq uint16
	code uint16
	dad  uint16
	len  uint16
}

// Read-only tables computed once (ct_init).
var (
	staticLTree [lCodes + 2]ctData
	staticDTree [dCodes]ctData
	lengthCode  [maxMatch - minMatch + 1]uint8
	distCode    [512]uint8
	baseLength  [lengthCodes]int
	baseDist    [dCodes]int
)

func init() {
	length := 0
	code := 0
	for code = 0; code < lengthCodes-1; code++ {
		baseLength[code] = length
		for n := 0; n < 1<<extraLBits[code]; n++ {
			lengthCode[length] = uint8(code)
			length++
		}
	}
	// Length 258 has two codes (284+5 bits or 285); use the shorter.
	lengthCode[length-1] = uint8(code)

	dist := 0
	for code = 0; code < 16; code++ {
		baseDist[code] = dist
		for n := 0; n < 1<<extraDBits[code]; n++ {
			distCode[dist] = uint8(code)
			dist++
		}
	}
	dist >>= 7
	for ; code < dCodes; code++ {
		baseDist[code] = dist << 7
		for n := 0; n < 1<<(extraDBits[code]-7); n++ {
			distCode[256+dist] = uint8(code)
			dist++
		}
	}

	var blCount [maxBits + 1]uint16
	n := 0
	for ; n <= 143; n++ {
		staticLTree[n].len = 8
		blCount[8]++
	}
	for ; n <= 255; n++ {
		staticLTree[n].len = 9
		blCount[9]++
	}
	for ; n <= 279; n++ {
		staticLTree[n].len = 7
		blCount[7]++
	}
	for ; n <= 287; n++ {
		staticLTree[n].len = 8
		blCount[8]++
	}
	genCodes(staticLTree[:], lCodes+1, &blCount)
	for n := 0; n < dCodes; n++ {
		staticDTree[n].len = 5
		staticDTree[n].code = uint16(biReverse(uint32(n), 5))
	}
}

func dCode(dist int) int {
	if dist < 256 {
		return int(distCode[dist])
	}
	return int(distCode[256+(dist>>7)])
}

func biReverse(code uint32, length int) uint32 {
	var res uint32
	for {
		res |= code & 1
		code >>= 1
		res <<= 1
		length--
		if length <= 0 {
			break
		}
	}
	return res >> 1
}

// genCodes assigns canonical codes from the bit-length counts.
func genCodes(tree []ctData, maxCode int, blCount *[maxBits + 1]uint16) {
	var nextCode [maxBits + 1]uint16
	var code uint16
	for bits := 1; bits <= maxBits; bits++ {
		code = (code + blCount[bits-1]) << 1
		nextCode[bits] = code
	}
	for n := 0; n <= maxCode; n++ {
		l := int(tree[n].len)
		if l == 0 {
			continue
		}
		tree[n].code = uint16(biReverse(uint32(nextCode[l]), l))
		nextCode[l]++
	}
}

type treeDesc struct {
	dyn       []ctData
	stat      []ctData // nil for the bit-length tree
	extra     []int
	extraBase int
	elems     int
	maxLength int
	maxCode   int
}

// trees is the block state: the symbol buffers, the three dynamic trees
// and the bit writer.
type trees struct {
	level int

	dynLTree [heapSize]ctData
	dynDTree [2*dCodes + 1]ctData
	blTree   [2*blCodes + 1]ctData
	lDesc    treeDesc
	dDesc    treeDesc
	blDesc   treeDesc

	heap    [2*lCodes + 1]int
	heapLen int
	heapMax int
	depth   [2*lCodes + 1]uint8
	blCount [maxBits + 1]uint16

	lBuf      [litBufSize]uint8
	dBuf      [distBufSize]uint16
	flagBuf   [litBufSize / 8]uint8
	lastLit   int
	lastDist  int
	lastFlags int
	flags     uint8
	flagBit   uint8

	optLen    uint64 // ulg in gzip: wraps like it
	staticLen uint64

	// bit output
	bitBuf uint64
	bitN   uint
	out    []byte
	w      io.Writer
	err    error
}

func (t *trees) reset(level int) {
	t.level = level
	t.lDesc = treeDesc{dyn: t.dynLTree[:], stat: staticLTree[:], extra: extraLBits[:], extraBase: literals + 1, elems: lCodes, maxLength: maxBits}
	t.dDesc = treeDesc{dyn: t.dynDTree[:], stat: staticDTree[:], extra: extraDBits[:], extraBase: 0, elems: dCodes, maxLength: maxBits}
	t.blDesc = treeDesc{dyn: t.blTree[:], stat: nil, extra: extraBLBits[:], extraBase: 0, elems: blCodes, maxLength: maxBLBits}
	clear(t.dynLTree[:])
	clear(t.dynDTree[:])
	clear(t.blTree[:])
	t.bitBuf, t.bitN = 0, 0
	t.out = t.out[:0]
	t.err = nil
	t.initBlock()
}

func (t *trees) initBlock() {
	for n := 0; n < lCodes; n++ {
		t.dynLTree[n].freq = 0
	}
	for n := 0; n < dCodes; n++ {
		t.dynDTree[n].freq = 0
	}
	for n := 0; n < blCodes; n++ {
		t.blTree[n].freq = 0
	}
	t.dynLTree[endBlock].freq = 1
	t.optLen, t.staticLen = 0, 0
	t.lastLit, t.lastDist, t.lastFlags = 0, 0, 0
	t.flags, t.flagBit = 0, 1
}

// tally is ct_tally: record a literal (dist 0) or a match (lc = length-3)
// and report whether the block should be flushed now.
func (d *deflater) tally(dist, lc int) bool {
	t := &d.t
	t.lBuf[t.lastLit] = uint8(lc)
	t.lastLit++
	if dist == 0 {
		t.dynLTree[lc].freq++
	} else {
		dist--
		t.dynLTree[int(lengthCode[lc])+literals+1].freq++
		t.dynDTree[dCode(dist)].freq++
		t.dBuf[t.lastDist] = uint16(dist)
		t.lastDist++
		t.flags |= t.flagBit
	}
	t.flagBit <<= 1
	if t.lastLit&7 == 0 {
		t.flagBuf[t.lastFlags] = t.flags
		t.lastFlags++
		t.flags, t.flagBit = 0, 1
	}
	// Every 4096 symbols at levels above 2, guess whether ending the block
	// here pays off.
	if t.level > 2 && t.lastLit&0xfff == 0 {
		outLength := uint64(t.lastLit) * 8
		inLength := uint64(d.strstart - d.blockStart)
		for dc := 0; dc < dCodes; dc++ {
			outLength += uint64(t.dynDTree[dc].freq) * uint64(5+extraDBits[dc])
		}
		outLength >>= 3
		if t.lastDist < t.lastLit/2 && outLength < inLength/2 {
			return true
		}
	}
	return t.lastLit == litBufSize-1 || t.lastDist == distBufSize
}

func (t *trees) smaller(tree []ctData, n, m int) bool {
	return tree[n].freq < tree[m].freq || (tree[n].freq == tree[m].freq && t.depth[n] <= t.depth[m])
}

func (t *trees) pqDownHeap(tree []ctData, k int) {
	v := t.heap[k]
	j := k << 1
	for j <= t.heapLen {
		if j < t.heapLen && t.smaller(tree, t.heap[j+1], t.heap[j]) {
			j++
		}
		if t.smaller(tree, v, t.heap[j]) {
			break
		}
		t.heap[k] = t.heap[j]
		k = j
		j <<= 1
	}
	t.heap[k] = v
}

// buildTree builds the Huffman tree for desc and sets its code lengths and
// codes, adding to optLen and staticLen.
func (t *trees) buildTree(desc *treeDesc) {
	tree := desc.dyn
	stree := desc.stat
	elems := desc.elems
	maxCode := -1
	node := elems

	t.heapLen, t.heapMax = 0, heapSize
	for n := 0; n < elems; n++ {
		if tree[n].freq != 0 {
			t.heapLen++
			t.heap[t.heapLen] = n
			maxCode = n
			t.depth[n] = 0
		} else {
			tree[n].len = 0
		}
	}
	// Force at least two codes of non-zero frequency.
	for t.heapLen < 2 {
		var nw int
		if maxCode < 2 {
			maxCode++
			nw = maxCode
		}
		t.heapLen++
		t.heap[t.heapLen] = nw
		tree[nw].freq = 1
		t.depth[nw] = 0
		t.optLen--
		if stree != nil {
			t.staticLen -= uint64(stree[nw].len)
		}
	}
	desc.maxCode = maxCode

	for n := t.heapLen / 2; n >= 1; n-- {
		t.pqDownHeap(tree, n)
	}
	for {
		n := t.heap[1]
		t.heap[1] = t.heap[t.heapLen]
		t.heapLen--
		t.pqDownHeap(tree, 1)
		m := t.heap[1]

		t.heapMax--
		t.heap[t.heapMax] = n
		t.heapMax--
		t.heap[t.heapMax] = m

		tree[node].freq = tree[n].freq + tree[m].freq
		dn, dm := t.depth[n], t.depth[m]
		if dm > dn {
			dn = dm
		}
		t.depth[node] = dn + 1
		tree[n].dad = uint16(node)
		tree[m].dad = uint16(node)
		t.heap[1] = node
		node++
		t.pqDownHeap(tree, 1)
		if t.heapLen < 2 {
			break
		}
	}
	t.heapMax--
	t.heap[t.heapMax] = t.heap[1]

	t.genBitlen(desc)
	genCodes(tree, maxCode, &t.blCount)
}

// genBitlen computes code lengths from the tree, limits them to
// maxLength the way gzip does, and accumulates optLen and staticLen.
func (t *trees) genBitlen(desc *treeDesc) {
	tree := desc.dyn
	extra := desc.extra
	base := desc.extraBase
	maxCode := desc.maxCode
	maxLength := desc.maxLength
	stree := desc.stat
	overflow := 0

	clear(t.blCount[:])
	tree[t.heap[t.heapMax]].len = 0 // root
	h := t.heapMax + 1
	for ; h < heapSize; h++ {
		n := t.heap[h]
		bits := int(tree[tree[n].dad].len) + 1
		if bits > maxLength {
			bits = maxLength
			overflow++
		}
		tree[n].len = uint16(bits)
		if n > maxCode {
			continue // not a leaf
		}
		t.blCount[bits]++
		xbits := 0
		if n >= base {
			xbits = extra[n-base]
		}
		f := uint64(tree[n].freq)
		t.optLen += f * uint64(bits+xbits)
		if stree != nil {
			t.staticLen += f * uint64(int(stree[n].len)+xbits)
		}
	}
	if overflow == 0 {
		return
	}
	for {
		bits := maxLength - 1
		for t.blCount[bits] == 0 {
			bits--
		}
		t.blCount[bits]--
		t.blCount[bits+1] += 2
		t.blCount[maxLength]--
		overflow -= 2
		if overflow <= 0 {
			break
		}
	}
	h = heapSize
	for bits := maxLength; bits != 0; bits-- {
		n := int(t.blCount[bits])
		for n != 0 {
			h--
			m := t.heap[h]
			if m > maxCode {
				continue
			}
			if int(tree[m].len) != bits {
				t.optLen += uint64((int64(bits) - int64(tree[m].len)) * int64(tree[m].freq))
				tree[m].len = uint16(bits)
			}
			n--
		}
	}
}

// scanTree counts the bit-length codes needed to send tree.
func (t *trees) scanTree(tree []ctData, maxCode int) {
	tree[maxCode+1].len = 0xffff // guard
	bitLengthRuns(tree, maxCode, func(code, _ int) { t.blTree[code].freq++ })
}

// sendTree sends tree in compressed form using blTree (scanTree has set
// the guard).
func (t *trees) sendTree(tree []ctData, maxCode int) {
	bitLengthRuns(tree, maxCode, func(code, count int) {
		t.sendCode(code, t.blTree[:])
		switch code {
		case rep3to6:
			t.sendBits(uint32(count-3), 2)
		case repz3to10:
			t.sendBits(uint32(count-3), 3)
		case repz11to138:
			t.sendBits(uint32(count-11), 7)
		}
	})
}

// bitLengthRuns walks the code lengths tree[0..maxCode] the way deflate
// sends them in the bit-length alphabet, calling emit for every symbol:
// a length 0..15, or rep3to6, repz3to10 or repz11to138 with the run's
// length as count. tree[maxCode+1].len must hold the 0xffff guard.
func bitLengthRuns(tree []ctData, maxCode int, emit func(code, count int)) {
	prevLen := -1
	nextLen := int(tree[0].len)
	count := 0
	maxCount, minCount := 7, 4
	if nextLen == 0 {
		maxCount, minCount = 138, 3
	}
	for n := 0; n <= maxCode; n++ {
		curLen := nextLen
		nextLen = int(tree[n+1].len)
		count++
		if count < maxCount && curLen == nextLen {
			continue
		} else if count < minCount {
			for ; count != 0; count-- {
				emit(curLen, 1)
			}
		} else if curLen != 0 {
			if curLen != prevLen {
				emit(curLen, 1)
				count--
			}
			emit(rep3to6, count)
		} else if count <= 10 {
			emit(repz3to10, count)
		} else {
			emit(repz11to138, count)
		}
		count = 0
		prevLen = curLen
		if nextLen == 0 {
			maxCount, minCount = 138, 3
		} else if curLen == nextLen {
			maxCount, minCount = 6, 3
		} else {
			maxCount, minCount = 7, 4
		}
	}
}

// buildBLTree builds the bit-length tree and returns the index in blOrder
// of the last bit-length code to send.
func (t *trees) buildBLTree() int {
	t.scanTree(t.dynLTree[:], t.lDesc.maxCode)
	t.scanTree(t.dynDTree[:], t.dDesc.maxCode)
	t.buildTree(&t.blDesc)
	maxBLIndex := blCodes - 1
	for ; maxBLIndex >= 3; maxBLIndex-- {
		if t.blTree[blOrder[maxBLIndex]].len != 0 {
			break
		}
	}
	t.optLen += uint64(3*(maxBLIndex+1) + 5 + 5 + 4)
	return maxBLIndex
}

func (t *trees) sendAllTrees(lcodes, dcodes, blcodes int) {
	t.sendBits(uint32(lcodes-257), 5)
	t.sendBits(uint32(dcodes-1), 5)
	t.sendBits(uint32(blcodes-4), 4)
	for rank := 0; rank < blcodes; rank++ {
		t.sendBits(uint32(t.blTree[blOrder[rank]].len), 3)
	}
	t.sendTree(t.dynLTree[:], lcodes-1)
	t.sendTree(t.dynDTree[:], dcodes-1)
}

func (t *trees) compressBlock(ltree, dtree []ctData) {
	lx, dx, fx := 0, 0, 0
	var flag uint8
	for lx < t.lastLit {
		if lx&7 == 0 {
			flag = t.flagBuf[fx]
			fx++
		}
		lc := int(t.lBuf[lx])
		lx++
		if flag&1 == 0 {
			t.sendCode(lc, ltree)
		} else {
			code := int(lengthCode[lc])
			t.sendCode(code+literals+1, ltree)
			if extra := extraLBits[code]; extra != 0 {
				t.sendBits(uint32(lc-baseLength[code]), uint(extra))
			}
			dist := int(t.dBuf[dx])
			dx++
			code = dCode(dist)
			t.sendCode(code, dtree)
			if extra := extraDBits[code]; extra != 0 {
				t.sendBits(uint32(dist-baseDist[code]), uint(extra))
			}
		}
		flag >>= 1
	}
	t.sendCode(endBlock, ltree)
}

// flushBlock is flush_block: choose the cheapest of a stored, static or
// dynamic block for the symbols since blockStart and write it. gzip's
// "whole file stored" case is compiled out there (seekable() is 0), and
// so it is here.
func (d *deflater) flushBlock(eof bool) {
	t := &d.t
	t.flagBuf[t.lastFlags] = t.flags
	t.buildTree(&t.lDesc)
	t.buildTree(&t.dDesc)
	maxBLIndex := t.buildBLTree()

	optLenb := (t.optLen + 3 + 7) >> 3
	staticLenb := (t.staticLen + 3 + 7) >> 3
	if staticLenb <= optLenb {
		optLenb = staticLenb
	}
	storedLen := uint64(d.strstart - d.blockStart)
	var last uint32
	if eof {
		last = 1
	}
	switch {
	case storedLen+4 <= optLenb && d.blockStart >= 0:
		t.sendBits(storedBlock<<1+last, 3)
		t.windup()
		n := uint16(storedLen)
		t.out = append(t.out, byte(n), byte(n>>8), byte(^n), byte(^n>>8))
		t.out = append(t.out, d.window[d.blockStart:d.strstart]...)
	case staticLenb == optLenb:
		t.sendBits(staticTrees<<1+last, 3)
		t.compressBlock(staticLTree[:], staticDTree[:])
	default:
		t.sendBits(dynTrees<<1+last, 3)
		t.sendAllTrees(t.lDesc.maxCode+1, t.dDesc.maxCode+1, maxBLIndex+1)
		t.compressBlock(t.dynLTree[:], t.dynDTree[:])
	}
	t.initBlock()
	if eof {
		t.windup()
	}
	// Hand each block to the writer at once: Detect's comparing writer
	// then stops a wrong candidate after one block, however well the
	// data compresses.
	t.flushOut()
}

func (t *trees) sendCode(c int, tree []ctData) {
	t.sendBits(uint32(tree[c].code), uint(tree[c].len))
}

func (t *trees) sendBits(value uint32, length uint) {
	t.bitBuf |= uint64(value) << t.bitN
	t.bitN += length
	if t.bitN >= 32 {
		b := t.bitBuf
		t.out = append(t.out, byte(b), byte(b>>8), byte(b>>16), byte(b>>24))
		t.bitBuf >>= 32
		t.bitN -= 32
	}
}

// windup writes out the pending bits, padding to a byte boundary.
func (t *trees) windup() {
	for t.bitN > 0 {
		t.out = append(t.out, byte(t.bitBuf))
		t.bitBuf >>= 8
		if t.bitN < 8 {
			t.bitN = 0
		} else {
			t.bitN -= 8
		}
	}
	t.bitBuf = 0
}

// flushOut hands the whole bytes produced so far to the writer.
func (t *trees) flushOut() {
	if t.err != nil || len(t.out) == 0 {
		t.out = t.out[:0]
		return
	}
	_, t.err = t.w.Write(t.out)
	t.out = t.out[:0]
}
