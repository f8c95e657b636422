package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/pvcsync"
)

func newStatusCommand() *cobra.Command {
	var f targetFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status --repo DIR|URL",
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
			vols, err := controller.VolumeStatusOf(cmd.Context(), opts)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(w, struct {
					controller.Status
					Volumes []pvcsync.VolumeStatus `json:"volumes"`
				}{st, vols})
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
			if r := st.Review; r != nil {
				fmt.Fprintf(w, "  review:          %d snapshot commits on %s wait for review (merge them into %s)\n", r.Waiting, r.Branch, st.Branch)
			}
			if !st.ChangeLagTime.IsZero() {
				fmt.Fprintf(w, "  change lag:      %s from a source change to its apply (continuous mode, %s)\n",
					st.ChangeLag.Round(time.Millisecond), st.ChangeLagTime.Format(time.RFC3339))
			}
			printVolumeStatus(w, vols, time.Now())
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// printVolumeStatus prints, per target claim, the commit whose data it
// holds and the last attempt, when it differs.
func printVolumeStatus(w io.Writer, vols []pvcsync.VolumeStatus, now time.Time) {
	if len(vols) == 0 {
		return
	}
	fmt.Fprintf(w, "  volumes:\n")
	for _, v := range vols {
		if v.DataCommit == "" {
			fmt.Fprintf(w, "    %-30s no data copied yet\n", v.Target)
		} else {
			fmt.Fprintf(w, "    %-30s data of %s, copied %s (%s ago) in %s, %s received\n", v.Target, short(v.DataCommit),
				v.CopiedAt.Format(time.RFC3339), now.Sub(v.CopiedAt).Round(time.Second), v.Duration.Round(time.Millisecond), bytesText(v.Bytes))
		}
		a := v.LastAttempt
		if a.State != pvcsync.StateSucceeded || a.Commit != v.DataCommit {
			fmt.Fprintf(w, "    %-30s last attempt: %s for %s at %s", "", a.State, short(a.Commit), a.At.Format(time.RFC3339))
			if a.Reason != "" {
				fmt.Fprintf(w, ": %s", a.Reason)
			}
			fmt.Fprintln(w)
		}
		if v.Dirty {
			fmt.Fprintf(w, "    %-30s the data is a mix: a copy after %s failed midway\n", "", short(v.DataCommit))
		}
	}
}
