package gnugzip_test

import (
	"bytes"
	"fmt"
	"log"
	"strings"

	"github.com/skiff-dev/skiff/delta/gnugzip"
)

// A .gz file from a Debian package is reduced to its text and a recipe,
// and rebuilt exactly from them.
func Example() {
	text := strings.Repeat("pkg (1.0-1) unstable; urgency=medium\n\n  * Initial release.\n\n", 50)

	// What gzip -9n writes (header: no name, no time, XFL 2, OS Unix).
	var gz bytes.Buffer
	header := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3}
	if err := gnugzip.Compress(&gz, strings.NewReader(text), 9, header); err != nil {
		log.Fatal(err)
	}

	rc, err := gnugzip.Detect(gz.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	var rebuilt bytes.Buffer
	if err := rc.Compress(&rebuilt, strings.NewReader(text)); err != nil {
		log.Fatal(err)
	}
	fmt.Println("level", rc.Level, "header", len(rc.Header), "bytes, identical:", bytes.Equal(rebuilt.Bytes(), gz.Bytes()))
	// Output: level 9 header 10 bytes, identical: true
}
