package gitstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
	"github.com/google/go-cmp/cmp"
)

func TestInitAndOpen(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "new", "repo")
	r, err := Init(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(gitRun(t, dir, "symbolic-ref", "HEAD")); got != "refs/heads/main" {
		t.Errorf("HEAD = %q, want refs/heads/main", got)
	}
	if h, err := r.Head(ctx, "main"); err != nil || !h.IsZero() {
		t.Errorf("Head(main) of a new repository = %s, %v; want zero hash, no error", h, err)
	}
	if _, err := Init(ctx, dir); err == nil {
		t.Error("Init on an existing repository: no error")
	}
	bare := t.TempDir()
	gitRun(t, bare, "init", "-q", "--bare")
	if _, err := Init(ctx, bare); err == nil {
		t.Error("Init on an existing bare repository: no error")
	}
	if _, err := Open(ctx, dir); err != nil {
		t.Errorf("Open(%s): %v", dir, err)
	}
	notRepo := t.TempDir()
	if _, err := Open(ctx, notRepo); err == nil || !strings.Contains(err.Error(), notRepo) {
		t.Errorf("Open on a plain directory = %v, want an error naming %s", err, notRepo)
	}
}

func TestCommitFirst(t *testing.T) {
	r, dir := initRepo(t)
	when := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("", 3600))
	msg := "snapshot prod\n\nSource-Cluster: prod-eu\nSnapshot-Mode: continuous\nObjects-Changed: 2"
	h, err := r.Commit(t.Context(), []Change{
		put("snapshots/prod/default/ConfigMap/a.yaml", "a: 1\n"),
		put("dr-syncer.yaml", "kind: Mapping\n"),
	}, CommitOptions{Branch: "main", Message: msg, Author: Signature{Name: "Ann", Email: "ann@example.com", When: when}})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, dir)
	if got := revParse(t, dir, "refs/heads/main"); got != h {
		t.Errorf("main = %s, Commit returned %s", got, h)
	}
	if head, err := r.Head(t.Context(), "main"); err != nil || head != h {
		t.Errorf("Head(main) = %s, %v; want %s", head, err, h)
	}
	log := gitRun(t, dir, "log", "--format=%an <%ae> %aI|%cn|%(trailers:key=Source-Cluster,valueonly)|%B")
	want := "Ann <ann@example.com> 2026-03-01T12:00:00+01:00|Ann|prod-eu\n|" + msg + "\n\n"
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("git log (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"dr-syncer.yaml", "snapshots/prod/default/ConfigMap/a.yaml"}, lsTree(t, dir, "main")); diff != "" {
		t.Errorf("git ls-tree (-want +got):\n%s", diff)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status after the first commit: %q, want clean", st)
	}
	if got := readFile(t, filepath.Join(dir, "snapshots/prod/default/ConfigMap/a.yaml")); got != "a: 1\n" {
		t.Errorf("work tree file = %q", got)
	}
}

func TestCommitDefaultAuthor(t *testing.T) {
	r, dir := initRepo(t)
	before := time.Now().Add(-time.Second)
	commit(t, r, "main", put("a", "x"))
	got := strings.Fields(gitRun(t, dir, "log", "--format=%an %ae %at"))
	if got[0] != "dr-syncer" || got[1] != "dr-syncer@localhost" {
		t.Errorf("default author = %q", got)
	}
	var at int64
	fmt.Sscan(got[2], &at)
	if at < before.Unix() || at > time.Now().Unix()+1 {
		t.Errorf("default author time %d, want about now", at)
	}
}

