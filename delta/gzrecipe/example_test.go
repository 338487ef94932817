package gzrecipe_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"

	"github.com/skiff-dev/skiff/delta/gzrecipe"
)

func Example() {
	// The server has a layer tar and the blob a registry serves for it.
	tar := bytes.Repeat([]byte("a layer tar, more or less "), 4000)
	var blob bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&blob, gzip.BestSpeed) // as crane does
	zw.Write(tar)
	zw.Close()

	open := func(b []byte) gzrecipe.Opener {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	r, err := gzrecipe.Find(context.Background(), open(tar), open(blob.Bytes()))
	if err != nil {
		fmt.Println(err)
		return
	}
	enc, _ := r.MarshalBinary() // goes into the delta
	fmt.Println(r)
	fmt.Println(len(enc), "bytes")

	// The device decodes the recipe and re-creates the exact blob.
	var got gzrecipe.Recipe
	if err := got.UnmarshalBinary(enc); err != nil {
		fmt.Println(err)
		return
	}
	var out bytes.Buffer
	if err := got.Compress(context.Background(), bytes.NewReader(tar), &out); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(bytes.Equal(out.Bytes(), blob.Bytes()))
	// Output:
	// go-stdlib level=1 mtime=0x0 xfl=4 os=255
	// 15 bytes
	// true
}
