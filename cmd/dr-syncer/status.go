package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
)

func newStatusCommand() *cobra.Command {
	var f targetFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status --repo DIR",
		Short: "Show what the target holds, from which commit, and how far behind",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageError(fmt.Errorf("--output %q: want json", output))
			}
			opts, err := f.applyOptions(cmd)
			if err != nil {
				return err
			}
			st, err := controller.StatusOf(cmd.Context(), opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(w, st)
			}
			fmt.Fprintf(w, "source %s -> target %s (branch %s)\n", st.Source, st.Target, st.Branch)
			if st.LastSnapshot != nil {
				fmt.Fprintf(w, "  last snapshot:   %s  %s\n", short(st.LastSnapshot.Commit), st.LastSnapshot.Time.Format(time.RFC3339))
			} else {
				fmt.Fprintf(w, "  last snapshot:   none\n")
			}
			switch {
			case st.Applied == nil:
				fmt.Fprintf(w, "  target holds:    nothing applied yet\n")
			case st.Behind < 0:
				fmt.Fprintf(w, "  target holds:    %s, not on %s (pinned, or the branch was rewritten)\n", short(st.Applied.Commit), st.Branch)
			default:
				fmt.Fprintf(w, "  target holds:    %s  %s, %d objects, applied %s\n", short(st.Applied.Commit),
					st.Applied.Time.Format(time.RFC3339), st.Objects, st.AppliedAt.Format(time.RFC3339))
				fmt.Fprintf(w, "  behind:          %d commits, %s behind the last snapshot\n", st.Behind, st.Lag.Round(time.Second))
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
