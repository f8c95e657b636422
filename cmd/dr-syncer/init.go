package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type initFlags struct {
	repo                          repoFlags
	source, target, identity      string
	namespaceMap, storageClassMap []string
	recipients                    []string
}

func newInitCommand() *cobra.Command {
	var f initFlags
	cmd := &cobra.Command{
		Use:   "init --repo DIR|URL --source NAME --target NAME [--namespace-map SRC=DST]... [--storage-class-map A=B]...",
		Short: "Create a DR repository: the mapping file and the target overlay",
		Long: `Create a DR repository in DIR (a new Git repository, or an existing one without
a dr-syncer.yaml): a commented dr-syncer.yaml and the overlay skeleton of the
target, in one commit. With a --repo URL, the remote (empty, or without a
dr-syncer.yaml on main) is cloned into the cache and the commit is pushed.

Secrets are encrypted with age. Without --recipient, init uses the age identity
at --identity, $` + snapshot.IdentityEnv + `, or the default path
(~/.config/dr-syncer/keys/<source>-to-<target>.agekey), generating it there
(mode 0600, outside the repository) when it does not exist yet.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runInit(cmd, f) },
	}
	f.repo.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.source, "source", "", "name of the source cluster, a DNS label (required)")
	fl.StringVar(&f.target, "target", "", "name of the target cluster, a DNS label (required)")
	fl.StringArrayVar(&f.namespaceMap, "namespace-map", nil, "map a source namespace to a target one, SRC=DST or SRC (same name); repeatable")
	fl.StringArrayVar(&f.storageClassMap, "storage-class-map", nil, "map a source storage class to a target one, A=B; repeatable")
	fl.StringArrayVar(&f.recipients, "recipient", nil, "age recipient to encrypt Secrets to; repeatable (default: the identity's own)")
	fl.StringVar(&f.identity, "identity", "", "age identity file (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	for _, name := range []string{"source", "target"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runInit(cmd *cobra.Command, f initFlags) error {
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	nsMap, err := parseMappings("--namespace-map", f.namespaceMap, true)
	if err != nil {
		return err
	}
	scMap, err := parseMappings("--storage-class-map", f.storageClassMap, false)
	if err != nil {
		return err
	}
	name := f.source + "-to-" + f.target
	opts := policies.InitOptions{Name: name, Source: f.source, Target: f.target, NamespaceMap: nsMap, StorageClassMap: scMap, Recipients: f.recipients}

	// Validate everything before anything is written: a throwaway recipient
	// stands in for one that may still have to be generated.
	probe := opts
	if len(probe.Recipients) == 0 {
		probe.Recipients = []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}
	}
	if _, err := renderInitFile(probe); err != nil {
		return err
	}
	repo, err := openOrInitRepo(ctx, f.repo)
	if err != nil {
		return err
	}

	if len(opts.Recipients) == 0 {
		path, err := snapshot.IdentityPath(f.identity, name)
		if err != nil {
			return err
		}
		id, err := snapshot.LoadIdentity(path)
		switch {
		case err == nil:
			fmt.Fprintf(out, "Using the age identity at %s\n", path)
		case errors.Is(err, fs.ErrNotExist):
			if id, err = snapshot.GenerateIdentity(path); err != nil {
				return err
			}
			fmt.Fprintf(out, "Generated an age identity at %s (mode 0600).\nIt decrypts the Secrets of this repository: keep it safe and out of Git; apply and sync find it there.\n", path)
		default:
			return err
		}
		opts.Recipients = []string{id.Recipient().String()}
	}
	config, err := renderInitFile(opts)
	if err != nil {
		return err
	}
	cfg, err := policies.Decode(policies.FileName, config)
	if err != nil {
		return err
	}
	// The generated overlay exists from the first commit, so that the
	// repository renders before the first snapshot too.
	generated, err := render.Generate(cfg, nil)
	if err != nil {
		return err
	}
	changes := []gitstore.Change{
		{Path: policies.FileName, Content: config},
		{Path: render.OverlayPath(cfg), Content: render.Skeleton(cfg)},
	}
	for _, p := range slices.Sorted(maps.Keys(generated)) {
		changes = append(changes, gitstore.Change{Path: p, Content: generated[p]})
	}
	copts := gitstore.CommitOptions{Branch: controller.DefaultBranch, Message: fmt.Sprintf("init: replicate %s to %s\n", f.source, f.target)}
	var commit plumbing.Hash
	if repo.Remote() == "" {
		commit, err = repo.Commit(ctx, changes, copts)
	} else {
		commit, err = repo.CommitAndPush(ctx, controller.DefaultBranch, func(ctx context.Context, tip plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
			if !tip.IsZero() {
				// Someone pushed meanwhile: never overwrite their mapping.
				if err := noMapping(ctx, repo, tip.String()); err != nil {
					return nil, copts, err
				}
			}
			return changes, copts, nil
		})
	}
	if err != nil {
		return fmt.Errorf("repository %s: %w", repoName(repo, f.repo), err)
	}
	fmt.Fprintf(out, "Initialised %s (commit %s on %s): %s, overlays/%s/kustomization.yaml\n",
		repoName(repo, f.repo), short(commit.String()), controller.DefaultBranch, policies.FileName, f.target)
	return nil
}

func renderInitFile(opts policies.InitOptions) ([]byte, error) {
	data, err := policies.InitFile(opts)
	if err != nil {
		return nil, usageError(err)
	}
	if _, err := policies.Decode(policies.FileName, data); err != nil {
		return nil, usageError(err)
	}
	return data, nil
}

// openOrInitRepo opens the repository if it has no mapping yet on main
// (for a URL: clones it, empty or not), or creates a new repository in
// the directory.
func openOrInitRepo(ctx context.Context, f repoFlags) (*gitstore.Repository, error) {
	if !f.remote() {
		if _, err := os.Stat(filepath.Join(f.location, ".git")); err != nil {
			return gitstore.Init(ctx, f.location)
		}
	}
	repo, err := openRepo(ctx, f)
	if err != nil {
		return nil, err
	}
	if tip, err := repo.Head(ctx, controller.DefaultBranch); err != nil || tip.IsZero() {
		return repo, err
	}
	if err := noMapping(ctx, repo, controller.DefaultBranch); err != nil {
		return nil, err
	}
	return repo, nil
}

// noMapping fails when rev has a mapping already.
func noMapping(ctx context.Context, repo *gitstore.Repository, rev string) error {
	_, err := repo.ReadFile(ctx, rev, policies.FileName)
	if err == nil {
		return usageError(fmt.Errorf("repository %s: already has a %s on %s", cmp.Or(repo.Remote(), "directory"), policies.FileName, controller.DefaultBranch))
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// parseMappings parses SRC=DST flag values; with identity allowed, SRC alone
// maps a name to itself.
func parseMappings(flag string, values []string, identity bool) ([]policies.NameMapping, error) {
	var ms []policies.NameMapping
	for _, v := range values {
		src, dst, ok := strings.Cut(v, "=")
		if !ok && identity {
			dst = src
		}
		if src == "" || dst == "" || (!ok && !identity) {
			return nil, usageError(fmt.Errorf("%s %q: want SRC=DST", flag, v))
		}
		ms = append(ms, policies.NameMapping{Source: src, Target: dst})
	}
	return ms, nil
}
