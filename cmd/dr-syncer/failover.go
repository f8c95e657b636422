package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
)

func newFailoverCommand() *cobra.Command {
	var f targetFlags
	cmd := &cobra.Command{
		Use:   "failover --repo DIR|URL",
		Short: "Bring standby workloads back to their replicas",
		Long: `Leave DR standby: one commit sets spec.standby.disabled in dr-syncer.yaml and
regenerates the generated overlay, then the branch is applied, so Deployments
and StatefulSets get their source replica counts back and CronJobs their
schedules. Because the choice is in the mapping, later snapshots and applies
keep it; revert the failover commit to go back to standby. With a --repo URL
the commit is pushed before the apply (made again on the new tip when the
remote moved).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.applyOptions(cmd)
			if err != nil {
				return err
			}
			commit, res, err := controller.Failover(cmd.Context(), opts)
			if !commit.IsZero() {
				fmt.Fprintf(cmd.OutOrStdout(), "failover: standby off, commit %s on %s\n", short(commit.String()), f.ref)
			}
			if res.Result != nil {
				printApply(cmd.OutOrStdout(), opts.Config.Spec.Target.Name, res, false)
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().Lookup("ref").Usage = "branch to commit the failover to and apply"
	return cmd
}
