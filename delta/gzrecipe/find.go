package gzrecipe

import (
	"bufio"
	"bytes"
	"cmp"
	"compress/flate"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Errors returned by Find.
var (
	// ErrNoRecipe: no candidate reproduces the blob (another compressor
	// or version, several gzip members, a corrupt blob, a search budget
	// spent). Every error Find returns for the blob itself wraps it.
	ErrNoRecipe = errors.New("gzrecipe: no recipe reproduces the blob")
	// ErrBadBlob: the blob is not a valid gzip member whose content is
	// the tar (bad header, corrupt deflate data, wrong CRC, other
	// content). Find wraps it together with ErrNoRecipe.
	ErrBadBlob = errors.New("blob is not a gzip of the tar")
)

// Opener opens a fresh stream from the start each time it is called. Find
// reads the tar and the blob several times; it never holds either whole.
type Opener func() (io.ReadCloser, error)

// Attempt describes one candidate Find tried, for WithAttempts.
type Attempt struct {
	Recipe  Recipe
	Matched bool
	Equal   int64 // leading blob bytes the candidate reproduced before it was abandoned (all of them when Matched)
	Elapsed time.Duration
}

// Option configures Find.
type Option func(*options) error

type options struct {
	maxCandidates int
	timeLimit     time.Duration
	attempts      func(Attempt)
}

// Defaults of Find's search budget.
const (
	DefaultMaxCandidates = 100
	DefaultTimeLimit     = time.Minute
)

// WithMaxCandidates caps how many candidate recipes Find tries (default
// DefaultMaxCandidates, enough for all of them).
func WithMaxCandidates(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("gzrecipe: max candidates %d < 1", n)
		}
		o.maxCandidates = n
		return nil
	}
}

// WithTimeLimit caps the time Find spends trying candidates (default
// DefaultTimeLimit). The final check that tells a corrupt blob from an
// unknown compressor is one decompression and is bounded by ctx only.
func WithTimeLimit(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("gzrecipe: time limit %v <= 0", d)
		}
		o.timeLimit = d
		return nil
	}
}

// WithAttempts calls fn after each candidate Find tries (default none).
func WithAttempts(fn func(Attempt)) Option {
	return func(o *options) error {
		o.attempts = fn
		return nil
	}
}

// klauspostUnsetMTime is what klauspost's gzip and pgzip write for an
// unset ModTime: uint32(time.Time{}.Unix()).
const klauspostUnsetMTime = 0x886e0900

// Probe limits: how much of a pgzip-like blob Find decompresses to find
// the uncompressed offsets of its sync-flush markers, and how many it uses.
const (
	scanLimit  = 64 << 20
	maxMarkers = 8
)

// Find tries candidate recipes against blob, a gzip of tar, and returns the
// first that reproduces it byte for byte. The blob's header is copied into
// the recipe and, with pgzip's sync-flush markers, orders the candidates
// (compressor family from MTIME, level from XFL, block size from the
// uncompressed offsets of the markers); a candidate is abandoned at its
// first byte that differs. The search is bounded by WithMaxCandidates and
// WithTimeLimit.
//
// Errors: ErrNoRecipe (wrapping ErrBadBlob or ErrBadHeader where the blob
// is corrupt or not the tar's), ctx's error, or an error from the openers
// or their streams.
func Find(ctx context.Context, tar, blob Opener, opts ...Option) (Recipe, error) {
	o := options{maxCandidates: DefaultMaxCandidates, timeLimit: DefaultTimeLimit}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return Recipe{}, err
		}
	}
	p, err := probe(ctx, blob)
	if err != nil {
		return Recipe{}, err
	}
	cands := candidates(p)
	sctx, cancel := context.WithTimeout(ctx, o.timeLimit)
	defer cancel()
	var budget string
	tried := 0
	for _, c := range cands {
		if tried == o.maxCandidates {
			budget = fmt.Sprintf("candidate cap of %d reached", o.maxCandidates)
			break
		}
		if err := ctx.Err(); err != nil {
			return Recipe{}, err
		}
		if sctx.Err() != nil {
			budget = fmt.Sprintf("time limit of %v reached", o.timeLimit)
			break
		}
		tried++
		start := time.Now()
		equal, err := try(sctx, c, tar, blob)
		if o.attempts != nil {
			o.attempts(Attempt{Recipe: c, Matched: err == nil, Equal: equal, Elapsed: time.Since(start)})
		}
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, errMismatch):
			continue
		case errors.Is(err, errTrailing):
			return Recipe{}, fmt.Errorf("%w: data after the first gzip member at offset %d (multi-member blob?)", ErrNoRecipe, equal)
		case ctx.Err() != nil:
			return Recipe{}, ctx.Err()
		case sctx.Err() != nil && errors.Is(err, context.DeadlineExceeded):
			budget = fmt.Sprintf("time limit of %v reached", o.timeLimit)
		default:
			return Recipe{}, err
		}
		if budget != "" {
			break
		}
	}
	// Nothing matched: say whether the blob is at fault.
	if err := check(ctx, tar, blob); err != nil {
		return Recipe{}, err
	}
	if budget != "" {
		return Recipe{}, fmt.Errorf("%w: %s after %d of %d candidates", ErrNoRecipe, budget, tried, len(cands))
	}
	return Recipe{}, fmt.Errorf("%w: none of %d candidates matches (another compressor or version)", ErrNoRecipe, tried)
}

