package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-dev/skiff/bench"
)

// mainEnv makes the test binary, started as a child by `skiff bench`, run
// as skiff itself (the bench harness runs os.Executable() diff and apply).
const mainEnv = "SKIFF_TEST_AS_SKIFF"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestBenchExample(t *testing.T) {
	t.Setenv(mainEnv, "1")
	dir := t.TempDir()
	chart := filepath.Join(dir, "bench.svg")
	out, errOut, err := run(t, "bench", "--methods", "skiff-4,pull-gzip,file-dedupe", "--json", "--chart", chart, "--workdir", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(rep.Pairs) != 1 || rep.Pairs[0].Name != "example" || len(rep.Pairs[0].Results) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	p := rep.Pairs[0]
	sk, pull := p.Result("skiff-4"), p.Result("pull-gzip")
	if !sk.OK() || sk.Verified != bench.Exact || sk.DiffRSS <= 0 || sk.ApplyRSS <= 0 {
		t.Errorf("skiff-4: %+v", sk)
	}
	if !pull.OK() || sk.WireBytes <= 0 || sk.WireBytes >= pull.WireBytes {
		t.Errorf("skiff-4 %d bytes, pull-gzip %d: want a smaller delta", sk.WireBytes, pull.WireBytes)
	}
	for _, w := range []string{"writing the built-in example pair", "example: skiff-4: ", "wrote " + chart} {
		if !strings.Contains(errOut, w) {
			t.Errorf("progress lacks %q:\n%s", w, errOut)
		}
	}
	if b, err := os.ReadFile(chart); err != nil || !strings.Contains(string(b), "<svg") {
		t.Errorf("chart: %v, %.100s", err, b)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "skiff-bench-*")); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

func TestBenchBadInput(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("SKIFF_CORPUS", empty)
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--pairs", "/nonexistent/pairs.txt"}, 1, "/nonexistent/pairs.txt"},
		{[]string{"--pair", "oci:a"}, 2, "FROM=TO"},
		{[]string{"--methods", "bsdif"}, 2, "skiff-4"},
		{[]string{"--pair", "docker-archive:/nonexistent/old.tar=docker-archive:/nonexistent/new.tar"}, 1, "/nonexistent/old.tar"},
		{[]string{"--corpus"}, 1, "make corpus"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, _, err := run(t, append([]string{"bench", "--workdir", empty}, c.args...)...)
			if err == nil || exitCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v (exit %d), want exit %d naming %q", err, exitCode(err), c.code, c.msg)
			}
		})
	}
}

// TestBenchOutputAndJournal: -o writes the report (valid JSON), and each
// result was appended to FILE.jsonl as it finished (what an interrupted
// or killed run keeps; bench.TestRunInterrupted covers the interrupt).
func TestBenchOutputAndJournal(t *testing.T) {
	from, to, _ := smallPair(t)
	dir := t.TempDir()
	report := filepath.Join(dir, "bench.json")
	_, errOut, err := run(t, "bench", "--pair", "small="+from+"="+to, "--methods", "pull-gzip,file-dedupe", "--format", "json", "-o", report, "--workdir", dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	b, _ := os.ReadFile(report)
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil || len(rep.Pairs) != 1 || len(rep.Pairs[0].Results) != 2 {
		t.Fatalf("report: %v\n%s", err, b)
	}
	b, _ = os.ReadFile(report + ".jsonl")
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 {
		t.Fatalf("journal: %q", b)
	}
	for i, l := range lines {
		var e struct {
			Pair   bench.Pair   `json:"pair"`
			Result bench.Result `json:"result"`
		}
		if err := json.Unmarshal([]byte(l), &e); err != nil || e.Pair.Name != "small" || e.Result.Method != rep.Pairs[0].Results[i].Method {
			t.Errorf("journal line %d: %v %q", i, err, l)
		}
	}
	// A report file in a missing directory is refused before any work.
	_, _, err = run(t, "bench", "--pair", "small="+from+"="+to, "--methods", "pull-gzip", "-o", filepath.Join(dir, "nope", "b.md"), "--workdir", dir)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "nope")) {
		t.Errorf("missing directory: %v", err)
	}
}
