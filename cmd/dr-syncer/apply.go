package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"filippo.io/age"
	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/reconciler"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type targetFlags struct {
	repo                                   repoFlags
	ref, kubeconfig, kubeContext, identity string
}

func (f *targetFlags) register(cmd *cobra.Command) {
	f.repo.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.ref, "ref", controller.DefaultBranch, "branch, tag or commit to apply (a commit pins the target there)")
	fl.StringVar(&f.kubeconfig, "target-kubeconfig", "", "kubeconfig of the target cluster (default: $DR_SYNCER_TARGET_KUBECONFIG)")
	fl.StringVar(&f.kubeContext, "target-context", "", "context of the target kubeconfig to use (default: its current context)")
	fl.StringVar(&f.identity, "identity", "", "age identity file that opens the Secrets (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
}

// applyOptions opens everything an apply or a diff needs.
func (f *targetFlags) applyOptions(cmd *cobra.Command) (controller.ApplyOptions, error) {
	repo, err := openRepo(cmd.Context(), f.repo)
	if err != nil {
		return controller.ApplyOptions{}, err
	}
	return f.applyOptionsFor(cmd, repo)
}

// applyOptionsFor is applyOptions with the repository open already.
func (f *targetFlags) applyOptionsFor(cmd *cobra.Command, repo *gitstore.Repository) (controller.ApplyOptions, error) {
	cfg, err := openMapping(cmd.Context(), repo, f.repo, f.ref, cmd.ErrOrStderr())
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
		Use:   "apply --repo DIR|URL [--ref REF] [--target-kubeconfig F] [--dry-run]",
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
	var output, from, to string
	cmd := &cobra.Command{
		Use:   "diff --repo DIR|URL [--ref REF] [--target-kubeconfig F] | diff --repo DIR|URL --from REF --to REF",
		Short: "Show how the target differs from a commit, or how two refs differ (exit 0: none, 1: differences)",
		Long: `Show what apply would change, per object, as a unified diff of the fields
dr-syncer manages (live to desired; Secret values masked), and what it would
prune.

With --from and --to, no cluster is read: the trees of the two refs are
compared (as git diff FROM TO does, not since their merge base) and the
difference is summarised as objects added, changed and removed, per kind and
namespace, and the other files that differ: the review of a snapshot branch,
e.g. --from main --to snapshots/<source>.

Exit code 0: no difference; 1: differences; 2: an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "" && output != "json" {
				return usageError(fmt.Errorf("--output %q: want json", output))
			}
			if (from == "") != (to == "") {
				return usageError(errors.New("--from and --to go together"))
			}
			if from != "" {
				return diffRefs(cmd, f.repo, from, to, output)
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
	cmd.Flags().StringVar(&from, "from", "", "compare two refs instead of a cluster: the older ref (with --to)")
	cmd.Flags().StringVar(&to, "to", "", "compare two refs instead of a cluster: the newer ref (with --from)")
	return cmd
}

// diffRefs prints controller.CompareRefs.
func diffRefs(cmd *cobra.Command, rf repoFlags, from, to, output string) error {
	coded := func(err error) error { return &codedError{code: exitUsage, err: err} }
	repo, err := openRepo(cmd.Context(), rf)
	if err != nil {
		return coded(err)
	}
	d, err := controller.CompareRefs(cmd.Context(), repo, from, to)
	if err != nil {
		return coded(err)
	}
	w := cmd.OutOrStdout()
	if output == "json" {
		if err := writeJSON(w, d); err != nil {
			return coded(err)
		}
	} else {
		fmt.Fprintf(w, "%s (%s) .. %s (%s): %d objects, %d other files\n", from, short(d.From), to, short(d.To), len(d.Objects), len(d.Files))
		for _, s := range d.Summary {
			kind := s.Kind
			if s.Group != "" {
				kind += "." + s.Group
			}
			fmt.Fprintf(w, "  %-40s %-20s +%d ~%d -%d\n", kind, cmp.Or(s.Namespace, "(cluster)"), s.Added, s.Changed, s.Removed)
		}
		for _, o := range d.Objects {
			fmt.Fprintf(w, "%s %s\n", o.Action, o.Object())
		}
		for _, f := range d.Files {
			fmt.Fprintf(w, "%s file %s\n", f.Action, f.Path)
		}
	}
	if !d.Empty() {
		return &codedError{code: exitError, err: errDifferences, silent: true}
	}
	return nil
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
		Use:   "sync --repo DIR|URL [--source-kubeconfig F] [--target-kubeconfig F]",
		Short: "Snapshot, apply and copy PVC data, once",
		Long: `Snapshot the source (one commit, or none if nothing changed), apply the
followed ref to the target, then copy the data of every replicated claim from
the source node that mounts it into the target claim (rsync over SSH, pulled
by a Job in the target; --volumes-local-dir pulls with local processes
instead). The copy is recorded per claim with its commit: see status.

The snapshot goes to --branch and the target follows --ref (default: the
branch). In review mode (spec.review in dr-syncer.yaml) the snapshot goes to
the review branch and the target follows main: the change is applied once it
is merged. A --ref that is a commit pins the target there: the snapshot is
still committed (and pushed), and the pinned commit is applied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, err := openRepo(ctx, sf.repo)
			if err != nil {
				return err
			}
			refs, err := runSnapshot(cmd, sf, repo)
			if err != nil {
				return err
			}
			tf.repo, tf.ref, tf.identity = sf.repo, refs.Ref, sf.identity
			opts, err := tf.applyOptionsFor(cmd, repo)
			if err != nil {
				return err
			}
			opts.AllowMassPrune = allowMassPrune
			res, err := controller.Apply(ctx, opts)
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
			results, err := controller.Volumes(ctx, vopts)
			stop()
			if perr := printVolumes(cmd.OutOrStdout(), results); err == nil {
				err = perr
			}
			return err
		},
	}
	sf.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&sf.ref, "ref", "", "ref the target follows: a branch, or a commit that pins the target (default: the branch; main in review mode)")
	fl.StringVar(&tf.kubeconfig, "target-kubeconfig", "", "kubeconfig of the target cluster (default: $DR_SYNCER_TARGET_KUBECONFIG)")
	fl.StringVar(&tf.kubeContext, "target-context", "", "context of the target kubeconfig to use")
	fl.BoolVar(&allowMassPrune, "allow-mass-prune", false, "allow a prune of more than 25% of what the target holds")
	vf.register(cmd)
	return cmd
}
