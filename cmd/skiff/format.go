package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// skiff's one flag convention, as skopeo, crane and docker users expect it:
//
//	-o, --output  where to write (a file, a reference)
//	--format      how to print the answer on standard output: table or json
//
// The spellings of earlier releases (--json on diff and bench; -o FORMAT on
// inspect and the agent commands, with "text" for table) still work for one
// release: hidden from the help, with a note on standard error.
const (
	formatTable = "table"
	formatJSON  = "json"
)

// legacy names the old spelling a command accepted for its format.
type legacy int

const (
	legacyNone   legacy = iota
	legacyJSON          // --json (diff, bench)
	legacyOutput        // -o/--output table|text|json (inspect, agent)
)

// formatOptions is the --format flag and its deprecated spellings.
type formatOptions struct {
	format    string
	oldJSON   bool   // --json
	oldOutput string // -o/--output FORMAT
	old       legacy
}

func (o *formatOptions) AddFlags(cmd *cobra.Command, old legacy) {
	fs := cmd.Flags()
	o.old = old
	fs.StringVar(&o.format, "format", formatTable, "how to print the answer: table or json")
	switch old {
	case legacyJSON:
		fs.BoolVar(&o.oldJSON, "json", false, "deprecated: use --format json")
		_ = fs.MarkHidden("json")
	case legacyOutput:
		fs.StringVarP(&o.oldOutput, "output", "o", "", "deprecated: use --format")
		_ = fs.MarkHidden("output")
	}
	// Resolved before RunE, so that the flag-parsing tests see what RunE
	// sees. cobra's MarkDeprecated is not used: its note goes to the
	// command's standard output when one is set, and the note for -o
	// depends on the value.
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error { return o.resolve(cmd, cmd.ErrOrStderr()) }
}

// resolve turns a deprecated spelling into --format, with a note on
// errOut, and checks the value.
func (o *formatOptions) resolve(cmd *cobra.Command, errOut io.Writer) error {
	fs := cmd.Flags()
	explicit := fs.Changed("format")
	old, oldFlag := "", ""
	switch {
	case o.old == legacyJSON && fs.Changed("json") && o.oldJSON:
		old, oldFlag = formatJSON, "--json"
	case o.old == legacyOutput && fs.Changed("output"):
		switch o.oldOutput {
		case "table", "text":
			old = formatTable
		case "json":
			old = formatJSON
		default:
			return usageError{fmt.Sprintf("-o/--output %q: %s has no output file; the format is --format table or json", o.oldOutput, cmd.CommandPath())}
		}
		oldFlag = "-o " + o.oldOutput
	}
	if old != "" {
		fmt.Fprintf(errOut, "%s: %s is deprecated and will be removed in the next release: use --format %s\n", cmd.CommandPath(), oldFlag, old)
		if explicit && o.format != old {
			return usageError{fmt.Sprintf("%s and --format %s disagree", oldFlag, o.format)}
		}
		o.format = old
		_ = fs.Set("format", old) // what the parsing tests read
	}
	if o.format != formatTable && o.format != formatJSON {
		return usageError{fmt.Sprintf("--format must be table or json, not %q", o.format)}
	}
	return nil
}

func (o *formatOptions) json() bool { return o.format == formatJSON }
