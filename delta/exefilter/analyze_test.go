package exefilter

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"testing"

	"github.com/skiff-dev/skiff/delta/bsdiff"
)

type attrib struct {
	newPos int64
	diffNZ map[string]int
	extra  map[string]int
	secOf  func(int64) string
}

func (a *attrib) EmitControl(c bsdiff.Control) error { return nil }
func (a *attrib) EmitDiff(p []byte) error {
	for _, b := range p {
		if b != 0 {
			a.diffNZ[a.secOf(a.newPos)]++
		}
		a.newPos++
	}
	return nil
}
func (a *attrib) EmitExtra(p []byte) error {
	for range p {
		a.extra[a.secOf(a.newPos)]++
		a.newPos++
	}
	return nil
}

// TestAttrib prints that attribution for the ELF pair EXF_OLD, EXF_NEW
// without and with the filter (diagnostic; skipped unless both are set).
func TestAttrib(t *testing.T) {
	o, n := os.Getenv("EXF_OLD"), os.Getenv("EXF_NEW")
	if o == "" || n == "" {
		t.Skip("EXF_OLD, EXF_NEW not set")
	}
	old, err := os.ReadFile(o)
	if err != nil {
		t.Fatal(err)
	}
	nw, err := os.ReadFile(n)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(nw))
	if err != nil {
		t.Fatal(err)
	}
	type sec struct {
		name     string
		off, end int64
	}
	var secs []sec
	for _, s := range f.Sections {
		if s.Type != elf.SHT_NOBITS && s.Size > 0 {
			secs = append(secs, sec{s.Name, int64(s.Offset), int64(s.Offset + s.Size)})
		}
	}
	secOf := func(p int64) string {
		for _, s := range secs {
			if p >= s.off && p < s.end {
				return s.name
			}
		}
		return "?"
	}
	for _, fs := range []Forms{0, DefaultForms} {
		a, b := old, nw
		if fs != 0 {
			if a, _, err = Encode(old, fs); err != nil {
				t.Fatal(err)
			}
			if b, _, err = Encode(nw, fs); err != nil {
				t.Fatal(err)
			}
		}
		at := &attrib{diffNZ: map[string]int{}, extra: map[string]int{}, secOf: secOf}
		if err := bsdiff.Diff(context.Background(), a, b, at); err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("forms %v\n", fs)
		for _, s := range secs {
			out += fmt.Sprintf("  %-20s size %9d diffNZ %9d extra %9d\n", s.name, s.end-s.off, at.diffNZ[s.name], at.extra[s.name])
		}
		t.Log(out)
	}
}
