package exefilter

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// TestRoundTripCorpusELF round-trips every ELF file of the benchmark
// corpus layers (testdata/corpus/make-corpus.sh; $SKIFF_CORPUS, default
// ~/.cache/skiff/corpus) with the default forms, through Encode and the
// streaming decoder, and counts them by machine. It skips when the corpus
// is not built.
func TestRoundTripCorpusELF(t *testing.T) {
	root := os.Getenv("SKIFF_CORPUS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "skiff", "corpus")
	}
	tars, _ := filepath.Glob(filepath.Join(root, "layers", "*", "*.tar"))
	if len(tars) == 0 || testing.Short() {
		t.Skip("no corpus layers under " + root)
	}
	byMachine := map[string]int{}
	var exceptions int
	changed, words := map[string]int{}, map[string]int{} // 4-byte code words, by machine
	for _, p := range tars {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(f)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if h.Typeflag != tar.TypeReg || h.Size < 64 {
				continue
			}
			in, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(in, []byte("\x7fELF")) {
				continue
			}
			out, prm, err := Encode(in, DefaultForms)
			if err != nil {
				t.Fatalf("%s: %s: %v", p, h.Name, err)
			}
			back, err := io.ReadAll(NewDecoder(iotest.HalfReader(bytes.NewReader(out)), prm))
			if err != nil || !bytes.Equal(back, in) {
				t.Fatalf("%s: %s: round trip failed (%v)", p, h.Name, err)
			}
			name := "other"
			switch {
			case len(prm.Layout.Code) == 0:
				name = "untransformed"
			case prm.Layout.Machine == MachineX86_64:
				name = "x86-64"
			default:
				name = prm.Layout.Machine.String() + " " + prm.Layout.Forms.String()
			}
			byMachine[name]++
			exceptions += len(prm.Exceptions)
			m := prm.Layout.Machine.String()
			if prm.Layout.Machine == MachineX86_64 {
				m = "x86-64"
			}
			for _, r := range prm.Layout.Code {
				if r.Symtab {
					continue
				}
				for i := r.Off; i+4 <= r.Off+r.Size; i += 4 {
					words[m]++
					if !bytes.Equal(in[i:i+4], out[i:i+4]) {
						changed[m]++
					}
				}
			}
		}
		f.Close()
	}
	t.Logf("%d layer tars: ELF files by layout %v, %d x86 exceptions", len(tars), byMachine, exceptions)
	for m, n := range words {
		t.Logf("%s: %d of %d code words rewritten (%.1f%%)", m, changed[m], n, 100*float64(changed[m])/float64(n))
	}
}
