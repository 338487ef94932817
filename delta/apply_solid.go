package delta

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/skiff-dev/skiff/delta/bsdiff"
	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/zsections"
	"github.com/skiff-dev/skiff/internal/ctxio"
)

// applyStream decodes solid stream s from its blob's bytes br: each member
// op's residue in turn (FORMAT.md, "Solid streams"), and checks that
// nothing follows the last one.
func (a *applier) applyStream(ctx context.Context, s Stream, br io.Reader) error {
	r, done, err := openStream(br, s, a.m.Limits.MaxWindow)
	if err != nil {
		return err
	}
	defer done()
	// Where each member's parts are read from: all from r, one after the
	// other, or for a columnar stream each from its region.
	params, cols, literals := io.ByteReader(r), bsdiff.SameColumns(r), io.Reader(r)
	var regions []*bufio.Reader
	var lits *io.LimitedReader
	if s.Regions != nil {
		spill, err := os.CreateTemp(a.work, "regions-")
		if err != nil {
			return err
		}
		defer os.Remove(spill.Name())
		defer spill.Close()
		if regions, err = spillRegions(ctx, r, s.Regions, spill); err != nil {
			return err
		}
		params = regions[format.RegionParams]
		cols = bsdiff.Columns{Count: regions[format.RegionCounts+bsdiff.ColCount], Add: regions[format.RegionCounts+bsdiff.ColAdd], Copy: regions[format.RegionCounts+bsdiff.ColCopy],
			Seek: regions[format.RegionCounts+bsdiff.ColSeek], Zeros: regions[format.RegionCounts+bsdiff.ColZeros], Lits: regions[format.RegionCounts+bsdiff.ColLits],
			Diff: regions[format.RegionCounts+bsdiff.ColDiff]}
		lits = &io.LimitedReader{R: r, N: s.Regions[format.RegionLiterals]}
		cols.Extra, literals = lits, lits
	}
	for _, k := range s.Ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := a.ops[k]
		var err error
		switch op.Encoder {
		case EncZstd:
			err = a.ingest(ctx, op, literals)
		case EncBsdiff, EncBsdiffX86:
			err = a.applyResidue(ctx, op, params, cols)
		default:
			err = fmt.Errorf("%w: a %s op in a stream", ErrBadDelta, op.Encoder)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", k, err)
		}
	}
	for i, rr := range regions {
		if _, err := rr.ReadByte(); err != io.EOF {
			return fmt.Errorf("%w: bytes left in region %d of the stream in blob %d", ErrCorrupt, i, s.Blob)
		}
	}
	if lits != nil && lits.N != 0 {
		return fmt.Errorf("%w: %d bytes of literals left in the stream in blob %d", ErrCorrupt, lits.N, s.Blob)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%w: bytes after the last residue of the stream in blob %d", ErrCorrupt, s.Blob)
		}
		return asCorrupt(err)
	}
	return nil
}

// spillRegions copies the regions of a columnar stream before its
// literals from r to spill, and returns a reader of each of them (of the
// literals: none, they are read from r as they come).
func spillRegions(ctx context.Context, r io.Reader, sizes []int64, spill *os.File) ([]*bufio.Reader, error) {
	var total int64
	for i, n := range sizes {
		if i != format.RegionLiterals {
			total += n
		}
	}
	bw := bufio.NewWriterSize(spill, 64<<10)
	if n, err := io.CopyN(bw, ctxio.Reader(ctx, r), total); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: columnar stream ends after %d of its %d bytes of regions: %v", ErrCorrupt, n, total, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	var out []*bufio.Reader
	var off int64
	for i, n := range sizes {
		if i == format.RegionLiterals {
			continue
		}
		out = append(out, bufio.NewReaderSize(io.NewSectionReader(spill, off, n), 16<<10))
		off += n
	}
	return out, nil
}

// applyResidue makes op's payload from its split bsdiff residue, whose
// parts cols gives (after bsdiff-x86's transform parameters, from params):
// the patcher writes the file by offset into a scratch file, which then
// streams, through the inverse transforms where there are any, into the
// store.
func (a *applier) applyResidue(ctx context.Context, op resolvedOp, params io.ByteReader, cols bsdiff.Columns) error {
	var base io.ReaderAt = bytes.NewReader(nil) // a new executable's base: the empty file
	var baseSize int64
	if !op.NewExecutable() {
		f, n, done, err := a.opBase(ctx, op)
		if err != nil {
			return err
		}
		defer done()
		base, baseSize = f, n
	}
	var xp exefilter.Params
	var zBase, zTarget zsections.Params
	size := outSize(op)
	if op.Encoder == EncBsdiffX86 {
		if err := readX86Params(params, a.m.Version, &xp, &zBase, &zTarget); err != nil {
			return err
		}
		if op.NewExecutable() && len(zBase.Sections) != 0 {
			return fmt.Errorf("%w: op for %s: compressed sections in the empty base", ErrCorrupt, op.target())
		}
		size += zTarget.Growth()
		if zTarget.Growth() < 0 || size > a.m.Limits.MaxExpanded {
			return fmt.Errorf("%w: bsdiff-x86 expanded size %d over the declared %d", ErrLimit, size, a.m.Limits.MaxExpanded)
		}
		tmp, n, cleanup, err := a.transformBase(base, baseSize, xp, zBase)
		if err != nil {
			return err
		}
		defer cleanup()
		base, baseSize = tmp, n
	}
	out, err := os.CreateTemp(a.work, "patched-")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	spill, err := os.CreateTemp(a.work, "controls-")
	if err != nil {
		return err
	}
	defer os.Remove(spill.Name())
	defer spill.Close()
	if err := bsdiff.ApplyColumns(base, baseSize, cols, size, out, spill, a.m.Limits.MaxControls); err != nil {
		return err
	}
	var patched io.Reader = io.NewSectionReader(out, 0, size)
	if op.Encoder == EncBsdiffX86 {
		patched = exefilter.NewDecoder(zsections.NewCompressor(patched, zTarget), xp)
	}
	return a.ingest(ctx, op, patched)
}

// readX86Params reads bsdiff-x86's three length-prefixed parameter blocks
// of a delta of the given manifest version (ARM code needs version 6).
func readX86Params(r io.ByteReader, version int, xp *exefilter.Params, zBase, zTarget *zsections.Params) error {
	for _, p := range []struct {
		what string
		u    interface{ UnmarshalBinary([]byte) error }
	}{{"x86 parameters", xp}, {"base sections", zBase}, {"target sections", zTarget}} {
		if err := readParam(r, p.what, p.u); err != nil {
			return err
		}
	}
	if xp.Layout.Machine != exefilter.MachineX86_64 && version < 6 {
		return fmt.Errorf("%w: bsdiff-x86 parameters for machine %d need manifest version 6", ErrBadDelta, xp.Layout.Machine)
	}
	return nil
}

func readParam(r io.ByteReader, what string, u interface{ UnmarshalBinary([]byte) error }) error {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > 1<<20 {
		return fmt.Errorf("%w: bsdiff-x86 %s of %d bytes", ErrCorrupt, what, n)
	}
	pb := make([]byte, n)
	for i := range pb {
		if pb[i], err = r.ReadByte(); err != nil {
			return fmt.Errorf("%w: bsdiff-x86 %s: %v", ErrCorrupt, what, err)
		}
	}
	if err := u.UnmarshalBinary(pb); err != nil {
		return fmt.Errorf("%w: bsdiff-x86 %s: %w", ErrCorrupt, what, err)
	}
	return nil
}
