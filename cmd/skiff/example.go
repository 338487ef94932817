package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/internal/example"
)

func newExampleCommand(_ *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "example DIR",
		Short: "Write the built-in example image pair (two releases of an app image)",
		Long: `Write the built-in example image pair into DIR: two releases of a small app
image (a Debian-like base layer, a runtime layer with library updates, and an
app layer with a recompiled binary), as docker-archive (old.tar, new.tar) and
OCI layouts (old/, new/). The pair is generated, deterministic and needs no
network.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := example.Write(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "wrote %s (%s)\n", p.OldArchive, example.OldTag)
			fmt.Fprintf(out, "wrote %s (%s)\n", p.NewArchive, example.NewTag)
			fmt.Fprintf(out, "wrote %s/ (OCI layout, %s)\n", p.OldLayout, example.OldTag)
			fmt.Fprintf(out, "wrote %s/ (OCI layout, %s)\n", p.NewLayout, example.NewTag)
			return nil
		},
	}
}
