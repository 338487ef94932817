package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// parseFlags parses args as skiff would, up to (not including) the
// command's RunE: the flags, then PreRunE, where the deprecated spellings
// turn into --format. It returns the values of the flags named in want,
// what went to standard error, and the error.
func parseFlags(t *testing.T, args []string, names []string) (map[string]string, string, error) {
	t.Helper()
	root := newRootCommand()
	cmd, rest, err := root.Find(args)
	if err != nil {
		t.Fatalf("find %v: %v", args, err)
	}
	var errOut bytes.Buffer
	root.SetErr(&errOut)
	root.SetOut(&bytes.Buffer{})
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, errOut.String(), err
	}
	if cmd.PreRunE != nil {
		if err := cmd.PreRunE(cmd, cmd.Flags().Args()); err != nil {
			return nil, errOut.String(), err
		}
	}
	got := map[string]string{}
	for _, n := range names {
		f := cmd.Flags().Lookup(n)
		if f == nil {
			t.Fatalf("%v: no flag --%s", args, n)
		}
		got[n] = f.Value.String()
	}
	return got, errOut.String(), nil
}

// TestFlagConvention: on every command -o/--output is where to write and
// --format table|json how to print; the spellings of the last release
// (--json; -o json/table/text on inspect and the agent) still parse, to
// the same values, with a deprecation note on standard error.
func TestFlagConvention(t *testing.T) {
	cases := []struct {
		args       []string
		want       map[string]string
		deprecated string // in the note on stderr; "" for none
		usage      string // a usage error naming this; "" for none
	}{
		// diff: -o is the delta file.
		{args: []string{"diff", "--from", "oci:a", "--to", "oci:b", "-o", "u.skiff"}, want: map[string]string{"output": "u.skiff", "format": "table"}},
		{args: []string{"diff", "--from", "oci:a", "--to", "oci:b", "--output", "u.skiff", "--format", "json"}, want: map[string]string{"output": "u.skiff", "format": "json"}},
		{args: []string{"diff", "--from", "oci:a", "--to", "oci:b", "-o", "u.skiff", "--json"}, want: map[string]string{"output": "u.skiff", "format": "json"}, deprecated: "--json is deprecated"},
		{args: []string{"diff", "--from", "oci:a", "--to", "oci:b", "-o", "u.skiff", "--json", "--format", "table"}, usage: "disagree"},
		{args: []string{"diff", "--from", "oci:a", "--to", "oci:b", "-o", "u.skiff", "--format", "yaml"}, usage: "table or json"},
		// apply: -o is the output reference (new shorthand).
		{args: []string{"apply", "--base", "oci:a", "--delta", "u.skiff", "-o", "oci:b"}, want: map[string]string{"output": "oci:b", "format": "table"}},
		{args: []string{"apply", "--base", "oci:a", "--delta", "u.skiff", "--output", "oci:b", "--format", "json"}, want: map[string]string{"output": "oci:b", "format": "json"}},
		// inspect: prints only; -o FORMAT is the old spelling.
		{args: []string{"inspect", "u.skiff"}, want: map[string]string{"format": "table"}},
		{args: []string{"inspect", "--format", "json", "u.skiff"}, want: map[string]string{"format": "json"}},
		{args: []string{"inspect", "-o", "json", "u.skiff"}, want: map[string]string{"format": "json"}, deprecated: "-o json is deprecated"},
		{args: []string{"inspect", "--output", "table", "u.skiff"}, want: map[string]string{"format": "table"}, deprecated: "-o table is deprecated"},
		{args: []string{"inspect", "-o", "text", "u.skiff"}, want: map[string]string{"format": "table"}, deprecated: "use --format table"},
		{args: []string{"inspect", "-o", "out.json", "u.skiff"}, usage: "no output file"},
		// bench
		{args: []string{"bench"}, want: map[string]string{"format": "table"}},
		{args: []string{"bench", "--format", "json", "-o", "bench.json"}, want: map[string]string{"format": "json", "output": "bench.json"}},
		{args: []string{"bench", "--json"}, want: map[string]string{"format": "json"}, deprecated: "--json is deprecated"},
		// agent
		{args: []string{"agent", "status", "--format", "json"}, want: map[string]string{"format": "json"}},
		{args: []string{"agent", "status", "-o", "json"}, want: map[string]string{"format": "json"}, deprecated: "-o json is deprecated"},
		{args: []string{"agent", "status", "-o", "text"}, want: map[string]string{"format": "table"}, deprecated: "use --format table"},
		{args: []string{"agent", "check", "--format", "json"}, want: map[string]string{"format": "json"}},
		{args: []string{"agent", "check", "-o", "json"}, want: map[string]string{"format": "json"}, deprecated: "deprecated"},
		{args: []string{"agent", "apply", "x.skiff", "--image", "app", "--format", "json"}, want: map[string]string{"format": "json"}},
		{args: []string{"agent", "apply", "x.skiff", "--image", "app", "-o", "json"}, want: map[string]string{"format": "json"}, deprecated: "deprecated"},
		// key, sign, pull: -o is where to write.
		{args: []string{"key", "generate", "-o", "release"}, want: map[string]string{"output": "release", "format": "table"}},
		{args: []string{"key", "generate", "--output", "release", "--format", "json"}, want: map[string]string{"output": "release", "format": "json"}},
		{args: []string{"sign", "u.skiff", "--key", "k.key", "-o", "s.skiff"}, want: map[string]string{"output": "s.skiff", "format": "table"}},
		{args: []string{"sign", "u.skiff", "--key", "k.key", "--format", "json"}, want: map[string]string{"output": "", "format": "json"}},
		{args: []string{"pull", "docker://r/a:d", "-o", "u.skiff"}, want: map[string]string{"output": "u.skiff", "format": "table"}},
		{args: []string{"pull", "docker://r/a:d", "--output", "u.skiff", "--format", "json"}, want: map[string]string{"output": "u.skiff", "format": "json"}},
		// push writes to the registry named by its argument.
		{args: []string{"push", "u.skiff", "docker://r/a:d"}, want: map[string]string{"format": "table"}},
		{args: []string{"push", "u.skiff", "docker://r/a:d", "--format", "json"}, want: map[string]string{"format": "json"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var names []string
			for n := range c.want {
				names = append(names, n)
			}
			got, errOut, err := parseFlags(t, c.args, names)
			if c.usage != "" {
				if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), c.usage) {
					t.Fatalf("err %v (exit %d), want a usage error naming %q", err, exitCode(err), c.usage)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, got); d != "" {
				t.Errorf("flags (-want +got):\n%s", d)
			}
			switch {
			case c.deprecated == "" && errOut != "":
				t.Errorf("unexpected note: %q", errOut)
			case c.deprecated != "" && !strings.Contains(errOut, c.deprecated):
				t.Errorf("note %q lacks %q", errOut, c.deprecated)
			}
		})
	}
}

// TestDeprecatedFlagsHidden: the old spellings are not in the help.
func TestDeprecatedFlagsHidden(t *testing.T) {
	for _, c := range []struct {
		args   []string
		hidden string
	}{
		{[]string{"diff", "--help"}, "--json"},
		{[]string{"bench", "--help"}, "--json"},
		{[]string{"inspect", "--help"}, "--output"},
		{[]string{"agent", "status", "--help"}, "--output"},
		{[]string{"agent", "check", "--help"}, "--output"},
	} {
		out, _, err := run(t, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, c.hidden) || !strings.Contains(out, "--format") {
			t.Errorf("%v: help shows %s or lacks --format:\n%s", c.args, c.hidden, out)
		}
	}
}
