package layerfs

import (
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"
)

// File is one entry of a skeleton, with where its payload is.
type File struct {
	Entry
	// Payload is the sha256 of the data area; empty when DataSize is 0,
	// or when Made.
	Payload digest.Digest
	// Made says the payload is still to be made by the caller (a Made
	// record of a patched skeleton, SKELETON.md "Made payloads"): its
	// digest is not known yet.
	Made bool
}

// Walk calls fn for every entry of a skeleton, in tar order, without the
// payloads. It checks the skeleton's structure as it goes. It also reads
// the skeletons PatchSkeleton writes before FillMade, whose Made entries
// have no digest yet (File.Made).
func Walk(skel io.Reader, fn func(File) error) error {
	sr, err := newSkelReader(skel)
	if err != nil {
		return err
	}
	sr.made = true
	var cur *File
	flush := func() error {
		if cur == nil {
			return nil
		}
		f := *cur
		cur = nil
		if f.DataSize > 0 && f.Payload == "" && !f.Made {
			return fmt.Errorf("%w: entry %q has %d bytes of data but no Payload record", ErrBadSkeleton, f.Name, f.DataSize)
		}
		return fn(f)
	}
	for {
		rec, err := sr.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch rec.tag {
		case tagHeader:
			if err := flush(); err != nil {
				return err
			}
			e, err := parseGroup(rec.data)
			if err != nil {
				return fmt.Errorf("%w: header: %v", ErrBadSkeleton, err)
			}
			cur = &File{Entry: e}
		case tagPayload, tagMade:
			if cur == nil || cur.Payload != "" || cur.Made || cur.DataSize != rec.n {
				return fmt.Errorf("%w: Payload record of %d bytes does not belong to an entry", ErrBadSkeleton, rec.n)
			}
			cur.Payload, cur.Made = rec.digest, rec.tag == tagMade
		case tagEnd:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