var (
	errMismatch = errors.New("gzrecipe: output differs from the blob")
	errTrailing = errors.New("gzrecipe: blob continues after the reproduced member")
)

// try replays c and compares its output with the blob as it goes. It
// returns how many blob bytes were equal.
func try(ctx context.Context, c Recipe, tar, blob Opener) (int64, error) {
	tr, err := tar()
	if err != nil {
		return 0, fmt.Errorf("gzrecipe: open tar: %w", err)
	}
	defer tr.Close()
	br, err := blob()
	if err != nil {
		return 0, fmt.Errorf("gzrecipe: open blob: %w", err)
	}
	defer br.Close()
	cw := &compareWriter{r: bufio.NewReaderSize(br, copyBufSize)}
	if err := c.Compress(ctx, tr, cw); err != nil {
		return cw.n, err
	}
	if _, err := cw.r.ReadByte(); err != io.EOF {
		if err != nil {
			return cw.n, fmt.Errorf("gzrecipe: read blob: %w", err)
		}
		return cw.n, errTrailing
	}
	return cw.n, nil
}

// compareWriter fails with errMismatch at the first byte written that
// differs from r, or that r does not have.
type compareWriter struct {
	r   *bufio.Reader
	n   int64
	buf []byte
}

func (c *compareWriter) Write(p []byte) (int, error) {
	for done := 0; done < len(p); {
		q := p[done:min(len(p), done+copyBufSize)]
		if cap(c.buf) < len(q) {
			c.buf = make([]byte, copyBufSize)
		}
		m, err := io.ReadFull(c.r, c.buf[:len(q)])
		if i := firstDiff(q[:m], c.buf[:m]); i >= 0 {
			c.n += int64(i)
			return done + i, fmt.Errorf("%w at offset %d", errMismatch, c.n)
		}
		c.n += int64(m)
		done += m
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return done, fmt.Errorf("%w: blob ends at offset %d", errMismatch, c.n)
		}
		if err != nil {
			return done, fmt.Errorf("gzrecipe: read blob: %w", err)
		}
	}
	return len(p), nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// probed is what Find learns from the blob before trying anything.
type probed struct {
	header      Header
	endsStored  bool  // the deflate stream ends with an empty stored final block, as Go's compress/flate's does
	endsFlushed bool  // it ends with a sync flush and an empty fixed final block, as pgzip's does
	blockSizes  []int // pgzip block sizes suggested by its sync-flush markers, most likely first
}