func TestCommitSequence(t *testing.T) {
	r, dir := initRepo(t)
	steps := []struct {
		name    string
		changes []Change
		want    []string // git ls-tree -r of the tip
		dirGone string   // a work tree directory the step must have removed
	}{
		{
			name: "add nested",
			changes: []Change{
				put("snapshots/prod/a/ConfigMap/one.yaml", "1"),
				put("snapshots/prod/a/ConfigMap/two.yaml", "2"),
				put("snapshots/prod/b/apps.Deployment/web.yaml", "w"),
				put("snapshots/prod/_cluster/Namespace/a.yaml", "ns"),
			},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/b/apps.Deployment/web.yaml",
			},
		},
		{
			name: "modify and add beside",
			changes: []Change{
				put("snapshots/prod/a/ConfigMap/one.yaml", "1 changed"),
				put("snapshots/prod/a/Secret/s.yaml", "s"),
			},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/a/Secret/s.yaml",
				"snapshots/prod/b/apps.Deployment/web.yaml",
			},
		},
		{
			name: "delete the last file of a namespace",
			changes: []Change{
				del("snapshots/prod/b/apps.Deployment/web.yaml"),
				del("snapshots/prod/a/ConfigMap/not-there.yaml"),
			},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/a/Secret/s.yaml",
			},
			dirGone: "snapshots/prod/b",
		},
		{
			name:    "replace a directory by a file",
			changes: []Change{del("snapshots/prod/a/Secret/s.yaml"), put("snapshots/prod/a/Secret", "now a file")},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/a/Secret",
			},
		},
		{
			name:    "replace a file by a directory",
			changes: []Change{del("snapshots/prod/a/Secret"), put("snapshots/prod/a/Secret/s.yaml", "s again")},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/a/Secret/s.yaml",
			},
		},
		{
			name:    "empty file",
			changes: []Change{{Path: "snapshots/prod/empty", Content: []byte{}}},
			want: []string{
				"snapshots/prod/_cluster/Namespace/a.yaml",
				"snapshots/prod/a/ConfigMap/one.yaml",
				"snapshots/prod/a/ConfigMap/two.yaml",
				"snapshots/prod/a/Secret/s.yaml",
				"snapshots/prod/empty",
			},
		},
		{
			name: "delete everything",
			changes: []Change{
				del("snapshots/prod/_cluster/Namespace/a.yaml"),
				del("snapshots/prod/a/ConfigMap/one.yaml"),
				del("snapshots/prod/a/ConfigMap/two.yaml"),
				del("snapshots/prod/a/Secret/s.yaml"),
				del("snapshots/prod/empty"),
			},
			dirGone: "snapshots",
		},
	}
	var prev plumbing.Hash
	for i, step := range steps {
		h := commit(t, r, "main", step.changes...)
		fsck(t, dir)
		if diff := cmp.Diff(step.want, lsTree(t, dir, "main")); diff != "" {
			t.Errorf("%s: git ls-tree (-want +got):\n%s", step.name, diff)
		}
		if n := strings.TrimSpace(gitRun(t, dir, "rev-list", "--count", "main")); n != fmt.Sprint(i+1) {
			t.Errorf("%s: %s commits, want %d", step.name, n, i+1)
		}
		if i > 0 {
			if parent := revParse(t, dir, "main^"); parent != prev {
				t.Errorf("%s: parent %s, want %s", step.name, parent, prev)
			}
		}
		if st := status(t, dir); len(st) != 0 {
			t.Errorf("%s: git status %q, want clean", step.name, st)
		}
		for _, c := range step.changes {
			got, err := os.ReadFile(filepath.Join(dir, c.Path))
			switch {
			case c.Content == nil && err == nil:
				t.Errorf("%s: %s still in the work tree", step.name, c.Path)
			case c.Content != nil && string(got) != string(c.Content):
				t.Errorf("%s: work tree %s = %q, %v; want %q", step.name, c.Path, got, err, c.Content)
			}
		}
		if step.dirGone != "" {
			if _, err := os.Lstat(filepath.Join(dir, step.dirGone)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: directory %s still in the work tree (%v)", step.name, step.dirGone, err)
			}
		}
		prev = h
	}
}

func TestCommitNoChange(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	opts := CommitOptions{Branch: "main", Message: "m"}
	if _, err := r.Commit(ctx, []Change{del("nothing")}, opts); !errors.Is(err, ErrNoChange) {
		t.Errorf("deleting a missing file on an empty branch: %v, want ErrNoChange", err)
	}
	h := commit(t, r, "main", put("a/b", "x"), put("c", "y"))
	for _, changes := range [][]Change{
		nil,
		{put("a/b", "x")},
		{put("a/b", "x"), put("c", "y")},
		{del("a/missing"), del("missing/too")},
	} {
		if _, err := r.Commit(ctx, changes, opts); !errors.Is(err, ErrNoChange) {
			t.Errorf("Commit(%v) = %v, want ErrNoChange", changes, err)
		}
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main moved to %s after no-change commits", got)
	}
}

