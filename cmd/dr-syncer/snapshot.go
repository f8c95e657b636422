package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type snapshotFlags struct {
	repo, kubeconfig, kubeContext, identity, branch string
}

func newSnapshotCommand() *cobra.Command {
	var f snapshotFlags
	cmd := &cobra.Command{
		Use:   "snapshot --repo DIR [--source-kubeconfig F] [--source-context C]",
		Short: "Record the source cluster as one commit",
		Long: `Read the source cluster as dr-syncer.yaml (as committed on the branch) asks,
and commit its cleaned objects under snapshots/<source>/: one commit that
touches only what changed since the last snapshot, or none if nothing did.

The source kubeconfig comes from --source-kubeconfig, then
$DR_SYNCER_SOURCE_KUBECONFIG. Encrypting Secrets needs the age identity
(--identity, $` + snapshot.IdentityEnv + `, or init's default path), so that
unchanged Secrets keep their ciphertext.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSnapshot(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", "", "the repository directory (required)")
	fl.StringVar(&f.kubeconfig, "source-kubeconfig", "", "kubeconfig of the source cluster (default: $DR_SYNCER_SOURCE_KUBECONFIG)")
	fl.StringVar(&f.kubeContext, "source-context", "", "context of the source kubeconfig to use (default: its current context)")
	fl.StringVar(&f.identity, "identity", "", "age identity file (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	fl.StringVar(&f.branch, "branch", controller.DefaultBranch, "branch to commit the snapshot to")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func runSnapshot(cmd *cobra.Command, f snapshotFlags) error {
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	repo, cfg, err := openMapping(ctx, f.repo, f.branch, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	source, err := restConfig("source", f.kubeconfig, "DR_SYNCER_SOURCE_KUBECONFIG", f.kubeContext)
	if err != nil {
		return err
	}
	var sealer *snapshot.Sealer
	if cfg.Spec.Secrets.Mode != policies.SecretModeExclude {
		path, err := snapshot.IdentityPath(f.identity, cfg.Metadata.Name)
		if err != nil {
			return err
		}
		id, err := snapshot.LoadIdentity(path)
		if err != nil {
			return err
		}
		mac, err := snapshot.MACKey(id)
		if err != nil {
			return err
		}
		if sealer, err = snapshot.NewSealer(cfg.Spec.Secrets.Recipients, mac); err != nil {
			return err
		}
	}
	res, err := controller.Snapshot(ctx, controller.SnapshotOptions{
		Repo: repo, Branch: f.branch, Config: cfg, Source: source, Sealer: sealer,
	})
	if err != nil {
		return err
	}
	src := cfg.Spec.Source.Name
	if !res.Changed {
		fmt.Fprintf(out, "snapshot %s: no change (%d objects); %s stays at %s, nothing committed\n", src, res.Objects, f.branch, short(res.Commit.String()))
	} else {
		fmt.Fprintf(out, "snapshot %s: +%d ~%d -%d (%d objects): commit %s on %s\n",
			src, len(res.Added), len(res.Modified), len(res.Removed), res.Objects, short(res.Commit.String()), f.branch)
	}
	for _, reason := range slices.Sorted(maps.Keys(res.Skipped)) {
		fmt.Fprintf(out, "  left out: %d (%s)\n", res.Skipped[reason], reason)
	}
	return nil
}

func short(hash string) string { return hash[:min(len(hash), 7)] }