// probe reads the header, then the rest of the blob for its last bytes
// (how the deflate stream ends tells the compressor family). For a
// pgzip-like blob it decompresses the start once more to learn the
// uncompressed offsets of the sync-flush markers (00 00 ff ff), which pgzip
// writes after every block.
func probe(ctx context.Context, blob Opener) (probed, error) {
	var p probed
	rc, err := blob()
	if err != nil {
		return p, fmt.Errorf("gzrecipe: open blob: %w", err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, copyBufSize)
	p.header, err = ReadHeader(br)
	if err != nil {
		return p, fmt.Errorf("%w: %w: %w", ErrNoRecipe, ErrBadBlob, err)
	}
	tail, err := lastBytes(ctx, br, 16)
	if err != nil {
		return p, err
	}
	// Trailer (CRC-32, ISIZE) is the last 8 bytes; before it:
	//   Go:    ... 00 00 ff ff                (BFINAL stored block, LEN 0)
	//   pgzip: ... 00 00 ff ff 03 00          (sync flush, empty fixed final block)
	marker := []byte{0, 0, 0xff, 0xff}
	if len(tail) == 16 {
		p.endsStored = bytes.Equal(tail[4:8], marker)
		p.endsFlushed = bytes.Equal(tail[2:6], marker) && tail[6] == 3 && tail[7] == 0
	}
	if p.endsFlushed {
		if p.blockSizes, err = pgzipBlockSizes(ctx, blob, p.header.Len()); err != nil {
			return p, err
		}
	}
	return p, nil
}

// lastBytes reads r to its end and returns up to n of its last bytes.
func lastBytes(ctx context.Context, r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, copyBufSize)
	var tail []byte
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := r.Read(buf)
		tail = append(tail, buf[:m]...)
		if len(tail) > n {
			tail = append(tail[:0], tail[len(tail)-n:]...)
		}
		if err == io.EOF {
			return tail, nil
		}
		if err != nil {
			return nil, fmt.Errorf("gzrecipe: read blob: %w", err)
		}
	}
}

// markerReader feeds a flate decompressor one byte at a time where it asks
// so (io.ByteReader), and records how much it had decompressed when it
// asks for the byte after a sync-flush marker: Go's decompressor returns
// all output before a block ends and only then reads the next block's
// first byte, so that count is the uncompressed offset of the marker.
type markerReader struct {
	r      *bufio.Reader
	last   uint32 // the last four bytes consumed, big endian
	out    *int64 // bytes decompressed so far
	counts []int64
}

func (m *markerReader) ReadByte() (byte, error) {
	if m.last == 0x0000ffff {
		m.counts = append(m.counts, *m.out)
		m.last = 1
	}
	c, err := m.r.ReadByte()
	if err == nil {
		m.last = m.last<<8 | uint32(c)
	}
	return c, err
}

func (m *markerReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	for _, c := range p[:n] {
		m.last = m.last<<8 | uint32(c)
	}
	return n, err
}

