package delta

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/skiff-dev/skiff/delta/exefilter"
	"github.com/skiff-dev/skiff/delta/zsections"
)

// TestARMParamsNeedVersion6: bsdiff-x86 parameters for ARM code in a delta
// older than manifest version 6 are refused, not applied by a reader that
// would take them for x86-64.
func TestARMParamsNeedVersion6(t *testing.T) {
	var blocks []byte
	xp := exefilter.Params{Layout: exefilter.Layout{Machine: exefilter.MachineARM64, Forms: exefilter.FormA64Call | exefilter.FormSymtab,
		Code: []exefilter.Region{{Off: 4096, Size: 8192, Addr: 0x10000}}}}
	for _, m := range []interface{ MarshalBinary() ([]byte, error) }{xp, zsections.Params{}, zsections.Params{}} {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		blocks = append(binary.AppendUvarint(blocks, uint64(len(b))), b...)
	}
	for _, tc := range []struct {
		version int
		want    error
	}{{5, ErrBadDelta}, {6, nil}} {
		var got exefilter.Params
		var zb, zt zsections.Params
		err := readX86Params(bufio.NewReader(bytes.NewReader(blocks)), tc.version, &got, &zb, &zt)
		if !errors.Is(err, tc.want) || (tc.want == nil && got.Layout.Machine != exefilter.MachineARM64) {
			t.Errorf("version %d: %v (machine %v), want %v", tc.version, err, got.Layout.Machine, tc.want)
		}
	}
}
