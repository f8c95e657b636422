package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
)

func newRollbackCommand() *cobra.Command {
	var f targetFlags
	var allowMassPrune bool
	cmd := &cobra.Command{
		Use:   "rollback --repo DIR|URL COMMIT",
		Short: "Revert a commit, then apply",
		Long: `Make a commit on the branch that reverts COMMIT (what it added is removed,
what it changed or removed comes back), then apply the branch to the target:
objects COMMIT added are pruned, objects it changed are restored. A file that
changed again after COMMIT makes the revert a conflict: nothing is written.
With a --repo URL the revert is pushed; when the remote moved meanwhile,
COMMIT is reverted again on the new tip, or, if it no longer applies there,
nothing is written and the command says so.

The next snapshot records the source again: if the source still holds what
COMMIT brought, it comes back. Fix the source, or pin the target to a commit
(--ref COMMIT on apply, sync and run).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.applyOptions(cmd)
			if err != nil {
				return err
			}
			opts.AllowMassPrune = allowMassPrune
			revert, res, err := controller.Rollback(cmd.Context(), opts, args[0])
			if !revert.IsZero() {
				where := f.ref
				if u := opts.Repo.Remote(); u != "" {
					where += " of " + u
				}
				fmt.Fprintf(cmd.OutOrStdout(), "rollback: reverted %s as commit %s on %s\n", args[0], short(revert.String()), where)
			}
			if res.Result != nil {
				printApply(cmd.OutOrStdout(), opts.Config.Spec.Target.Name, res, false)
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().Lookup("ref").Usage = "branch to revert on and apply"
	cmd.Flags().BoolVar(&allowMassPrune, "allow-mass-prune", false, "allow a prune of more than 25% of what the target holds")
	return cmd
}
