package gnugzip

import (
	"encoding/binary"
	"math/bits"
)

// This file holds the match finder: GNU gzip's sliding window, hash chains,
// deflate_fast (levels 1-3) and the lazy-evaluation deflate (levels 4-9),
// rewritten from the algorithm's description. Names follow the original so
// that the rules it depends on can be checked against it one by one.

const (
	wSize        = 0x8000 // WSIZE: the sliding dictionary
	wMask        = wSize - 1
	windowSize   = 2 * wSize // the window buffer holds two dictionaries
	minMatch     = 3
	maxMatch     = 258
	minLookahead = maxMatch + minMatch + 1 // MIN_LOOKAHEAD
	maxDist      = wSize - minLookahead    // MAX_DIST: farthest usable match
	hashBits     = 15
	hashSize     = 1 << hashBits
	hashMask     = hashSize - 1
	hShift       = (hashBits + minMatch - 1) / minMatch // H_SHIFT = 5
	tooFar       = 4096                                 // length-3 matches farther than this are dropped (lazy only)
)

// config is one row of gzip's configuration_table.
type config struct {
	good  int // reduce the chain search to a quarter above this previous length
	lazy  int // max_lazy_match (levels 4-9), max_insert_length (levels 1-3)
	nice  int // stop searching when a match this long is found
	chain int // max_chain_length
}

var configTable = [10]config{
	{0, 0, 0, 0}, // level 0 (store) is not produced by gzip's deflate
	{4, 4, 8, 4},
	{4, 5, 16, 8},
	{4, 6, 32, 32},
	{4, 4, 16, 16},
	{8, 16, 32, 32},
	{8, 16, 128, 128},
	{8, 32, 128, 256},
	{32, 128, 258, 1024},
	{32, 258, 258, 4096},
}

// deflater is the whole compressor state. gzip pulls its input with
// read(2); here input is pushed, so a pending read describes the window
// region that gzip's next read_buf call would fill. Because gzip reads a
// regular file, every read returns the full amount asked for except at end
// of file, and the algorithm only resumes when the region is full or the
// input has ended — so the window evolves exactly as in gzip.
type deflater struct {
	level int
	cfg   config

	window [windowSize]byte
	prev   [wSize]uint16
	head   [hashSize]uint16

	insH        uint32
	strstart    int
	blockStart  int // may become negative after the window slides
	lookahead   int
	matchStart  int
	prevLength  int
	eofile      bool
	hashStarted bool // lm_init's ins_h set-up has run

	// lazy (levels 4-9) and fast (1-3) loop state kept across iterations
	matchAvailable bool
	matchLength    int
	prevMatch      int

	// pending read
	rdPending bool
	rdInitial bool // lm_init's first read, which does not clear garbage at EOF
	rdPos     int
	rdEnd     int
	rdFill    int
	inputDone bool // no more input will come (Close)
	finished  bool // the final block has been written

	t trees
}

func (d *deflater) reset(level int) {
	d.level = level
	d.cfg = configTable[level]
	clear(d.window[:])
	clear(d.prev[:])
	clear(d.head[:])
	d.insH = 0
	d.strstart = 0
	d.blockStart = 0
	d.lookahead = 0
	d.matchStart = 0
	d.prevLength = minMatch - 1
	d.eofile = false
	d.hashStarted = false
	d.matchAvailable = false
	if level <= 3 {
		d.matchLength = 0
	} else {
		d.matchLength = minMatch - 1
	}
	d.prevMatch = 0
	d.rdPending = true
	d.rdInitial = true
	d.rdPos, d.rdEnd, d.rdFill = 0, windowSize, 0
	d.inputDone = false
	d.finished = false
	d.t.reset(level)
}

// readRegion is the part of the window the pending read still has to fill.
func (d *deflater) readRegion() []byte {
	if !d.rdPending {
		return nil
	}
	return d.window[d.rdPos+d.rdFill : d.rdEnd]
}

