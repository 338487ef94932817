package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// sampleReport has every kind of row: measured, in-process, extra bytes,
// not installed, failed, mismatch.
func sampleReport() *Report {
	return &Report{
		Memory: "peak RSS of each child process from wait4 (ru_maxrss), through GNU time",
		Pairs: []PairReport{
			{
				Pair:   Pair{Name: "app", From: "docker-archive:old.tar", To: "docker-archive:new.tar"},
				Layers: 3, Changed: 1, ChangedBytes: 20_500_480,
				Results: []Result{
					{Method: "skiff-4", WireBytes: 1_234_567, DiffTime: 3210 * time.Millisecond, DiffRSS: 180 << 20, ApplyTime: 850 * time.Millisecond, ApplyRSS: 31 << 20, Verified: Exact, Note: "skiff diff --level 4"},
					{Method: "pull-gzip", WireBytes: 8_912_345, ApplyTime: 120 * time.Millisecond, Verified: Exact, Note: "the target's compressed layer blobs"},
					{Method: "rdiff-zstd", WireBytes: 5_100_000, Extra: 163_840, ExtraWhat: "signature", DiffTime: 12500 * time.Millisecond, DiffRSS: 9 << 20, ApplyTime: 250 * time.Millisecond, ApplyRSS: 3 << 20, Verified: Exact},
					{Method: "bsdiff", NotInstalled: []string{"bsdiff", "bspatch"}},
					{Method: "xdelta3", Error: "xdelta3 -e: exit status 1:\n  out of memory", Note: "not shown"},
					{Method: "tar-diff", WireBytes: 999, DiffTime: 125 * time.Second, DiffRSS: 1 << 30, ApplyTime: 2 * time.Second, ApplyRSS: 24 << 20, Verified: Mismatch},
					{Method: "file-dedupe", WireBytes: 4_000_000, DiffTime: 700 * time.Millisecond, Note: "3 new file contents"},
				},
			},
			{
				Pair:   Pair{Name: "os", From: "oci:old", To: "oci:new"},
				Layers: 1, Changed: 1, ChangedBytes: 120_565_760,
				Results: []Result{
					{Method: "skiff-4", WireBytes: 2_500_000, DiffTime: 20 * time.Second, DiffRSS: 250 << 20, ApplyTime: 4 * time.Second, ApplyRSS: 30 << 20, Verified: Exact},
					{Method: "pull-gzip", NotInstalled: []string{"nothing"}},
				},
			},
		},
	}
}

func TestMarkdownGolden(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden.md")
	if *update {
		if err := os.WriteFile(golden, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./bench -run Golden -update)", err)
	}
	if d := cmp.Diff(string(want), b.String()); d != "" {
		t.Errorf("table differs from %s (-want +got):\n%s", golden, d)
	}
}

func TestJSON(t *testing.T) {
	rep := sampleReport()
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"wire_bytes": 1234567`, `"diff_seconds": 3.21`, `"apply_rss_bytes": 32505856`, `"verified": "exact"`, `"verified": "mismatch"`, `"verified": "n/a"`, `"not_installed": [`, `"changed_layers": 1`} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("JSON lacks %s:\n%s", w, b.String())
		}
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(rep, &got); d != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", d)
	}
	var v Verification
	if err := v.UnmarshalText([]byte("maybe")); err == nil {
		t.Error("verification \"maybe\" accepted")
	}
}

func TestSVG(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	if !strings.Contains(s, "<svg") || !strings.HasSuffix(strings.TrimSpace(s), "</svg>") {
		t.Fatalf("not an SVG document:\n%.300s", s)
	}
	// Methods that ran are in the legend; those that did not are not.
	for _, w := range []string{"skiff-4", "pull-gzip", "rdiff-zstd", "file-dedupe", "app", "os", "1 MB", "log scale"} {
		if !strings.Contains(s, w) {
			t.Errorf("SVG lacks %q", w)
		}
	}
	for _, w := range []string{"bsdiff", "xdelta3"} {
		if strings.Contains(s, w) {
			t.Errorf("SVG has %q, which did not run", w)
		}
	}
	if err := (&Report{}).WriteSVG(&b); err == nil {
		t.Error("empty report: no error")
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.00 kB", 1_234_567: "1.23 MB", 99_949: "99.9 kB", 999_999: "1.00 MB", 123_456_789: "123 MB", 5e9: "5.00 GB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestPairsInput(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		in := "# name from to\n\napp docker-archive:a.tar docker-archive:b.tar\n  os\toci:x oci:y  # trailing is a field\n"
		_, err := ReadPairs("p.txt", strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), "p.txt:4") {
			t.Errorf("err = %v, want one naming p.txt:4", err)
		}
		got, err := ReadPairs("p.txt", strings.NewReader("# c\napp docker-archive:a.tar docker-archive:b.tar\nos oci:x oci:y\n"))
		if err != nil {
			t.Fatal(err)
		}
		want := []Pair{{"app", "docker-archive:a.tar", "docker-archive:b.tar"}, {"os", "oci:x", "oci:y"}}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if _, err := ReadPairs("e.txt", strings.NewReader("# only comments\n")); err == nil {
			t.Error("empty pairs file accepted")
		}
		if _, err := ReadPairsFile(filepath.Join(t.TempDir(), "nosuch.txt")); err == nil || !strings.Contains(err.Error(), "nosuch.txt") {
			t.Errorf("missing file: err = %v", err)
		}
	})
	t.Run("flag", func(t *testing.T) {
		cases := []struct {
			spec string
			want Pair
			ok   bool
		}{
			{"oci:a=oci:b", Pair{"pair3", "oci:a", "oci:b"}, true},
			{"app=docker-archive:x.tar:t:1=docker-archive:y.tar", Pair{"app", "docker-archive:x.tar:t:1", "docker-archive:y.tar"}, true},
			{"oci:a", Pair{}, false},
			{"oci:a=", Pair{}, false},
			{"a=b=c=d", Pair{}, false},
		}
		for _, c := range cases {
			got, err := ParsePair(c.spec, 3)
			if (err == nil) != c.ok || got != c.want {
				t.Errorf("ParsePair(%q) = %v, %v", c.spec, got, err)
			}
		}
	})
	t.Run("corpus", func(t *testing.T) {
		root := t.TempDir()
		_, err := Corpus(root)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "images", "toolchain", "old.tar")) || !strings.Contains(err.Error(), "make corpus") {
			t.Errorf("err = %v, want one naming the missing image and make corpus", err)
		}
		for _, p := range CorpusPairs {
			os.MkdirAll(filepath.Join(root, "images", p), 0o755)
			os.WriteFile(filepath.Join(root, "images", p, "old.tar"), nil, 0o644)
			os.WriteFile(filepath.Join(root, "images", p, "new.tar"), nil, 0o644)
		}
		ps, err := Corpus(root)
		if err != nil || len(ps) != len(CorpusPairs) || ps[2].To != "docker-archive:"+filepath.Join(root, "images", "app", "new.tar") {
			t.Errorf("Corpus = %v, %v", ps, err)
		}
	})
}
