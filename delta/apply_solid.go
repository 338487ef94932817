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
	"github.com/skiff-dev/skiff/delta/zsections"
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
	for _, k := range s.Ops {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := a.m.Ops[k]
		var err error
		switch op.Encoder {
		case EncZstd:
			err = a.ingest(ctx, op, r)
		case EncBsdiff, EncBsdiffX86:
			err = a.applyResidue(ctx, op, r)
		default:
			err = fmt.Errorf("%w: a %s op in a stream", ErrBadDelta, op.Encoder)
		}
		if err != nil {
			return fmt.Errorf("op %d: %w", k, err)
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		if err == nil {
			return fmt.Errorf("%w: bytes after the last residue of the stream in blob %d", ErrCorrupt, s.Blob)
		}
		return asCorrupt(err)
	}
	return nil
}

// applyResidue makes op's payload from its split bsdiff residue in r
// (after bsdiff-x86's transform parameters): the patcher writes the file by
// offset into a scratch file, which then streams, through the inverse
// transforms where there are any, into the store.
func (a *applier) applyResidue(ctx context.Context, op Op, r *bufio.Reader) error {
	var base io.ReaderAt = bytes.NewReader(nil) // a new executable's base: the empty file
	var baseSize int64
	if !newExecutable(op) {
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
		if err := readX86Params(r, &xp, &zBase, &zTarget); err != nil {
			return err
		}
		if newExecutable(op) && len(zBase.Sections) != 0 {
			return fmt.Errorf("%w: op for %s: compressed sections in the empty base", ErrCorrupt, op.Target)
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
	if err := bsdiff.ApplySplit(base, baseSize, r, size, out, spill, a.m.Limits.MaxControls); err != nil {
		return err
	}
	var patched io.Reader = io.NewSectionReader(out, 0, size)
	if op.Encoder == EncBsdiffX86 {
		patched = exefilter.NewDecoder(zsections.NewCompressor(patched, zTarget), xp)
	}
	return a.ingest(ctx, op, patched)
}

// readX86Params reads bsdiff-x86's three length-prefixed parameter blocks.
func readX86Params(r io.ByteReader, xp *exefilter.Params, zBase, zTarget *zsections.Params) error {
	for _, p := range []struct {
		what string
		u    interface{ UnmarshalBinary([]byte) error }
	}{{"x86 parameters", xp}, {"base sections", zBase}, {"target sections", zTarget}} {
		if err := readParam(r, p.what, p.u); err != nil {
			return err
		}
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
