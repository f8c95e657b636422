package gitstore

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

func TestReadFileAndFiles(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	first := commit(t, r, "main",
		put("dr-syncer.yaml", "v1"),
		put("snapshots/prod/a/ConfigMap/x.yaml", "x1"),
		put("snapshots/prod/b/Secret/s.yaml", "s1"),
	)
	gitRun(t, dir, "tag", "-a", "-m", "first", "v1")
	gitRun(t, dir, "tag", "light", first.String())
	second := commit(t, r, "main",
		put("snapshots/prod/a/ConfigMap/x.yaml", "x2"),
		del("snapshots/prod/b/Secret/s.yaml"),
		put("snapshots/prod/c/ConfigMap/y.yaml", "y2"),
	)

	for _, tc := range []struct {
		rev, path, want string
	}{
		{"main", "snapshots/prod/a/ConfigMap/x.yaml", "x2"},
		{second.String(), "snapshots/prod/a/ConfigMap/x.yaml", "x2"},
		{first.String(), "snapshots/prod/a/ConfigMap/x.yaml", "x1"},
		{first.String()[:12], "snapshots/prod/a/ConfigMap/x.yaml", "x1"},
		{"v1", "snapshots/prod/b/Secret/s.yaml", "s1"},
		{"light", "dr-syncer.yaml", "v1"},
		{"main~1", "snapshots/prod/b/Secret/s.yaml", "s1"},
		{"main", "dr-syncer.yaml", "v1"},
	} {
		got, err := r.ReadFile(ctx, tc.rev, tc.path)
		if err != nil || string(got) != tc.want {
			t.Errorf("ReadFile(%s, %s) = %q, %v; want %q", tc.rev, tc.path, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		rev, path string
		notExist  bool
	}{
		{"main", "snapshots/prod/b/Secret/s.yaml", true},
		{"main", "missing/deep/file", true},
		{"main", "dr-syncer.yaml/below", true},
		{first.String(), "snapshots/prod/c/ConfigMap/y.yaml", true},
		{"main", "snapshots/prod", false},
		{"main", "../x", false},
		{"no-such-branch", "dr-syncer.yaml", false},
		{strings.Repeat("0", 40), "dr-syncer.yaml", false},
	} {
		_, err := r.ReadFile(ctx, tc.rev, tc.path)
		if err == nil || errors.Is(err, fs.ErrNotExist) != tc.notExist || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("ReadFile(%s, %s) = %v; want an error naming the path, fs.ErrNotExist: %v", tc.rev, tc.path, err, tc.notExist)
		}
	}

	// Files agrees with git ls-tree, at the tip and at an older commit.
	for _, rev := range []string{"main", first.String(), "v1"} {
		for _, prefix := range []string{"", "snapshots/prod/", "snapshots/prod/a", "snapshots/none/", "dr-syncer.yaml"} {
			got, err := r.Files(ctx, rev, prefix)
			if err != nil {
				t.Fatalf("Files(%s, %q): %v", rev, prefix, err)
			}
			want := map[string]plumbing.Hash{}
			for _, l := range gitLines(t, dir, "ls-tree", "-r", rev) {
				meta, path, _ := strings.Cut(l, "\t")
				if dirPrefix := strings.TrimSuffix(prefix, "/") + "/"; prefix == "" || strings.HasPrefix(path, dirPrefix) {
					want[path] = plumbing.NewHash(strings.Fields(meta)[2])
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Files(%s, %q) (-git ls-tree +got):\n%s", rev, prefix, diff)
			}
		}
	}
	if _, err := r.Files(ctx, "nope", ""); err == nil {
		t.Error("Files at an unknown revision: no error")
	}
}

func TestHead(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	if h, err := r.Head(ctx, "snapshots/prod"); err != nil || !h.IsZero() {
		t.Errorf("Head of a missing branch = %s, %v", h, err)
	}
	h := commit(t, r, "snapshots/prod", put("a", "1"))
	if got, err := r.Head(ctx, "snapshots/prod"); err != nil || got != h || got != revParse(t, dir, "snapshots/prod") {
		t.Errorf("Head = %s, %v; want %s", got, err, h)
	}
	gitRun(t, dir, "pack-refs", "--all")
	if got, err := r.Head(ctx, "snapshots/prod"); err != nil || got != h {
		t.Errorf("Head of a packed ref = %s, %v; want %s", got, err, h)
	}
	h2 := commit(t, r, "snapshots/prod", put("a", "2"))
	if got := revParse(t, dir, "snapshots/prod"); got != h2 {
		t.Errorf("commit on a packed ref: branch at %s, want %s", got, h2)
	}
	if _, err := r.Head(ctx, "bad..name"); err == nil {
		t.Error("Head of an invalid branch name: no error")
	}
}

func TestResolve(t *testing.T) {
	ctx := t.Context()
	repo, err := Init(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Resolve(ctx, "main"); err == nil {
		t.Fatal("Resolve of a branch with no commit: want an error")
	}
	first, err := repo.Commit(ctx, []Change{{Path: "a", Content: []byte("1")}}, CommitOptions{Branch: "main", Message: "one"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := repo.Commit(ctx, []Change{{Path: "a", Content: []byte("2")}}, CommitOptions{Branch: "main", Message: "two"})
	if err != nil {
		t.Fatal(err)
	}
	for rev, want := range map[string]plumbing.Hash{"main": second, "main~1": first, first.String(): first} {
		got, err := repo.Resolve(ctx, rev)
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %s, %v; want %s", rev, got, err, want)
		}
	}
}

func TestReadBlob(t *testing.T) {
	ctx := t.Context()
	r, _ := initRepo(t)
	commit(t, r, "main", Change{Path: "d/a.yaml", Content: []byte("a")}, Change{Path: "d/b.yaml", Content: []byte("bb")})
	files, err := r.Files(ctx, "main", "d")
	if err != nil {
		t.Fatal(err)
	}
	for p, h := range files {
		got, err := r.ReadBlob(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.ReadFile(ctx, "main", p)
		if err != nil || string(got) != string(want) {
			t.Errorf("ReadBlob(%s) = %q, ReadFile = %q (%v)", p, got, want, err)
		}
	}
	if _, err := r.ReadBlob(ctx, plumbing.NewHash("0123456789012345678901234567890123456789")); err == nil {
		t.Error("ReadBlob of an unknown hash: want an error")
	}
}

// TestFilesThroughTreeMemo: Files walks the trees through the repository's
// memo of directories (treeMemo); after each commit of a sequence, and
// back and forth between commits and prefixes, it lists exactly what git
// lists, hash included: a directory is taken from the memo only under the
// same path and tree hash. FilesInto a map used before lists the same.
func TestFilesThroughTreeMemo(t *testing.T) {
	r, dir := initRepo(t)
	ctx := t.Context()
	lsFiles := func(rev, prefix string) map[string]plumbing.Hash {
		t.Helper()
		want := map[string]plumbing.Hash{}
		args := []string{"ls-tree", "-r", rev}
		if prefix != "" {
			args = append(args, "--", prefix)
		}
		for _, l := range gitLines(t, dir, args...) {
			meta, path, _ := strings.Cut(l, "\t")
			f := strings.Fields(meta)
			want[path] = plumbing.NewHash(f[2])
		}
		return want
	}
	var revs []string
	steps := [][]Change{
		{put("a/x.yaml", "1"), put("a/b/y.yaml", "1"), put("c/z.yaml", "1")},
		{put("a/b/y.yaml", "2")},                    // a deep file: a/ and a/b/ change, c/ does not
		{del("c/z.yaml"), put("d/z.yaml", "1")},     // a directory goes, another comes
		{put("e/b/y.yaml", "2")},                    // the same tree as a/b/ at another path
		{put("a/x.yaml", "1"), put("a/n.yaml", "")}, // an empty file beside an unchanged one
	}
	for i, step := range steps {
		h := commit(t, r, "main", step...)
		revs = append(revs, h.String())
		for _, prefix := range []string{"", "a/"} {
			got, err := r.Files(ctx, h.String(), prefix)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(lsFiles(h.String(), prefix), got); diff != "" {
				t.Errorf("step %d, prefix %q: Files (-git +gitstore):\n%s", i, prefix, diff)
			}
		}
	}
	// Back to older commits, whose directories the memo dropped or holds
	// beside newer ones.
	for _, rev := range []string{revs[0], revs[3], revs[1], revs[4]} {
		got, err := r.Files(ctx, rev, "")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(lsFiles(rev, ""), got); diff != "" {
			t.Errorf("%s: Files (-git +gitstore):\n%s", rev, diff)
		}
	}
	// FilesInto one map, commit after commit and back: it holds the
	// files of the commit listed, none of the one before.
	into := map[string]plumbing.Hash{"stale.yaml": {}}
	for _, rev := range []string{revs[0], revs[2], revs[4], revs[1], revs[3], revs[0]} {
		for _, prefix := range []string{"", "a/"} {
			if err := r.FilesInto(ctx, rev, prefix, into); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(lsFiles(rev, prefix), into); diff != "" {
				t.Errorf("%s, prefix %q: FilesInto a used map (-git +gitstore):\n%s", rev, prefix, diff)
			}
		}
	}
}

// TestTreeMemoBounded: commits and path lookups with no walk between them
// add nothing to the memo of directories; it holds what the last two walks
// listed.
func TestTreeMemoBounded(t *testing.T) {
	r, _ := initRepo(t)
	ctx := t.Context()
	commit(t, r, "main", put("a/x.yaml", "1"), put("b/y.yaml", "1"))
	size := func() int {
		r.trees.mu.Lock()
		defer r.trees.mu.Unlock()
		return len(r.trees.cur) + len(r.trees.prev)
	}
	if _, err := r.Files(ctx, "main", ""); err != nil {
		t.Fatal(err)
	}
	listed := size()
	if listed == 0 {
		t.Fatal("a walk put nothing in the memo")
	}
	for i := range 20 {
		commit(t, r, "main", put(fmt.Sprintf("d%d/e/f.yaml", i), "1"))
		if _, err := r.ReadFile(ctx, "main", fmt.Sprintf("d%d/e/f.yaml", i)); err != nil {
			t.Fatal(err)
		}
	}
	if got := size(); got > listed {
		t.Errorf("the memo holds %d directories after commits and lookups, %d after the walk", got, listed)
	}
	// Two walks later only the directories of the newest commit are held.
	for range 2 {
		if _, err := r.Files(ctx, "main", ""); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := size(), 2+2*20; got != want {
		t.Errorf("the memo holds %d directories after two walks, want %d (a/, b/ and d<i>/, d<i>/e/)", got, want)
	}
}