func TestCommitInvalid(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	h := commit(t, r, "main", put("a/file", "x"), put("dir/x", "y"))
	objects := gitRun(t, dir, "count-objects")
	good := put("ok/path", "fine")
	for _, tc := range []struct {
		changes []Change
		opts    CommitOptions
		want    string // in the error
	}{
		{[]Change{good, put("a/../b", "x")}, CommitOptions{}, `path "a/../b"`},
		{[]Change{good, put("/abs", "x")}, CommitOptions{}, `path "/abs"`},
		{[]Change{good, put("a//b", "x")}, CommitOptions{}, `path "a//b"`},
		{[]Change{good, put("a/./b", "x")}, CommitOptions{}, `path "a/./b"`},
		{[]Change{good, put("", "x")}, CommitOptions{}, `path ""`},
		{[]Change{good, put(".git/config", "x")}, CommitOptions{}, `path ".git/config"`},
		{[]Change{good, put("x/.git/hooks/post-checkout", "x")}, CommitOptions{}, `path "x/.git/hooks/post-checkout"`},
		{[]Change{good, put("nul\x00", "x")}, CommitOptions{}, `path "nul\x00"`},
		{[]Change{good, put("trailing/", "x")}, CommitOptions{}, `path "trailing/"`},
		{[]Change{good, put("ok/path", "again")}, CommitOptions{}, `path "ok/path": given twice`},
		{[]Change{good, put("a/file/under", "x")}, CommitOptions{}, `path "a/file/under": "a/file" is a file`},
		{[]Change{good, put("dir", "x")}, CommitOptions{}, `path "dir": is a directory`},
		{[]Change{good, del("dir")}, CommitOptions{}, `path "dir": is a directory`},
		{[]Change{good, put("new", "x"), put("new/x", "y")}, CommitOptions{}, `path "new": is a directory`},
		{[]Change{good}, CommitOptions{Branch: "refs/heads/main", Message: "m"}, `refs/heads/main`},
		{[]Change{good}, CommitOptions{Branch: "main"}, `empty message`},
		{[]Change{good}, CommitOptions{Branch: "main", Message: "m", Author: Signature{Name: "a <b>"}}, `author`},
	} {
		opts := tc.opts
		if opts.Branch == "" {
			opts = CommitOptions{Branch: "main", Message: "m"}
		}
		_, err := r.Commit(ctx, tc.changes, opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gitstore: commit on ") {
			t.Errorf("Commit(%q) = %v, want an error containing %q", tc.changes, err, tc.want)
		}
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main moved to %s after invalid commits", got)
	}
	if got := gitRun(t, dir, "count-objects"); got != objects {
		t.Errorf("objects written by invalid commits: before %q, after %q", objects, got)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}

func TestCommitCancelled(t *testing.T) {
	r, dir := initRepo(t)
	h := commit(t, r, "main", put("a", "1"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := r.Commit(ctx, []Change{put("a", "2")}, CommitOptions{Branch: "main", Message: "m"}); err == nil {
		t.Error("Commit with a cancelled context: no error")
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main moved to %s", got)
	}
}

func TestCommitBare(t *testing.T) {
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q", "--bare", "--initial-branch=main")
	r, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, r, "main", put("snapshots/prod/a/ConfigMap/x.yaml", "x"), put("overlays/dr/kustomization.yaml", "k"))
	h := commit(t, r, "main", put("snapshots/prod/a/ConfigMap/x.yaml", "x2"), put("snapshots/prod/a/ConfigMap/y.yaml", "y"))
	fsck(t, dir)
	want := []string{"overlays/dr/kustomization.yaml", "snapshots/prod/a/ConfigMap/x.yaml", "snapshots/prod/a/ConfigMap/y.yaml"}
	if diff := cmp.Diff(want, lsTree(t, dir, "main")); diff != "" {
		t.Errorf("git ls-tree (-want +got):\n%s", diff)
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main = %s, want %s", got, h)
	}
	if got := gitRun(t, dir, "show", "main:snapshots/prod/a/ConfigMap/x.yaml"); got != "x2" {
		t.Errorf("git show = %q", got)
	}
}

// A person's work in the same work tree survives: an unstaged edit, a staged
// edit, an untracked file.
func TestCommitKeepsUserEdits(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main",
		put("overlays/dr/kustomization.yaml", "resources: []\n"),
		put("overlays/dr/patch.yaml", "p: 1\n"),
		put("snapshots/prod/a/ConfigMap/x.yaml", "x"),
	)
	writeFile(t, filepath.Join(dir, "overlays/dr/kustomization.yaml"), "resources: [edited]\n")
	writeFile(t, filepath.Join(dir, "overlays/dr/patch.yaml"), "p: 2\n")
	gitRun(t, dir, "add", "overlays/dr/patch.yaml")
	writeFile(t, filepath.Join(dir, "notes.txt"), "todo\n")
	wantStatus := []string{" M overlays/dr/kustomization.yaml", "M  overlays/dr/patch.yaml", "?? notes.txt"}
	if diff := cmp.Diff(wantStatus, status(t, dir)); diff != "" {
		t.Fatalf("git status before (-want +got):\n%s", diff)
	}

	commit(t, r, "main", put("snapshots/prod/a/ConfigMap/x.yaml", "x2"), put("snapshots/prod/b/ConfigMap/y.yaml", "y"))
	if diff := cmp.Diff(wantStatus, status(t, dir)); diff != "" {
		t.Errorf("git status after Commit (-want +got):\n%s", diff)
	}
	if got := readFile(t, filepath.Join(dir, "overlays/dr/kustomization.yaml")); got != "resources: [edited]\n" {
		t.Errorf("edited file = %q", got)
	}
	if got := gitRun(t, dir, "show", ":overlays/dr/patch.yaml"); got != "p: 2\n" {
		t.Errorf("staged content = %q", got)
	}
	// The person's commit goes on top of ours and keeps both.
	gitRun(t, dir, "commit", "-q", "-m", "person")
	want := []string{"overlays/dr/kustomization.yaml", "overlays/dr/patch.yaml", "snapshots/prod/a/ConfigMap/x.yaml", "snapshots/prod/b/ConfigMap/y.yaml"}
	if diff := cmp.Diff(want, lsTree(t, dir, "main")); diff != "" {
		t.Errorf("git ls-tree after the person's commit (-want +got):\n%s", diff)
	}
	if got := gitRun(t, dir, "show", "main:snapshots/prod/a/ConfigMap/x.yaml"); got != "x2" {
		t.Errorf("person's commit has x.yaml = %q, want ours", got)
	}
	fsck(t, dir)
}

// A commit on a branch HEAD does not point at leaves the work tree and the
// index alone.
func TestCommitOtherBranch(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("a", "1"))
	index := readFile(t, filepath.Join(dir, ".git/index"))
	commit(t, r, "snapshots/prod", put("snapshots/prod/x.yaml", "x"))
	if _, err := os.Lstat(filepath.Join(dir, "snapshots")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("commit on another branch wrote the work tree (%v)", err)
	}
	if readFile(t, filepath.Join(dir, ".git/index")) != index {
		t.Error("commit on another branch changed the index")
	}
	if diff := cmp.Diff([]string{"snapshots/prod/x.yaml"}, lsTree(t, dir, "snapshots/prod")); diff != "" {
		t.Errorf("git ls-tree snapshots/prod (-want +got):\n%s", diff)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
	fsck(t, dir)
}

func TestCommitKeepsExecutable(t *testing.T) {
	r, dir := initRepo(t)
	writeFile(t, filepath.Join(dir, "hack/run.sh"), "#!/bin/sh\n")
	os.Chmod(filepath.Join(dir, "hack/run.sh"), 0o755)
	gitRun(t, dir, "add", ".")
	gitRun(t, dir, "commit", "-q", "-m", "person")
	commit(t, r, "main", put("hack/run.sh", "#!/bin/sh\necho\n"))
	if got := gitRun(t, dir, "ls-tree", "main", "hack/run.sh"); !strings.HasPrefix(got, "100755 ") {
		t.Errorf("mode after Commit: %q, want 100755", got)
	}
	fi, err := os.Stat(filepath.Join(dir, "hack/run.sh"))
	if err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("work tree file not executable: %v %v", fi.Mode(), err)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}

// A symbolic link in the work tree must not make Commit write outside it.
func TestCommitWorkTreeSymlink(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("a", "1"))
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	h, err := r.Commit(t.Context(), []Change{put("snapshots/prod/x.yaml", "x")}, CommitOptions{Branch: "main", Message: "m"})
	if err == nil || h.IsZero() {
		t.Errorf("Commit through a symlinked directory = %s, %v; want the commit and an error", h, err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("Commit wrote outside the work tree: %v", entries)
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main = %s, want %s", got, h)
	}
}

// The tip moves between Commit reading it and Commit moving the branch:
// Commit must fail, and the other commit must stay.
func TestCommitConcurrentRefMove(t *testing.T) {
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q", "--bare", "--initial-branch=main")
	ctx := t.Context()
	r1, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		setup func()
	}{
		{"new branch", func() {}},
		{"existing branch", func() { commit(t, r1, "main", put("base", "b")) }},
	} {
		tc.setup()
		var other plumbing.Hash
		r1.beforeRefUpdate = func() {
			r1.beforeRefUpdate = nil
			other = commit(t, r2, "main", put("other", tc.name))
		}
		h, err := r1.Commit(ctx, []Change{put("mine", tc.name)}, CommitOptions{Branch: "main", Message: "mine"})
		if !errors.Is(err, storage.ErrReferenceHasChanged) || !h.IsZero() {
			t.Errorf("%s: Commit after the tip moved = %s, %v; want ErrReferenceHasChanged", tc.name, h, err)
		}
		if got := revParse(t, dir, "main"); got != other {
			t.Errorf("%s: main = %s, want the other commit %s", tc.name, got, other)
		}
		// Trying again puts the commit on top of the other one.
		h, err = r1.Commit(ctx, []Change{put("mine", tc.name)}, CommitOptions{Branch: "main", Message: "mine"})
		if err != nil {
			t.Fatalf("%s: retry: %v", tc.name, err)
		}
		if parent := revParse(t, dir, "main^"); parent != other || revParse(t, dir, "main") != h {
			t.Errorf("%s: retry made %s with parent %s, want parent %s", tc.name, h, parent, other)
		}
		fsck(t, dir)
		if _, err := os.Stat(filepath.Join(dir, "refs/heads/main.lock")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: ref lock left behind (%v)", tc.name, err)
		}
	}
}

