package delta

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/format"
)

// Columnar streams (FORMAT.md, manifest version 5): the members' residues
// taken apart, each kind of part of every member in a region of its own —
// the control counts, adds, copies and seeks, the zero runs' lengths and
// literal diff bytes, the transform parameters — and the literals (extra
// bytes and plain contents) last. A codec then models each kind of
// number on its own: npm pair 62.3 → 58.6 KB, os pair 219.8 → 209.3 KB.

// writeColumnar writes the members' residues as a columnar stream to a
// new file at path; it returns the regions' sizes and their sum.
func (d *differ) writeColumnar(ctx context.Context, plans []*planned, members []int, path string) ([]int64, int64, error) {
	type region struct {
		f  *os.File
		bw *bufio.Writer
		cw countingWriter
	}
	regs := make([]*region, format.NumRegions)
	defer func() {
		for _, r := range regs {
			if r != nil {
				r.f.Close()
				os.Remove(r.f.Name())
			}
		}
	}()
	var cols bsdiff.ColumnWriter
	for i := range regs {
		f, err := os.Create(filepath.Join(d.work, "region-"+strconv.Itoa(i)))
		if err != nil {
			return nil, 0, err
		}
		r := &region{f: f, bw: bufio.NewWriterSize(f, 64<<10)}
		r.cw.w = r.bw
		regs[i] = r
		if i > format.RegionParams && i < format.RegionLiterals {
			cols[i-1] = &r.cw
		}
	}
	cols[bsdiff.ColExtra] = &regs[format.RegionLiterals].cw
	for _, k := range members {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		p := plans[k]
		rc, err := d.residueOf(ctx, p)
		if err != nil {
			return nil, 0, fmt.Errorf("stream member %s: %w", p.path, err)
		}
		err = splitResidue(p.op.Op, bufio.NewReaderSize(rc, 64<<10), &regs[format.RegionParams].cw, cols, &regs[format.RegionLiterals].cw)
		rc.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("stream member %s: %w", p.path, err)
		}
	}
	out, err := os.Create(path)
	if err != nil {
		return nil, 0, err
	}
	defer out.Close()
	sizes := make([]int64, format.NumRegions)
	var n int64
	for i, r := range regs {
		if err := r.bw.Flush(); err != nil {
			return nil, 0, err
		}
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			return nil, 0, err
		}
		c, err := io.Copy(out, r.f)
		if err != nil {
			return nil, 0, err
		}
		if c != r.cw.n {
			return nil, 0, fmt.Errorf("region %d: wrote %d bytes, read back %d", i, r.cw.n, c)
		}
		sizes[i] = c
		n += c
	}
	return sizes, n, out.Close()
}

// splitResidue distributes one member's residue, read from r to its
// end, into the regions: a plain member's content is literals; a bsdiff
// member's split form goes to the columns (its extra bytes to the
// literals), after bsdiff-x86's three length-prefixed parameter blocks,
// which go to params as they are.
func splitResidue(op Op, r *bufio.Reader, params io.Writer, cols bsdiff.ColumnWriter, literals io.Writer) error {
	if op.Encoder == EncZstd {
		_, err := io.Copy(literals, r)
		return err
	}
	if op.Encoder == EncBsdiffX86 {
		for range 3 {
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return fmt.Errorf("transform parameters: %w", err)
			}
			if _, err := params.Write(binary.AppendUvarint(nil, n)); err != nil {
				return err
			}
			if _, err := io.CopyN(params, r, int64(n)); err != nil {
				return fmt.Errorf("transform parameters: %w", err)
			}
		}
	}
	if err := cols.Split(r); err != nil {
		return err
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return fmt.Errorf("bytes after the split bsdiff residue")
	}
	return nil
}
