package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/internal/buildinfo"
)

func newVersionCommand() *cobra.Command {
	var f formatOptions
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the release, commit, Go version, platform and the delta formats this skiff reads",
		Long: `Print which skiff this is: its release (set by release builds; "(devel)"
for a build from source), the commit it was built from, the Go toolchain,
its platform, and the delta format versions it reads: the container version
and the range of manifest versions. Deltas of a newer manifest version are
refused with a clear error; writers use the lowest version that can express
a delta.`,
		Example: "  skiff version\n  skiff version --format json\n  skiff --version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Get()
			out := cmd.OutOrStdout()
			if f.json() {
				return printJSON(out, in)
			}
			commit := in.Commit
			if commit == "" {
				commit = "(not recorded)"
			} else if in.Modified {
				commit += " (modified)"
			}
			fmt.Fprintf(out, "release   %s\ncommit    %s\ngo        %s\nplatform  %s\nformat    container %d, manifest versions %d to %d\n",
				in.Release, commit, in.Go, in.Platform, in.Container, in.ManifestMin, in.ManifestMax)
			return nil
		},
	}
	f.AddFlags(cmd, legacyNone)
	return cmd
}