// pgzipBlockSizes decompresses the blob until it has seen maxMarkers
// sync-flush markers (or scanLimit bytes of output) and derives block
// sizes from their offsets: pgzip's fall at multiples of its block size,
// others are chance byte patterns.
func pgzipBlockSizes(ctx context.Context, blob Opener, headerLen int) ([]int, error) {
	rc, err := blob()
	if err != nil {
		return nil, fmt.Errorf("gzrecipe: open blob: %w", err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, copyBufSize)
	if _, err := br.Discard(headerLen); err != nil {
		return nil, fmt.Errorf("gzrecipe: read blob: %w", err)
	}
	var out int64
	mr := &markerReader{r: br, last: 1, out: &out}
	fr := flate.NewReader(mr)
	buf := make([]byte, copyBufSize)
	ended := false
	for len(mr.counts) < maxMarkers && out < scanLimit {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := fr.Read(buf)
		out += int64(n)
		if err == io.EOF {
			ended = true
			break
		}
		if err != nil {
			break // corrupt: the candidates and the final check will tell
		}
	}
	// pgzip's markers are evenly spaced; chance ones are not. Rank each
	// spacing by how often it occurs, then by size.
	freq := map[int64]int{}
	var spacings []int64
	prev := int64(0)
	for _, c := range mr.counts {
		d := c - prev
		prev = c
		if d < MinBlockSize || d > MaxBlockSize || (ended && c == out) {
			continue // too small or large for pgzip, or its final flush (any larger block fits)
		}
		if freq[d] == 0 {
			spacings = append(spacings, d)
		}
		freq[d]++
	}
	slices.SortStableFunc(spacings, func(a, b int64) int {
		if freq[a] != freq[b] {
			return freq[b] - freq[a]
		}
		return cmp.Compare(a, b)
	})
	sizes := make([]int, len(spacings))
	for i, d := range spacings {
		sizes[i] = int(d)
	}
	return sizes, nil
}

func appendNew(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// Level orders, most likely first. -1 is not tried: it is an alias of 6
// (Go) or 5 (klauspost).
var (
	goLevels        = []int{6, 1, 9, 5, 4, 3, 2, 7, 8, 0, -2}
	klauspostLevels = []int{5, 1, 9, 6, 4, 3, 2, 7, 8, 0, -2}
)

// levelsFor puts the level XFL names first (2: slowest, 4: fastest).
func levelsFor(base []int, xfl byte) []int {
	first := map[byte]int{2: 9, 4: 1}[xfl]
	if first == 0 {
		return base
	}
	out := []int{first}
	for _, l := range base {
		if l != first {
			out = append(out, l)
		}
	}
	return out
}

// candidates lists every recipe Find may try, most likely first.
func candidates(p probed) []Recipe {
	klauspostHeader := p.header.ModTime == klauspostUnsetMTime
	var families []string
	switch {
	case p.endsFlushed && klauspostHeader:
		families = []string{KlauspostPgzip, KlauspostGzip, GoStdlib}
	case p.endsFlushed:
		families = []string{KlauspostPgzip, GoStdlib, KlauspostGzip}
	case p.endsStored:
		families = []string{GoStdlib, KlauspostGzip, KlauspostPgzip}
	case klauspostHeader:
		families = []string{KlauspostGzip, KlauspostPgzip, GoStdlib}
	default:
		families = []string{GoStdlib, KlauspostGzip, KlauspostPgzip}
	}
	blocks := appendNew(append([]int{}, p.blockSizes...), DefaultBlockSize)
	var out []Recipe
	for _, f := range families {
		switch f {
		case GoStdlib:
			for _, l := range levelsFor(goLevels, p.header.XFL) {
				out = append(out, Recipe{Compressor: f, Level: l, Header: p.header})
			}
		case KlauspostGzip:
			for _, l := range levelsFor(klauspostLevels, p.header.XFL) {
				out = append(out, Recipe{Compressor: f, Level: l, Header: p.header})
			}
		case KlauspostPgzip:
			for _, bs := range blocks {
				for _, l := range levelsFor(klauspostLevels, p.header.XFL) {
					out = append(out, Recipe{Compressor: f, Level: l, BlockSize: bs, Header: p.header})
				}
			}
		}
	}
	return out
}

// check decompresses the blob's first member and compares it with the tar,
// to tell a blob that is not the tar's gzip (ErrBadBlob), or has more than
// one member, from one made by an unknown compressor (nil).
func check(ctx context.Context, tar, blob Opener) error {
	tr, err := tar()
	if err != nil {
		return fmt.Errorf("gzrecipe: open tar: %w", err)
	}
	defer tr.Close()
	rc, err := blob()
	if err != nil {
		return fmt.Errorf("gzrecipe: open blob: %w", err)
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, copyBufSize)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fmt.Errorf("%w: %w: %w", ErrNoRecipe, ErrBadBlob, err)
	}
	zr.Multistream(false)
	tb := bufio.NewReaderSize(tr, copyBufSize)
	a := make([]byte, copyBufSize)
	b := make([]byte, copyBufSize)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, zerr := fill(zr, a)
		if zerr != nil && zerr != io.EOF {
			return fmt.Errorf("%w: %w: decompress at offset %d: %w", ErrNoRecipe, ErrBadBlob, off+int64(n), zerr)
		}
		m, terr := io.ReadFull(tb, b[:n])
		if terr != nil && !errors.Is(terr, io.EOF) && !errors.Is(terr, io.ErrUnexpectedEOF) {
			return fmt.Errorf("gzrecipe: read tar: %w", terr)
		}
		if i := firstDiff(a[:m], b[:m]); i >= 0 || m < n {
			if i < 0 {
				i = m
			}
			return fmt.Errorf("%w: %w: content differs from the tar at offset %d", ErrNoRecipe, ErrBadBlob, off+int64(i))
		}
		off += int64(n)
		if zerr == io.EOF { // end of the first member
			break
		}
	}
	if _, err := br.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("gzrecipe: read blob: %w", err)
		}
		return fmt.Errorf("%w: data after the first gzip member (multi-member blob?)", ErrNoRecipe)
	}
	if _, err := tb.ReadByte(); err != io.EOF {
		if err != nil {
			return fmt.Errorf("gzrecipe: read tar: %w", err)
		}
		return fmt.Errorf("%w: %w: content ends at offset %d, before the tar does", ErrNoRecipe, ErrBadBlob, off)
	}
	return nil
}

// fill reads into p until it is full or r fails; unlike io.ReadFull it
// returns r's error unchanged (io.EOF only for a clean end).
func fill(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