// Writers in separate Repository values (as in separate processes) that
// retry on conflicts never lose a commit.
func TestCommitConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	gitRun(t, dir, "init", "-q", "--bare", "--initial-branch=main")
	const writers, commits = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := Open(t.Context(), dir)
			if err != nil {
				errs <- err
				return
			}
			for i := range commits {
				for {
					_, err := r.Commit(t.Context(), []Change{put(fmt.Sprintf("w%d/%d", w, i), "x")},
						CommitOptions{Branch: "main", Message: fmt.Sprintf("w%d %d", w, i)})
					if errors.Is(err, storage.ErrReferenceHasChanged) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := strings.TrimSpace(gitRun(t, dir, "rev-list", "--count", "main")); n != fmt.Sprint(writers*commits) {
		t.Errorf("%s commits, want %d", n, writers*commits)
	}
	if n := len(lsTree(t, dir, "main")); n != writers*commits {
		t.Errorf("%d files, want %d", n, writers*commits)
	}
	fsck(t, dir)
}

// A git command holding index.lock makes Commit fail before the branch moves.
func TestCommitIndexLocked(t *testing.T) {
	r, dir := initRepo(t)
	h := commit(t, r, "main", put("a", "1"))
	writeFile(t, filepath.Join(dir, ".git/index.lock"), "")
	if _, err := r.Commit(t.Context(), []Change{put("a", "2")}, CommitOptions{Branch: "main", Message: "m"}); err == nil || !strings.Contains(err.Error(), "index.lock") {
		t.Errorf("Commit with index.lock held = %v, want an error naming index.lock", err)
	}
	if got := revParse(t, dir, "main"); got != h {
		t.Errorf("main moved to %s", got)
	}
}

// A linked work tree (git worktree add) has its own HEAD and index; the
// branch lives in the common directory.
func TestCommitLinkedWorkTree(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("a", "1"))
	linked := filepath.Join(t.TempDir(), "linked")
	gitRun(t, dir, "worktree", "add", "-q", "-b", "snapshots/prod", linked)
	lr, err := Open(t.Context(), linked)
	if err != nil {
		t.Fatal(err)
	}
	h := commit(t, lr, "snapshots/prod", put("snapshots/prod/x.yaml", "x"))
	if got := revParse(t, dir, "snapshots/prod"); got != h {
		t.Errorf("branch = %s, want %s", got, h)
	}
	if got := readFile(t, filepath.Join(linked, "snapshots/prod/x.yaml")); got != "x" {
		t.Errorf("linked work tree file = %q", got)
	}
	for _, d := range []string{dir, linked} {
		if st := status(t, d); len(st) != 0 {
			t.Errorf("git status in %s: %q, want clean", d, st)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, "snapshots")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the main work tree was written (%v)", err)
	}
	fsck(t, dir)
}

