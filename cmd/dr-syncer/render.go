package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
)

func newRenderCommand() *cobra.Command {
	var repoDir, ref string
	cmd := &cobra.Command{
		Use:   "render --repo DIR [--ref REF]",
		Short: "Print the target's rendered state at a commit as a YAML stream",
		Long: `Build overlays/<target> with kustomize from the tree of a commit (not the work
tree) and print the objects as one YAML stream, in a stable order. Secret
values stay sealed: they are decrypted only on the way to the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, cfg, err := openMapping(ctx, repoDir, ref, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			objs, err := render.Build(ctx, repo, ref, cfg)
			if err != nil {
				return err
			}
			out, err := render.Stream(objs)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	cmd.Flags().StringVar(&repoDir, "repo", "", "the repository directory (required)")
	cmd.Flags().StringVar(&ref, "ref", controller.DefaultBranch, "branch, tag or commit to render")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

// openMapping opens the repository and decodes dr-syncer.yaml as committed
// at ref: the committed mapping is the one that counts (the controller
// follows commits), so when the work tree holds another, it says so on warn.
func openMapping(ctx context.Context, dir, ref string, warn io.Writer) (*gitstore.Repository, *policies.SyncConfig, error) {
	repo, err := gitstore.Open(ctx, dir)
	if err != nil {
		return nil, nil, err
	}
	data, err := repo.ReadFile(ctx, ref, policies.FileName)
	if err != nil {
		return nil, nil, fmt.Errorf("repository %s: %s at %s: %w (run `dr-syncer init` first)", dir, policies.FileName, ref, err)
	}
	cfg, err := policies.Decode(policies.FileName, data)
	if err != nil {
		return nil, nil, err
	}
	if local, err := os.ReadFile(filepath.Join(dir, policies.FileName)); err == nil && !bytes.Equal(local, data) {
		fmt.Fprintf(warn, "note: %s has uncommitted changes; using the version committed on %s\n", policies.FileName, ref)
	}
	return repo, cfg, nil
}
