package controller

import (
	"fmt"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// TestStartBranchAfterSquashMerge: a review branch whose snapshot commits
// were squash-merged into the base starts again from the base, so that the
// next pull request shows only new snapshot commits; one whose content is
// not all in the base stays where it is.
func TestStartBranchAfterSquashMerge(t *testing.T) {
	ctx := t.Context()
	repo, err := gitstore.Init(ctx, t.TempDir())
	require.NoError(t, err)
	n := 0
	commit := func(branch string, files map[string]string) plumbing.Hash {
		t.Helper()
		var changes []gitstore.Change
		for p, c := range files {
			changes = append(changes, gitstore.Change{Path: p, Content: []byte(c)})
		}
		// Messages differ: the same tree on the same parent within the same
		// second would be the same commit.
		n++
		h, err := repo.Commit(ctx, changes, gitstore.CommitOptions{Branch: branch, Message: fmt.Sprintf("commit %d on %s", n, branch)})
		require.NoError(t, err)
		return h
	}
	const (
		obj = "snapshots/prod/shop/ConfigMap/settings.yaml"
		gen = "overlays/dr/generated/namespaces.yaml"
		own = "overlays/dr/kustomization.yaml"
	)
	commit("main", map[string]string{obj: "color: blue\n", gen: "g: 1\n", own: "k: 1\n"})
	const review = "snapshots/prod"
	require.NoError(t, startBranch(ctx, repo, review, "main"))
	snap1 := commit(review, map[string]string{obj: "color: red\n"})
	snap2 := commit(review, map[string]string{gen: "g: 2\n"})

	waiting := func() int {
		t.Helper()
		n, err := repo.Count(ctx, "main", review)
		require.NoError(t, err)
		return n
	}
	// Only half merged (the generated overlay not): it stays.
	commit("main", map[string]string{obj: "color: red\n"})
	require.NoError(t, startBranch(ctx, repo, review, "main"))
	require.Equal(t, snap2, branchHead(t, repo, review))

	// Squash-merged, and a person edits their own overlay on main.
	merged := commit("main", map[string]string{gen: "g: 2\n", own: "k: 2\n"})
	require.Equal(t, 2, waiting(), "by history, both commits still wait")
	ok, err := mergedByContent(ctx, repo, merged, snap2)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = mergedByContent(ctx, repo, merged, snap1)
	require.NoError(t, err)
	require.False(t, ok, "snap1 lacks the generated overlay of main")

	require.NoError(t, startBranch(ctx, repo, review, "main"))
	require.Equal(t, merged, branchHead(t, repo, review), "the review branch starts from main again")
	commit(review, map[string]string{obj: "color: green\n"})
	require.Equal(t, 1, waiting(), "only the new snapshot waits")
}

func branchHead(t *testing.T, repo *gitstore.Repository, branch string) plumbing.Hash {
	t.Helper()
	h, err := repo.Head(t.Context(), branch)
	require.NoError(t, err)
	return h
}