// A long-lived Repository keeps working when git repacks under it (git gc
// moves loose objects into a new pack and deletes old packs).
func TestCommitAfterRepack(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	commit(t, r, "main", put("a/x", "1"), put("b/y", "2"))
	if _, err := r.ReadFile(ctx, "main", "a/x"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		gitRun(t, dir, "gc", "-q", "--prune=now")
		h := commit(t, r, "main", put("a/x", fmt.Sprint("gc ", i)))
		if got, err := r.ReadFile(ctx, h.String(), "b/y"); err != nil || string(got) != "2" {
			t.Fatalf("ReadFile after git gc = %q, %v", got, err)
		}
		if cs, err := r.Diff(ctx, "main", "", map[string][]byte{"a/x": []byte(fmt.Sprint("gc ", i)), "b/y": []byte("2")}); err != nil || len(cs.Changes) != 0 {
			t.Fatalf("Diff after git gc = %+v, %v", cs, err)
		}
	}
	fsck(t, dir)
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}

// Objects with hostile names land where ObjectPath says, git accepts the
// tree, and the paths parse back to the same objects.
func TestCommitObjectPaths(t *testing.T) {
	r, dir := initRepo(t)
	ids := []ObjectID{
		{Kind: "ConfigMap", Namespace: "a", Name: "../x"},
		{Kind: "ConfigMap", Namespace: "a", Name: "a/b"},
		{Kind: "ConfigMap", Namespace: "a", Name: ".hidden"},
		{Kind: "ConfigMap", Namespace: "a", Name: ".git"},
		{Kind: "ConfigMap", Namespace: "a", Name: ".."},
		{Kind: "ConfigMap", Namespace: "a", Name: "%41"},
		{Kind: "ConfigMap", Namespace: "a", Name: "A"},
		{Kind: "ConfigMap", Namespace: "a", Name: "ünïcödé"},
		{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:aggregate-to-admin"},
		{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition", Name: "widgets.example.com"},
	}
	var changes []Change
	for _, id := range ids {
		p, err := ObjectPath("prod", id)
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, put(p, "kind: "+id.Kind+"\n"))
	}
	commit(t, r, "main", changes...)
	fsck(t, dir)
	files, err := r.Files(t.Context(), "main", SnapshotPrefix("prod"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[ObjectID]bool{}
	for p := range files {
		source, id, err := ParseObjectPath(p)
		if err != nil || source != "prod" {
			t.Errorf("ParseObjectPath(%q) = %q, %v", p, source, err)
		}
		got[id] = true
	}
	for _, id := range ids {
		if !got[id] {
			t.Errorf("object %+v not found in the commit", id)
		}
	}
	if len(got) != len(ids) || len(lsTree(t, dir, "main")) != len(ids) {
		t.Errorf("%d objects in the commit, want %d", len(got), len(ids))
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}

// One Repository shared by goroutines: operations run one at a time and
// every commit lands.
func TestCommitSharedRepository(t *testing.T) {
	r, dir := initRepo(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 5 {
				if _, err := r.Commit(t.Context(), []Change{put(fmt.Sprintf("w%d/%d", w, i), "x")}, CommitOptions{Branch: "main", Message: "m"}); err != nil {
					t.Error(err)
				}
				if _, err := r.Files(t.Context(), "main", ""); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if n := strings.TrimSpace(gitRun(t, dir, "rev-list", "--count", "main")); n != "20" {
		t.Errorf("%s commits, want 20", n)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}
