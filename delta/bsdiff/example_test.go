package bsdiff_test

import (
	"bytes"
	"context"
	"fmt"

	"github.com/skiff-dev/skiff/delta/bsdiff"
)

func Example() {
	ctx := context.Background()
	old := []byte("config: retries=3 timeout=10s mode=fast; config: retries=3 timeout=10s mode=fast")
	new := []byte("config: retries=5 timeout=10s mode=fast; config: retries=5 timeout=10s mode=safe")

	var patch bytes.Buffer
	if err := bsdiff.WritePatch(ctx, old, new, &patch); err != nil {
		panic(err)
	}
	var out bytes.Buffer
	if err := bsdiff.Patch(ctx, bytes.NewReader(old), int64(len(old)), &patch, &out); err != nil {
		panic(err)
	}
	fmt.Println(out.String() == string(new))

	ctrl, diff, extra, err := bsdiff.DiffStreams(ctx, old, new)
	if err != nil {
		panic(err)
	}
	out.Reset()
	err = bsdiff.PatchStreams(ctx, bytes.NewReader(old), int64(len(old)), int64(len(new)),
		bytes.NewReader(ctrl), bytes.NewReader(diff), bytes.NewReader(extra), &out)
	fmt.Println(err, out.String() == string(new), len(diff)+len(extra) == len(new))
	// Output:
	// true
	// <nil> true true
}
