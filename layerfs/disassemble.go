package layerfs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// Stats describes one disassembled layer.
type Stats struct {
	DiffID         digest.Digest `json:"diff_id"`         // sha256 of the tar
	TarSize        int64         `json:"tar_size"`        // bytes of the tar
	Entries        int           `json:"entries"`         // tar members (PAX globals included)
	Files          int           `json:"files"`           // regular files with content
	PayloadBytes   int64         `json:"payload_bytes"`   // bytes of file content
	SkeletonBytes  int64         `json:"skeleton_bytes"`  // bytes of the uncompressed skeleton
	Sparse         int           `json:"sparse"`          // sparse entries (payload is their stored form)
	DuplicatePaths int           `json:"duplicate_paths"` // entries whose path an earlier entry had
}

// Disassemble reads a layer tar from r, gives every payload to ing, and
// writes the skeleton to skel. Memory does not grow with the layer's size.
// A tar engines would not extract gets ErrMalformedTar.
func Disassemble(ctx context.Context, r io.Reader, ing Ingester, skel io.Writer) (Stats, error) {
	d := &disassembler{
		ing:  ing,
		sw:   newSkelWriter(skel),
		hash: sha256.New(),
		seen: make(map[[16]byte]struct{}),
	}
	d.r = bufio.NewReaderSize(io.TeeReader(r, d.hash), 32<<10)
	err := d.run(ctx)
	d.stats.SkeletonBytes = d.sw.n
	return d.stats, err
}

type disassembler struct {
	r     *bufio.Reader
	ing   Ingester
	sw    *skelWriter
	hash  hash.Hash
	off   int64 // offset in the tar of the next unread byte
	stats Stats
	seen  map[[16]byte]struct{} // path hashes, for counting duplicates
	group []byte
}

func (d *disassembler) malformed(format string, args ...any) error {
	return fmt.Errorf("%w at offset %d: %s", ErrMalformedTar, d.off, fmt.Sprintf(format, args...))
}

// read fills b completely or reports where the tar ended.
func (d *disassembler) read(b []byte, what string) error {
	n, err := io.ReadFull(d.r, b)
	d.off += int64(n)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return d.malformed("stream ends inside %s", what)
		}
		return fmt.Errorf("reading layer at offset %d: %w", d.off, err)
	}
	return nil
}

func (d *disassembler) run(ctx context.Context) error {
	block := make([]byte, blockSize)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// A header block, or the clean end of a tar without end marker.
		n, err := io.ReadFull(d.r, block)
		d.off += int64(n)
		if err == io.EOF {
			return d.finish()
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return d.malformed("stream ends inside a header")
			}
			return fmt.Errorf("reading layer at offset %d: %w", d.off, err)
		}
		if isZeroBlock(block) {
			return d.trailer(block)
		}
		if err := d.entry(ctx, block); err != nil {
			return err
		}
	}
}

// entry reads one entry whose first header block is in block.
func (d *disassembler) entry(ctx context.Context, block []byte) error {
	start := d.off - blockSize
	g := append(d.group[:0], block...)
	for {
		hdr := g[len(g)-blockSize:]
		if err := checkChecksum(hdr); err != nil {
			return d.malformed("%v", err)
		}
		t := hdr[156]
		if !isMetaType(t) && t != typePAXGlob {
			if t == typeGNUSpars {
				ext := gnuSparseExtended(hdr, false)
				for ext {
					if len(g) >= maxGroupSize {
						return d.malformed("too many sparse extension blocks")
					}
					g = append(g, make([]byte, blockSize)...)
					if err := d.read(g[len(g)-blockSize:], "a sparse extension block"); err != nil {
						return err
					}
					ext = gnuSparseExtended(g[len(g)-blockSize:], true)
				}
			}
			break
		}
		_, padded, err := metaDataLen(hdr)
		if err != nil {
			return d.malformed("%v", err)
		}
		if int64(len(g))+padded+blockSize > maxGroupSize {
			return d.malformed("header group over %d bytes", maxGroupSize)
		}
		g = append(g, make([]byte, padded)...)
		if err := d.read(g[len(g)-int(padded):], fmt.Sprintf("a %q record", t)); err != nil {
			return err
		}
		if t == typePAXGlob {
			break
		}
		g = append(g, make([]byte, blockSize)...)
		if err := d.read(g[len(g)-blockSize:], "a header"); err != nil {
			return err
		}
		if isZeroBlock(g[len(g)-blockSize:]) {
			return d.malformed("end of archive right after a %q header", t)
		}
	}
	d.group = g
	e, err := parseGroup(g)
	if err != nil {
		return fmt.Errorf("%w at offset %d: %v", ErrMalformedTar, start, err)
	}
	d.stats.Entries++
	if e.Sparse {
		d.stats.Sparse++
	}
	if e.Type != typePAXGlob {
		key := [16]byte{}
		sum := sha256.Sum256([]byte(e.Name))
		copy(key[:], sum[:])
		if _, dup := d.seen[key]; dup {
			d.stats.DuplicatePaths++
		}
		d.seen[key] = struct{}{}
	}
	d.sw.header(g)
	if e.DataSize > 0 {
		if e.IsRegular() {
			d.stats.Files++
		}
		d.stats.PayloadBytes += e.DataSize
		cr := &countReader{r: d.r}
		dg, err := d.ing.Ingest(ctx, cr, e.DataSize)
		d.off += cr.n
		if err != nil {
			if cr.n < e.DataSize && (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) {
				return d.malformed("stream ends inside the data of %q", e.Name)
			}
			return fmt.Errorf("storing %q: %w", e.Name, err)
		}
		d.sw.payload(e.DataSize, dg)
		if pad := roundBlock(e.DataSize) - e.DataSize; pad > 0 {
			p := block[:pad]
			if err := d.read(p, "padding"); err != nil {
				return err
			}
			d.sw.bytes(p)
		}
	}
	return d.sw.err
}

// trailer records the first zero block and everything after it.
func (d *disassembler) trailer(first []byte) error {
	d.sw.zeros(blockSize)
	buf := make([]byte, 64<<10)
	for {
		n, err := io.ReadFull(d.r, buf)
		d.off += int64(n)
		d.sw.bytes(buf[:n])
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return d.finish()
		}
		if err != nil {
			return fmt.Errorf("reading layer at offset %d: %w", d.off, err)
		}
	}
}

func (d *disassembler) finish() error {
	d.stats.TarSize = d.off
	d.stats.DiffID = digest.NewDigest(digest.SHA256, d.hash)
	return d.sw.end(d.off, d.stats.DiffID)
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
