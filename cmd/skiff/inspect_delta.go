package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/skiff-dev/skiff/delta/format"
	"github.com/skiff-dev/skiff/delta/sign"
)

// isDeltaFile reports whether arg names a skiff delta file rather than an
// image reference.
func isDeltaFile(arg string) bool {
	for _, p := range []string{"docker-archive:", "oci:", "oci-archive:", "docker://", "docker-daemon:"} {
		if strings.HasPrefix(arg, p) {
			return false
		}
	}
	f, err := os.Open(arg)
	if err != nil {
		return false
	}
	defer f.Close()
	var m [7]byte
	_, err = io.ReadFull(f, m[:])
	return err == nil && bytes.Equal(m[:], []byte("SKIFFDL"))
}

type deltaReport struct {
	File         string         `json:"file"`
	Size         int64          `json:"size"`
	HeaderDigest string         `json:"header_digest"`
	Signed       bool           `json:"signed"`
	SignedBy     []string       `json:"signed_by,omitempty"`
	VerifiedBy   string         `json:"verified_by,omitempty"`
	Base         format.Base    `json:"base"`
	TargetConfig string         `json:"target_config_digest"`
	TargetLayers []string       `json:"target_diff_ids"`
	Reproducible bool           `json:"manifest_reproducible"`
	Limits       format.Limits  `json:"limits"`
	Layers       []deltaLayer   `json:"layers"`
	EncoderFiles map[string]int `json:"ops"` // count per encoder, as diff's "ops"
	// EncoderBytes counts the blobs of ops outside solid streams; a
	// stream's bytes are in Streams (its members share them).
	EncoderBytes map[string]int64 `json:"op_blob_bytes"`
	Streams      []deltaStream    `json:"streams,omitempty"`
}

// deltaStream is one solid stream of a version 3 delta.
type deltaStream struct {
	Codec        string         `json:"codec"`
	Window       int64          `json:"window"`
	Bytes        int64          `json:"bytes"`
	EncoderFiles map[string]int `json:"ops"` // count per encoder, as diff's "ops"
}

type deltaLayer struct {
	DiffID        string `json:"diff_id"`
	Size          int64  `json:"size"`
	FromBase      *int   `json:"from_base,omitempty"`
	SkeletonBytes int64  `json:"skeleton_bytes,omitempty"`
}

