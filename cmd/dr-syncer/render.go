package main

import (
	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/render"
)

func newRenderCommand() *cobra.Command {
	var rf repoFlags
	var ref string
	cmd := &cobra.Command{
		Use:   "render --repo DIR|URL [--ref REF]",
		Short: "Print the target's rendered state at a commit as a YAML stream",
		Long: `Build overlays/<target> with kustomize from the tree of a commit (not the work
tree) and print the objects as one YAML stream, in a stable order. Secret
values stay sealed: they are decrypted only on the way to the target.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, cfg, err := openRepoMapping(ctx, rf, ref, cmd.ErrOrStderr())
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
	rf.register(cmd)
	cmd.Flags().StringVar(&ref, "ref", controller.DefaultBranch, "branch, tag or commit to render")
	return cmd
}
