package tartest_test

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"

	"github.com/skiff-dev/skiff/internal/tartest"
)

func ExampleCases() {
	for _, c := range tartest.Cases(1) {
		if c.Name != "hardlinks" {
			continue
		}
		tr := tar.NewReader(bytes.NewReader(c.Data))
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if h.Typeflag == tar.TypeLink {
				fmt.Println(h.Name, "->", h.Linkname)
			}
		}
	}
	// Output:
	// hl/link1 -> hl/original
	// hl/sub/link2 -> hl/original
	// hl/link-to-link -> hl/link1
}

func ExampleLayer() {
	var buf bytes.Buffer
	if err := tartest.Layer(&buf, 1, 256<<10); err != nil {
		fmt.Println(err)
		return
	}
	tr := tar.NewReader(&buf)
	var files int
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		if h.Typeflag == tar.TypeReg {
			files++
		}
	}
	fmt.Println(files > 10)
	// Output: true
}