// completeRead ends the pending read if it can: when its region is full, or
// when no more input will come. It reports false when it needs more input.
func (d *deflater) completeRead() bool {
	full := d.rdPos+d.rdFill == d.rdEnd
	if !full && !d.inputDone {
		return false
	}
	d.rdPending = false
	if d.rdFill == 0 {
		d.eofile = true
		if !d.rdInitial {
			// fill_window: "Don't let garbage pollute the dictionary".
			p := d.strstart + d.lookahead
			clear(d.window[p : p+minMatch-1])
		}
	} else {
		d.lookahead += d.rdFill
	}
	d.rdInitial = false
	return true
}

// fillWindow is gzip's fill_window up to the read: slide the window when
// strstart has entered the upper part, then ask for as many bytes as fit.
func (d *deflater) fillWindow() {
	more := windowSize - d.lookahead - d.strstart
	if d.strstart >= wSize+maxDist {
		copy(d.window[:wSize], d.window[wSize:])
		d.matchStart -= wSize
		d.strstart -= wSize
		d.blockStart -= wSize
		for i, m := range d.head {
			if m >= wSize {
				d.head[i] = m - wSize
			} else {
				d.head[i] = 0
			}
		}
		for i, m := range d.prev {
			if m >= wSize {
				d.prev[i] = m - wSize
			} else {
				d.prev[i] = 0
			}
		}
		more += wSize
	}
	if !d.eofile {
		d.rdPending = true
		d.rdPos = d.strstart + d.lookahead
		d.rdEnd = d.rdPos + more
		d.rdFill = 0
	}
}

// pump runs the compressor until it needs more input or has finished.
func (d *deflater) pump() {
	for !d.finished && d.t.err == nil {
		if d.rdPending {
			if !d.completeRead() {
				return
			}
			continue
		}
		if d.lookahead < minLookahead && !d.eofile {
			d.fillWindow()
			continue
		}
		if !d.hashStarted {
			d.hashStarted = true
			if d.lookahead > 0 {
				d.insH = 0
				for j := 0; j < minMatch-1; j++ {
					d.insH = ((d.insH << hShift) ^ uint32(d.window[j])) & hashMask
				}
			}
		}
		if d.lookahead == 0 {
			if d.level > 3 && d.matchAvailable {
				d.tally(0, int(d.window[d.strstart-1]))
			}
			d.flushBlock(true)
			d.t.flushOut()
			d.finished = true
			return
		}
		if d.level <= 3 {
			d.fastStep()
		} else {
			d.lazyStep()
		}
	}
}

// insertString is INSERT_STRING: hash the 3 bytes at s, link s into its
// chain and return the previous head of the chain.
func (d *deflater) insertString(s int) int {
	d.insH = ((d.insH << hShift) ^ uint32(d.window[s+minMatch-1])) & hashMask
	h := d.head[d.insH]
	d.prev[s&wMask] = h
	d.head[d.insH] = uint16(s)
	return int(h)
}

// longestMatch follows the hash chain from curMatch and returns the best
// length found (at least prevLength), setting matchStart when it improves.
// Like gzip it trusts the hash for the third byte, compares the last and
// next-to-last bytes of the best length first, and reads up to 258 bytes
// past strstart even beyond the end of the input.
func (d *deflater) longestMatch(curMatch int) int {
	chain := d.cfg.chain
	w := d.window[:]
	scan := d.strstart
	bestLen := d.prevLength
	limit := 0
	if scan > maxDist {
		limit = scan - maxDist
	}
	nice := d.cfg.nice
	if d.prevLength >= d.cfg.good {
		chain >>= 2
	}
	sw := w[scan : scan+maxMatch+1]
	scanEnd1 := sw[bestLen-1]
	scanEnd := sw[bestLen]
	s0, s1 := sw[0], sw[1]
	for {
		mw := w[curMatch : curMatch+maxMatch+1]
		if mw[bestLen] == scanEnd && mw[bestLen-1] == scanEnd1 && mw[0] == s0 && mw[1] == s1 {
			n := matchLen(sw, mw)
			if n > bestLen {
				d.matchStart = curMatch
				bestLen = n
				if n >= nice {
					break
				}
				scanEnd1 = sw[bestLen-1]
				scanEnd = sw[bestLen]
			}
		}
		curMatch = int(d.prev[curMatch&wMask])
		if curMatch <= limit {
			break
		}
		chain--
		if chain == 0 {
			break
		}
	}
	return bestLen
}

