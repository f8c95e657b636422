package gitstore

import (
	"errors"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
)

func TestIsURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"https://git.example.com/ops/dr.git", true},
		{"ssh://git@host:2222/dr.git", true},
		{"git@github.com:ops/dr.git", true},
		{"host:dr.git", true},
		{"file:///srv/dr.git", true},
		{"./dr", false},
		{"dr", false},
		{"/srv/dr", false},
		{"./a:b", false},
		{"C:\\dr", false},
	} {
		if got := IsURL(tc.in); got != tc.want {
			t.Errorf("IsURL(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCacheDirHasNoCredentials(t *testing.T) {
	a := CacheDir("/c", Remote{URL: "https://user@host/dr.git"})
	b := CacheDir("/c", Remote{URL: "https://host/dr.git"})
	if a != b {
		t.Errorf("the user part of the URL changes the cache directory: %s, %s", a, b)
	}
}

// TestSquashMergedBranch: after a squash merge, the branch's files are in
// the base though its commits are not; TreeHash sees it, and ResetBranch
// moves the branch onto the base only from where the caller saw it.
func TestSquashMergedBranch(t *testing.T) {
	ctx := t.Context()
	r, err := Init(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	commit := func(branch string, changes ...Change) plumbing.Hash {
		t.Helper()
		h, err := r.Commit(ctx, changes, CommitOptions{Branch: branch, Message: "c"})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	base := commit("main", Change{Path: "snapshots/a/x.yaml", Content: []byte("x: 1\n")}, Change{Path: "overlays/t/kustomization.yaml", Content: []byte("k: 1\n")})
	if _, err := r.FastForward(ctx, "review", base.String()); err != nil {
		t.Fatal(err)
	}
	commit("review", Change{Path: "snapshots/a/x.yaml", Content: []byte("x: 2\n")})
	tip := commit("review", Change{Path: "snapshots/a/y.yaml", Content: []byte("y: 1\n")})

	treeOf := func(rev, dir string) plumbing.Hash {
		t.Helper()
		h, err := r.TreeHash(ctx, rev, dir)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if treeOf("main", "snapshots") == treeOf("review", "snapshots") {
		t.Fatal("snapshots/ is the same before the merge")
	}
	// A person squash-merges the review branch, and edits an overlay.
	merged := commit("main", Change{Path: "snapshots/a/x.yaml", Content: []byte("x: 2\n")}, Change{Path: "snapshots/a/y.yaml", Content: []byte("y: 1\n")},
		Change{Path: "overlays/t/kustomization.yaml", Content: []byte("k: 2\n")})
	if n, err := r.Count(ctx, "main", "review"); err != nil || n != 2 {
		t.Fatalf("Count(main..review) = %d, %v; want the 2 commits git would count", n, err)
	}
	if treeOf("main", "snapshots/") != treeOf("review", "snapshots") || treeOf("main", "snapshots/a") != treeOf("review", "snapshots/a") {
		t.Fatal("snapshots/ differs after the squash merge")
	}
	if treeOf("main", "overlays") == treeOf("review", "overlays") {
		t.Fatal("overlays/ is the same though main changed it")
	}
	if h := treeOf("main", "nothing/here"); !h.IsZero() {
		t.Fatalf("TreeHash of a missing directory = %s, want zero", h)
	}
	if h := treeOf("main", "snapshots/a/x.yaml"); !h.IsZero() {
		t.Fatalf("TreeHash of a file = %s, want zero", h)
	}

	if _, err := r.ResetBranch(ctx, "review", base, "main"); !errors.Is(err, storage.ErrReferenceHasChanged) {
		t.Fatalf("ResetBranch from a stale tip: %v, want ErrReferenceHasChanged", err)
	}
	if h, err := r.Head(ctx, "review"); err != nil || h != tip {
		t.Fatalf("review moved by a refused reset: %s, %v", h, err)
	}
	if h, err := r.ResetBranch(ctx, "review", tip, "main"); err != nil || h != merged {
		t.Fatalf("ResetBranch = %s, %v; want %s", h, err, merged)
	}
	if n, err := r.Count(ctx, "main", "review"); err != nil || n != 0 {
		t.Fatalf("Count(main..review) after the reset = %d, %v; want 0", n, err)
	}
}
