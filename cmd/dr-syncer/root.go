package main

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "dr-syncer",
		Short: "Keep a disaster-recovery copy of a Kubernetes cluster through Git",
		Long: `dr-syncer snapshots a source cluster into a Git repository (one cleaned YAML
file per object, one commit per change set), renders the commit for the target
with kustomize overlays, applies it to the DR cluster by server-side apply,
and copies PVC data with rsync over SSH.

Kubeconfigs come from flags, then DR_SYNCER_SOURCE_KUBECONFIG and
DR_SYNCER_TARGET_KUBECONFIG; they are never written into the repository.`,
		Version:       versionString(),
		SilenceErrors: true, // run prints the one error message
		SilenceUsage:  true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.CompletionOptions.DisableDefaultCmd = true

	root.AddCommand(newVersionCommand(), newInitCommand(), newSnapshotCommand(), newRenderCommand(), newApplyCommand(), newDiffCommand(), newSyncCommand(), newRollbackCommand(), newFailoverCommand(), newStatusCommand(), newRunCommand(), newAgentCommand())
	for _, p := range plannedCommands {
		root.AddCommand(p.command())
	}
	// Unknown subcommands end as a usage error (exit 2), like bad flags.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if err := cobra.NoArgs(cmd, args); err != nil {
			return usageError(fmt.Errorf("unknown command %q; see 'dr-syncer --help'", args[0]))
		}
		return nil
	}
	return root
}

// planned is a command of the CLI contract whose implementation has not
// landed yet. It exists so that the contract is visible in --help, and it
// fails with exit code 2 and the issue that brings it, whatever its arguments.
type planned struct {
	use   string
	short string
	issue int
}

var plannedCommands = []planned{}

func (p planned) command() *cobra.Command {
	return &cobra.Command{
		Use:   p.use,
		Short: p.short,
		// Any flag of the contract is accepted, so that a script written
		// against the contract gets "not implemented", not "unknown flag".
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if slices.Contains(args, "--help") || slices.Contains(args, "-h") {
				return cmd.Help()
			}
			return usageError(fmt.Errorf("%s: not implemented yet (issue #%d)", cmd.Name(), p.issue))
		},
	}
}