// fastStep is one iteration of deflate_fast (levels 1-3): take the longest
// match at once; insert its strings only if it is short.
func (d *deflater) fastStep() {
	hashHead := d.insertString(d.strstart)
	if hashHead != 0 && d.strstart-hashHead <= maxDist && d.strstart <= windowSize-minLookahead {
		d.matchLength = d.longestMatch(hashHead)
		if d.matchLength > d.lookahead {
			d.matchLength = d.lookahead
		}
	}
	var flush bool
	if d.matchLength >= minMatch {
		flush = d.tally(d.strstart-d.matchStart, d.matchLength-minMatch)
		d.lookahead -= d.matchLength
		if d.matchLength <= d.cfg.lazy {
			d.matchLength--
			for {
				d.strstart++
				d.insertString(d.strstart)
				d.matchLength--
				if d.matchLength == 0 {
					break
				}
			}
			d.strstart++
		} else {
			d.strstart += d.matchLength
			d.matchLength = 0
			d.insH = uint32(d.window[d.strstart])
			d.insH = ((d.insH << hShift) ^ uint32(d.window[d.strstart+1])) & hashMask
		}
	} else {
		flush = d.tally(0, int(d.window[d.strstart]))
		d.lookahead--
		d.strstart++
	}
	if flush {
		d.flushBlock(false)
		d.blockStart = d.strstart
	}
}

// lazyStep is one iteration of the lazy deflate (levels 4-9): a match is
// emitted only if the next position does not start a longer one.
func (d *deflater) lazyStep() {
	hashHead := d.insertString(d.strstart)
	d.prevLength, d.prevMatch = d.matchLength, d.matchStart
	d.matchLength = minMatch - 1
	if hashHead != 0 && d.prevLength < d.cfg.lazy && d.strstart-hashHead <= maxDist && d.strstart <= windowSize-minLookahead {
		d.matchLength = d.longestMatch(hashHead)
		if d.matchLength > d.lookahead {
			d.matchLength = d.lookahead
		}
		if d.matchLength == minMatch && d.strstart-d.matchStart > tooFar {
			d.matchLength--
		}
	}
	switch {
	case d.prevLength >= minMatch && d.matchLength <= d.prevLength:
		flush := d.tally(d.strstart-1-d.prevMatch, d.prevLength-minMatch)
		d.lookahead -= d.prevLength - 1
		d.prevLength -= 2
		for {
			d.strstart++
			d.insertString(d.strstart)
			d.prevLength--
			if d.prevLength == 0 {
				break
			}
		}
		d.matchAvailable = false
		d.matchLength = minMatch - 1
		d.strstart++
		if flush {
			d.flushBlock(false)
			d.blockStart = d.strstart
		}
	case d.matchAvailable:
		if d.tally(0, int(d.window[d.strstart-1])) {
			d.flushBlock(false)
			d.blockStart = d.strstart
		}
		d.strstart++
		d.lookahead--
	default:
		d.matchAvailable = true
		d.strstart++
		d.lookahead--
	}
}

// matchLen returns gzip's match length for two candidates whose first three
// bytes are taken as equal: the index of the first difference from byte 3
// on, or maxMatch. Both slices hold maxMatch+1 bytes.
func matchLen(sw, mw []byte) int {
	n := 3
	for ; n+8 <= maxMatch; n += 8 {
		x := binary.LittleEndian.Uint64(sw[n:]) ^ binary.LittleEndian.Uint64(mw[n:])
		if x != 0 {
			return n + bits.TrailingZeros64(x)>>3
		}
	}
	for n < maxMatch && sw[n] == mw[n] {
		n++
	}
	return n
}
