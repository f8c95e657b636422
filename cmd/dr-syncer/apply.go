package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/reconciler"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type targetFlags struct {
	repo, ref, kubeconfig, kubeContext, identity string
}

func (f *targetFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", "", "the repository directory (required)")
	fl.StringVar(&f.ref, "ref", controller.DefaultBranch, "branch, tag or commit to apply")
	fl.StringVar(&f.kubeconfig, "target-kubeconfig", "", "kubeconfig of the target cluster (default: $DR_SYNCER_TARGET_KUBECONFIG)")
	fl.StringVar(&f.kubeContext, "target-context", "", "context of the target kubeconfig to use (default: its current context)")
	fl.StringVar(&f.identity, "identity", "", "age identity file that opens the Secrets (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	_ = cmd.MarkFlagRequired("repo")
}

// applyOptions opens everything an apply or a diff needs.
func (f *targetFlags) applyOptions(cmd *cobra.Command) (controller.ApplyOptions, error) {
	ctx := cmd.Context()
	repo, cfg, err := openMapping(ctx, f.repo, f.ref, cmd.ErrOrStderr())
	if err != nil {
		return controller.ApplyOptions{}, err
	}
	target, err := restConfig("target", f.kubeconfig, "DR_SYNCER_TARGET_KUBECONFIG", f.kubeContext)
	if err != nil {
		return controller.ApplyOptions{}, err
	}
	id, err := optionalIdentity(f.identity, cfg)
	if err != nil {
		return controller.ApplyOptions{}, err
	}
	return controller.ApplyOptions{Repo: repo, Ref: f.ref, Config: cfg, Target: target, Identity: id}, nil
}

// optionalIdentity loads the age identity if there is one: a commit
// without sealed Secrets applies without it, and one with them fails with a
// message that says what is missing.
func optionalIdentity(flag string, cfg *policies.SyncConfig) (*age.X25519Identity, error) {
	path, err := snapshot.IdentityPath(flag, cfg.Metadata.Name)
	if err != nil {
		return nil, err
	}
	id, err := snapshot.LoadIdentity(path)
	if errors.Is(err, fs.ErrNotExist) && flag == "" {
		return nil, nil
	}
	return id, err
}

func newApplyCommand() *cobra.Command {
	var f targetFlags
	var dryRun, allowMassPrune bool
	cmd := &cobra.Command{
		Use:   "apply --repo DIR [--ref REF] [--target-kubeconfig F] [--dry-run]",
		Short: "Apply a commit to the target by server-side apply, pruning what left",
		Long: `Render a commit for the target and make the target match it: a server-side dry
run of every object first (an invalid object stops everything), then
server-side apply in stages (CRDs, Namespaces, cluster-scoped, configuration,
RBAC, storage, networking, workloads), then prune of what the inventory holds
and the commit no longer does. Objects dr-syncer did not create are never
touched. A prune of more than 25% of the inventory is refused without
--allow-mass-prune: a DR copy must not follow a wipe of the source.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := f.applyOptions(cmd)
			if err != nil {
				return err
			}
			opts.DryRun, opts.AllowMassPrune = dryRun, allowMassPrune
			res, err := controller.Apply(cmd.Context(), opts)
			if res.Result != nil {
				printApply(cmd.OutOrStdout(), opts.Config.Spec.Target.Name, res, dryRun)
			}
			return err
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "server-side dry run: report what would change, write nothing")
	cmd.Flags().BoolVar(&allowMassPrune, "allow-mass-prune", false, "allow a prune of more than 25% of what the target holds")
	return cmd
}

func printApply(w io.Writer, target string, res controller.ApplyResult, dryRun bool) {
	counts := res.Counts()
	prefix := "apply"
	if dryRun {
		prefix = "apply (dry run)"
	}
	fmt.Fprintf(w, "%s %s to %s:", prefix, short(res.Commit.String()), target)
	for _, a := range []reconciler.Action{reconciler.Created, reconciler.Configured, reconciler.Recreated, reconciler.Unchanged, reconciler.Deleted, reconciler.Skipped} {
		fmt.Fprintf(w, " %d %s", counts[a], lower(string(a)))
	}
	fmt.Fprintln(w)
	for _, c := range res.Changes {
		if c.Action != reconciler.Unchanged {
			fmt.Fprintf(w, "  %-10s %s\n", lower(string(c.Action)), c.Object)
		}
	}
}

func lower(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

// errDifferences ends `diff` with exit code 1 and no message, like
// kubectl diff.
var errDifferences = errors.New("differences found")

func newDiffCommand() *cobra.Command {
	var f targetFlags
	var output string
	cmd := &cobra.Command{
		Use:   "diff --repo DIR [--ref REF] [--target-kubeconfig F]",
		Short: "Show how the target differs from a commit (exit 0: none, 1: differences)",
		Long: `Show what apply would change, per object, as a unified diff of the fields
dr-syncer manages (live to desired; Secret values masked), and what it would
prune. Exit code 0: no difference; 1: differences; 2: an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageError(fmt.Errorf("--output %q: want json", output))
			}
			opts, err := f.applyOptions(cmd)
			if err != nil {
				return &codedError{code: exitUsage, err: err}
			}
			_, diffs, err := controller.Diff(cmd.Context(), opts)
			if err != nil {
				return &codedError{code: exitUsage, err: err}
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				if err := writeJSON(w, diffs); err != nil {
					return &codedError{code: exitUsage, err: err}
				}
			} else {
				for _, d := range diffs {
					fmt.Fprintf(w, "%s %s\n%s", lower(string(d.Action)), d.Object, d.Diff)
				}
			}
			if len(diffs) > 0 {
				return &codedError{code: exitError, err: errDifferences, silent: true}
			}
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newSyncCommand() *cobra.Command {
	var sf snapshotFlags
	var tf targetFlags
	var vf volumeFlags
	var allowMassPrune bool
	cmd := &cobra.Command{
		Use:   "sync --repo DIR [--source-kubeconfig F] [--target-kubeconfig F]",
		Short: "Snapshot, apply and copy PVC data, once",
		Long: `Snapshot the source (one commit, or none if nothing changed), apply the
branch's tip to the target, then copy the data of every replicated claim from
the source node that mounts it into the target claim (rsync over SSH, pulled
by a Job in the target; --volumes-local-dir pulls with local processes
instead). The copy is recorded per claim with its commit: see status.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runSnapshot(cmd, sf); err != nil {
				return err
			}
			tf.repo, tf.ref, tf.identity = sf.repo, sf.branch, sf.identity
			opts, err := tf.applyOptions(cmd)
			if err != nil {
				return err
			}
			opts.AllowMassPrune = allowMassPrune
			res, err := controller.Apply(cmd.Context(), opts)
			if res.Result != nil {
				printApply(cmd.OutOrStdout(), opts.Config.Spec.Target.Name, res, false)
			}
			if err != nil || vf.skip || opts.Config.Spec.Volumes.Disabled {
				return err
			}
			source, err := restConfig("source", sf.kubeconfig, "DR_SYNCER_SOURCE_KUBECONFIG", sf.kubeContext)
			if err != nil {
				return err
			}
			vopts, stop, err := vf.volumeOptions(cmd, opts, source)
			if err != nil {
				return err
			}
			// The data of the commit just applied, even if the branch
			// moves meanwhile.
			vopts.Commit = res.Commit
			results, err := controller.Volumes(cmd.Context(), vopts)
			stop()
			if perr := printVolumes(cmd.OutOrStdout(), results); err == nil {
				err = perr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&sf.repo, "repo", "", "the repository directory (required)")
	fl.StringVar(&sf.kubeconfig, "source-kubeconfig", "", "kubeconfig of the source cluster (default: $DR_SYNCER_SOURCE_KUBECONFIG)")
	fl.StringVar(&sf.kubeContext, "source-context", "", "context of the source kubeconfig to use")
	fl.StringVar(&tf.kubeconfig, "target-kubeconfig", "", "kubeconfig of the target cluster (default: $DR_SYNCER_TARGET_KUBECONFIG)")
	fl.StringVar(&tf.kubeContext, "target-context", "", "context of the target kubeconfig to use")
	fl.StringVar(&sf.identity, "identity", "", "age identity file (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	fl.StringVar(&sf.branch, "branch", controller.DefaultBranch, "branch to commit the snapshot to and apply")
	fl.BoolVar(&allowMassPrune, "allow-mass-prune", false, "allow a prune of more than 25% of what the target holds")
	vf.register(cmd)
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}