func runInspectDelta(path, output string, trustFiles []string, out io.Writer) error {
	trusted, err := sign.LoadPublicKeys(trustFiles...)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var h *format.Header
	var verifiedBy string
	if len(trusted) > 0 {
		h, verifiedBy, err = format.ReadVerifiedHeader(bufio.NewReader(f), format.Trust{Keys: trusted})
	} else {
		h, err = format.ReadHeader(bufio.NewReader(f))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	signedBy, err := h.SignatureKeyIDs()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m := h.Manifest
	rep := deltaReport{File: path, Size: st.Size(), HeaderDigest: h.HeaderDigest().String(), Signed: len(h.Signature) > 0,
		SignedBy: signedBy, VerifiedBy: verifiedBy,
		Base: m.Base, TargetConfig: m.Target.ConfigDigest.String(), Reproducible: m.Target.Distribution != nil,
		Limits: m.Limits, EncoderFiles: map[string]int{}, EncoderBytes: map[string]int64{}}
	for _, d := range m.Target.DiffIDs {
		rep.TargetLayers = append(rep.TargetLayers, d.String())
	}
	for _, l := range m.Layers {
		dl := deltaLayer{DiffID: l.DiffID.String(), Size: l.Size, FromBase: l.BaseLayer}
		if l.Skeleton != nil {
			dl.SkeletonBytes = m.Blobs[*l.Skeleton].Size
		}
		rep.Layers = append(rep.Layers, dl)
	}
	// A blob shared by several ops (the zstd pack, a zstd-dict group) is
	// counted once: the parts add up to the file.
	counted := map[int]bool{}
	for _, st := range m.Streams {
		ds := deltaStream{Codec: st.Codec, Window: st.Window, Bytes: m.Blobs[st.Blob].Size, EncoderFiles: map[string]int{}}
		for _, k := range st.Ops {
			ds.EncoderFiles[m.Ops[k].Encoder]++
		}
		counted[st.Blob] = true
		rep.Streams = append(rep.Streams, ds)
	}
	for _, op := range m.Ops {
		rep.EncoderFiles[op.Encoder]++
		if !counted[op.Blob] {
			counted[op.Blob] = true
			rep.EncoderBytes[op.Encoder] += m.Blobs[op.Blob].Size
		}
	}
	if output == "json" {
		return printJSON(out, rep)
	}
	fmt.Fprintf(out, "delta     %s (%s)\nheader    %s\n", path, humanBytes(rep.Size), rep.HeaderDigest)
	switch {
	case !rep.Signed:
		fmt.Fprintln(out, "signed    no (devices refuse it unless they allow unsigned deltas)")
	case verifiedBy != "":
		fmt.Fprintf(out, "signed    by %s; verified: key %s is trusted\n", strings.Join(signedBy, ", "), verifiedBy)
	default:
		fmt.Fprintf(out, "signed    by %s (not verified: give --trust KEY.pub)\n", strings.Join(signedBy, ", "))
	}
	fmt.Fprintf(out, "needs     image %s (%d layers)\n", m.Base.ConfigDigest, len(m.Base.DiffIDs))
	fmt.Fprintf(out, "produces  image %s (%d layers, %s of layer tars)\n", m.Target.ConfigDigest, len(m.Layers), humanBytes(m.Limits.TotalOutput))
	if rep.Reproducible {
		fmt.Fprintln(out, "manifest  the target's registry manifest digest is reproduced")
	} else {
		fmt.Fprintln(out, "manifest  not reproduced: the output carries the exact uncompressed layers (same diff_ids and image ID)")
	}
	fmt.Fprintf(out, "limits    largest file %s (%s while patched), zstd window %s, largest skeleton %s",
		humanBytes(m.Limits.MaxPayload), humanBytes(m.Limits.MaxExpanded), humanBytes(m.Limits.MaxWindow), humanBytes(m.Limits.MaxSkeleton))
	if m.Limits.Scratch > 0 {
		fmt.Fprintf(out, ", scratch space %s", humanBytes(m.Limits.Scratch))
	}
	fmt.Fprint(out, "\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tDIFF_ID\tTAR SIZE\tHOW")
	for i, l := range rep.Layers {
		how := fmt.Sprintf("rebuilt: skeleton %s + files", humanBytes(l.SkeletonBytes))
		if l.FromBase != nil {
			how = fmt.Sprintf("base layer %d, unchanged", *l.FromBase+1)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i+1, short(l.DiffID), humanBytes(l.Size), how)
	}
	tw.Flush()
	fmt.Fprintln(out)
	encoders := []string{format.EncBsdiff, format.EncBsdiffX86, format.EncZstdDict, format.EncZstd}
	for _, e := range encoders {
		if n := rep.EncoderFiles[e] - streamFiles(rep.Streams, e); n > 0 {
			fmt.Fprintf(out, "%-10s %5d files, %s\n", e, n, humanBytes(rep.EncoderBytes[e]))
		}
	}
	for i, st := range rep.Streams {
		var parts []string
		total := 0
		for _, e := range encoders {
			if n := st.EncoderFiles[e]; n > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", e, n))
				total += n
			}
		}
		fmt.Fprintf(out, "stream %d   %5d files, %s (%s, %s window): %s\n", i+1, total, humanBytes(st.Bytes), st.Codec, humanBytes(st.Window), strings.Join(parts, ", "))
	}
	return nil
}

// streamFiles is how many ops of encoder e the streams hold.
func streamFiles(streams []deltaStream, e string) int {
	n := 0
	for _, st := range streams {
		n += st.EncoderFiles[e]
	}
	return n
}
