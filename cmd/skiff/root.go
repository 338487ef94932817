package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/skiff-dev/skiff/internal/buildinfo"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	insecure bool   // allow plain-HTTP registries
	platform string // os/arch[/variant] to pick from a multi-platform index
	tmpDir   string // scratch space for archives and stores
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "skiff",
		Short: "Exact, file-level delta updates for container images",
		Long: `skiff turns two container images into a small, exact, file-level delta and
rebuilds the target image from that delta and the image a device already has.

Image references:
  docker-archive:PATH[:TAG]   a "docker save" tar
  oci:DIR[:REF]               an OCI image layout directory
  oci-archive:PATH[:REF]      a tar of an OCI image layout
  docker://HOST/REPO:TAG      a registry (--insecure for plain HTTP)
  docker-daemon:NAME:TAG      a Docker Engine via its API socket (DOCKER_HOST)

Flags: -o/--output is where a command writes (a file, a reference); --format
table|json is how it prints its answer. The spellings of the last release
(--json; -o json|table|text on inspect and agent) still work, with a note.

Exit codes: 0 success, 1 failure, 2 usage error; interrupted (temporary files
removed): 130 SIGINT, 143 SIGTERM, 129 SIGHUP.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	fs := root.PersistentFlags()
	fs.BoolVar(&g.insecure, "insecure", false, "allow plain-HTTP and self-signed registries")
	fs.StringVar(&g.platform, "platform", "", "platform to pick from a multi-platform image (os/arch[/variant]); default linux/amd64")
	fs.StringVar(&g.tmpDir, "tmpdir", "", "directory for temporary files (default $TMPDIR)")
	root.AddCommand(
		newInspectCommand(g),
		newExampleCommand(g),
		newDiffCommand(g),
		newApplyCommand(g),
		newSignCommand(g),
		newKeyCommand(),
		newBenchCommand(g),
		newPushCommand(g),
		newPullCommand(g),
		newServeCommand(g),
		newFleetCommand(g),
		newRolloutCommand(g),
		newAgentCommand(g),
		newVersionCommand(),
	)
	in := buildinfo.Get()
	root.Version = in.Short()
	root.SetVersionTemplate(fmt.Sprintf("skiff %s (delta manifest versions %d to %d)\n", in.Short(), in.ManifestMin, in.ManifestMax))
	return root
}
