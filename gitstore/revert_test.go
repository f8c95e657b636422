package gitstore

import (
	"errors"
	"strings"
	"testing"
)

func TestRevert(t *testing.T) {
	ctx := t.Context()
	r, dir := initRepo(t)
	commit(t, r, "main", Change{Path: "s/a.yaml", Content: []byte("a1")}, Change{Path: "s/b.yaml", Content: []byte("b1")})
	c2 := commit(t, r, "main", Change{Path: "s/a.yaml", Content: []byte("a2")}, Change{Path: "s/b.yaml"}, Change{Path: "s/c.yaml", Content: []byte("c2")})
	commit(t, r, "main", Change{Path: "other.yaml", Content: []byte("x")}) // a later commit elsewhere

	rev, err := r.Revert(ctx, "main", c2.String(), CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := gitRun(t, dir, "show", "--format=", "--name-status", rev.String()); got != "M\ts/a.yaml\nA\ts/b.yaml\nD\ts/c.yaml\n" {
		t.Errorf("the revert changed:\n%s", got)
	}
	msg := gitRun(t, dir, "log", "-1", "--format=%B")
	if !strings.HasPrefix(msg, `Revert "test commit"`) || !strings.Contains(msg, "This reverts commit "+c2.String()) {
		t.Errorf("message:\n%s", msg)
	}
	for path, want := range map[string]string{"s/a.yaml": "a1", "s/b.yaml": "b1", "other.yaml": "x"} {
		if got := gitRun(t, dir, "show", "HEAD:"+path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	gitRun(t, dir, "fsck", "--strict")
	if st := gitRun(t, dir, "status", "--porcelain"); st != "" {
		t.Errorf("work tree not consistent:\n%s", st)
	}

	// Reverting c2 again: its files no longer hold what c2 left there, so
	// undoing it would overwrite later changes. Refused.
	head := gitRun(t, dir, "rev-parse", "HEAD")
	_, err = r.Revert(ctx, "main", c2.String(), CommitOptions{})
	if !errors.Is(err, ErrRevertConflict) || !strings.Contains(err.Error(), "s/a.yaml") {
		t.Fatalf("second revert: want ErrRevertConflict naming s/a.yaml, got %v", err)
	}
	if gitRun(t, dir, "rev-parse", "HEAD") != head {
		t.Error("a refused revert must write nothing")
	}
}

func TestRevertRefusesMerges(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", Change{Path: "a", Content: []byte("1")})
	gitRun(t, dir, "checkout", "-q", "-b", "side")
	gitRun(t, dir, "commit", "-q", "--allow-empty", "-m", "side")
	gitRun(t, dir, "checkout", "-q", "main")
	commit(t, r, "main", Change{Path: "b", Content: []byte("2")})
	gitRun(t, dir, "merge", "-q", "--no-edit", "side")
	merge := strings.TrimSpace(gitRun(t, dir, "rev-parse", "HEAD"))
	if _, err := r.Revert(t.Context(), "main", merge, CommitOptions{}); err == nil || !strings.Contains(err.Error(), "is a merge") {
		t.Fatalf("want a refusal of the merge, got %v", err)
	}
}
