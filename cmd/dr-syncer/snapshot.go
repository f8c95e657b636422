package main

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type snapshotFlags struct {
	repo                                      repoFlags
	kubeconfig, kubeContext, identity, branch string
	ref                                       string // sync only
}

func (f *snapshotFlags) register(cmd *cobra.Command) {
	f.repo.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "source-kubeconfig", "", "kubeconfig of the source cluster (default: $DR_SYNCER_SOURCE_KUBECONFIG)")
	fl.StringVar(&f.kubeContext, "source-context", "", "context of the source kubeconfig to use (default: its current context)")
	fl.StringVar(&f.identity, "identity", "", "age identity file (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	fl.StringVar(&f.branch, "branch", "", "branch to commit the snapshot to (default: main; in review mode spec.review.branch, default snapshots/<source>)")
}

func newSnapshotCommand() *cobra.Command {
	var f snapshotFlags
	cmd := &cobra.Command{
		Use:   "snapshot --repo DIR|URL [--source-kubeconfig F] [--source-context C]",
		Short: "Record the source cluster as one commit",
		Long: `Read the source cluster as dr-syncer.yaml (as committed on main, or on
--branch) asks, and commit its cleaned objects under snapshots/<source>/: one
commit that touches only what changed since the last snapshot, or none if
nothing did. With a --repo URL the commit is pushed; when the push is
rejected because the remote moved, the commit is made again on the new tip.

In review mode (spec.review) the commit goes to the review branch, which
starts from main, and starts from main again once everything on it has been
merged there.

The source kubeconfig comes from --source-kubeconfig, then
$DR_SYNCER_SOURCE_KUBECONFIG. Encrypting Secrets needs the age identity
(--identity, $` + snapshot.IdentityEnv + `, or init's default path), so that
unchanged Secrets keep their ciphertext.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := openRepo(cmd.Context(), f.repo)
			if err != nil {
				return err
			}
			_, err = runSnapshot(cmd, f, repo)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

// runSnapshot takes the snapshot and returns where it went and what the
// target follows.
func runSnapshot(cmd *cobra.Command, f snapshotFlags, repo *gitstore.Repository) (controller.Refs, error) {
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	cfg, err := openMapping(ctx, repo, f.repo, cmp.Or(f.branch, controller.DefaultBranch), cmd.ErrOrStderr())
	if err != nil {
		return controller.Refs{}, err
	}
	refs := controller.RefsFor(cfg, f.branch, f.ref)
	source, err := restConfig("source", f.kubeconfig, "DR_SYNCER_SOURCE_KUBECONFIG", f.kubeContext)
	if err != nil {
		return refs, err
	}
	var sealer *snapshot.Sealer
	if cfg.Spec.Secrets.Mode != policies.SecretModeExclude {
		path, err := snapshot.IdentityPath(f.identity, cfg.Metadata.Name)
		if err != nil {
			return refs, err
		}
		id, err := snapshot.LoadIdentity(path)
		if err != nil {
			return refs, err
		}
		mac, err := snapshot.MACKey(id)
		if err != nil {
			return refs, err
		}
		if sealer, err = snapshot.NewSealer(cfg.Spec.Secrets.Recipients, mac); err != nil {
			return refs, err
		}
	}
	res, err := controller.Snapshot(ctx, controller.SnapshotOptions{
		Repo: repo, Branch: refs.Branch, Base: refs.Base, Config: cfg, Source: source, Sealer: sealer,
	})
	if err != nil {
		return refs, err
	}
	src := cfg.Spec.Source.Name
	where := refs.Branch
	if u := repo.Remote(); u != "" {
		where += " of " + u
	}
	if !res.Changed {
		fmt.Fprintf(out, "snapshot %s: no change (%d objects); %s stays at %s, nothing committed\n", src, res.Objects, where, short(res.Commit.String()))
	} else {
		fmt.Fprintf(out, "snapshot %s: +%d ~%d -%d (%d objects): commit %s on %s\n",
			src, len(res.Added), len(res.Modified), len(res.Removed), res.Objects, short(res.Commit.String()), where)
	}
	for _, reason := range slices.Sorted(maps.Keys(res.Skipped)) {
		fmt.Fprintf(out, "  left out: %d (%s)\n", res.Skipped[reason], reason)
	}
	if refs.Review() && res.Changed {
		fmt.Fprintf(out, "  review mode: the target follows %s; merge %s into it to apply\n", refs.Ref, refs.Branch)
	}
	return refs, nil
}

func short(hash string) string { return hash[:min(len(hash), 7)] }
