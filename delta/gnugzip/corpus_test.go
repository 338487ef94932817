package gnugzip

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusTar is the Debian layer of the skiff corpus, if present.
func corpusTar(t *testing.T) string {
	dir := os.Getenv("SKIFF_CORPUS")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Skip("no home directory and SKIFF_CORPUS unset")
		}
		dir = filepath.Join(home, ".cache", "skiff", "corpus", "layers")
	}
	p := filepath.Join(dir, "os", "new.tar")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("corpus layer not present: %v", err)
	}
	return p
}

// TestCorpus runs Detect over every .gz file of a real Debian layer (man
// pages, changelogs, made by dh_compress's gzip -9n) and requires that at
// least 99% are reproduced, each checked by recompressing.
func TestCorpus(t *testing.T) {
	if testing.Short() {
		t.Skip("corpus test skipped in -short mode")
	}
	f, err := os.Open(corpusTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	total, ok := 0, 0
	levels := map[int]int{}
	var failed []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg || !strings.HasSuffix(h.Name, ".gz") {
			continue
		}
		gz, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		total++
		rc, err := Detect(gz)
		if err != nil {
			if !errors.Is(err, ErrNotReproducible) && !errors.Is(err, ErrNotGzip) {
				t.Errorf("%s: error without sentinel: %v", h.Name, err)
			}
			failed = append(failed, h.Name+": "+err.Error())
			continue
		}
		// Never trust a recipe without rebuilding the file from it.
		cr, err := NewContentReader(bytes.NewReader(gz), int64(len(gz)))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := rc.Compress(&out, cr); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if !bytes.Equal(out.Bytes(), gz) {
			t.Fatalf("%s: recipe %d does not rebuild the file", h.Name, rc.Level)
		}
		ok++
		levels[rc.Level]++
	}
	if total == 0 {
		t.Skip("no .gz files in the corpus layer")
	}
	t.Logf("Detect reproduced %d of %d .gz files (levels: %v)", ok, total, levels)
	for _, s := range failed {
		t.Logf("not reproduced: %s", s)
	}
	if ok*100 < total*99 {
		t.Fatalf("only %d of %d reproduced, want at least 99%%", ok, total)
	}
}
