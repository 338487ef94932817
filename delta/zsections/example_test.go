package zsections_test

import (
	"bytes"
	"fmt"
	"io"

	"github.com/skiff-dev/skiff/delta/zsections"
)

// The device gets an expanded file from its patch and the Params the
// server sent with it, and recompresses the sections to get the original.
func ExampleNewCompressor() {
	section := bytes.Repeat([]byte("hello, "), 20)
	expanded := append(append([]byte("header|"), section...), "|trailer"...)
	p := zsections.Params{Sections: []zsections.Section{{Off: 7, Size: 140, ZSize: 21, Level: 9}}}
	orig, err := io.ReadAll(zsections.NewCompressor(bytes.NewReader(expanded), p))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d bytes, %q ... %q\n", len(orig), orig[:7], orig[len(orig)-8:])
	back, _ := io.ReadAll(zsections.NewExpander(bytes.NewReader(orig), p))
	fmt.Println(bytes.Equal(back, expanded))
	// Output:
	// 36 bytes, "header|" ... "|trailer"
	// true
}
