package gitstore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// packFiles lists the packs and indexes of a repository, and any temporary
// file a pack write left behind.
func packFiles(t *testing.T, gitDir string) (packs, tmp []string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(gitDir, "objects", "pack"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e.Name(), "tmp_"):
			tmp = append(tmp, e.Name())
		case strings.HasSuffix(e.Name(), ".pack"):
			packs = append(packs, e.Name())
		}
	}
	return packs, tmp
}

func looseObjects(t *testing.T, gitDir string) int {
	t.Helper()
	n := 0
	dirs, _ := filepath.Glob(filepath.Join(gitDir, "objects", "??"))
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		n += len(entries)
	}
	return n
}

// packContent is the content of file i of a large commit: some files share
// content, so that the pack must hold each blob once.
func packContent(i, rev int) string {
	if i%50 == 0 {
		return "shared\n"
	}
	return fmt.Sprintf("kind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  rev: %q\n%s", i, fmt.Sprint(rev), strings.Repeat("  x: y\n", i%7))
}

func packChanges(n, rev int) []Change {
	var changes []Change
	for i := range n {
		changes = append(changes, put(fmt.Sprintf("snapshots/prod/ns-%02d/apps.Deployment/d-%05d.yaml", i%13, i), packContent(i, rev)))
	}
	return changes
}

// TestCommitPack commits enough new objects to go through writePack, and
// checks what git makes of it: fsck, the tree (the same as git builds from
// the same files), every blob, the index and the work tree.
func TestCommitPack(t *testing.T) {
	r, dir := initRepo(t)
	gitDir := filepath.Join(dir, ".git")
	const n = 3 * packThreshold
	commit(t, r, "main", put("overlays/dr/kustomization.yaml", "resources: []\n"))
	first := commit(t, r, "main", packChanges(n, 1)...)

	packs, tmp := packFiles(t, gitDir)
	if len(packs) != 1 || len(tmp) != 0 {
		t.Fatalf("after a commit of %d files: packs %q, temporary files %q; want one pack", n, packs, tmp)
	}
	fsck(t, dir)
	gitRun(t, dir, "verify-pack", filepath.Join(gitDir, "objects", "pack", packs[0]))
	if st := status(t, dir); len(st) != 0 {
		t.Fatalf("git status after the pack commit: %q", st[:min(len(st), 5)])
	}
	if got := revParse(t, dir, "HEAD"); got != first {
		t.Fatalf("HEAD = %s, want %s", got, first)
	}

	// The tree git builds from the same files is the one Commit wrote.
	ref := t.TempDir()
	gitRun(t, ref, "init", "-q")
	writeFile(t, filepath.Join(ref, "overlays/dr/kustomization.yaml"), "resources: []\n")
	for _, c := range packChanges(n, 1) {
		writeFile(t, filepath.Join(ref, filepath.FromSlash(c.Path)), string(c.Content))
	}
	gitRun(t, ref, "add", "-A")
	want := strings.TrimSpace(gitRun(t, ref, "write-tree"))
	if got := strings.TrimSpace(gitRun(t, dir, "rev-parse", "HEAD^{tree}")); got != want {
		t.Fatalf("tree of the pack commit = %s, git builds %s from the same files", got, want)
	}

	// Every blob reads back through git and through gitstore.
	files := lsTree(t, dir, "HEAD")
	if len(files) != n+1 {
		t.Fatalf("git ls-tree: %d files, want %d", len(files), n+1)
	}
	var batch strings.Builder
	for _, c := range packChanges(n, 1) {
		batch.WriteString("HEAD:" + c.Path + "\n")
	}
	out := gitStdin(t, dir, batch.String(), "cat-file", "--batch")
	for i, c := range packChanges(n, 1) {
		if !strings.Contains(out, string(c.Content)) {
			t.Fatalf("git cat-file: %s missing its content", c.Path)
		}
		if i%97 == 0 {
			got, err := r.ReadFile(t.Context(), "main", c.Path)
			if err != nil || string(got) != string(c.Content) {
				t.Fatalf("ReadFile(%s) = %q, %v; want %q", c.Path, got, err, c.Content)
			}
		}
	}

	// A small change on top goes loose; a large one makes a second pack;
	// both read back, and a deletion of most files too.
	commit(t, r, "main", put("snapshots/prod/ns-00/apps.Deployment/d-00000.yaml", "changed\n"))
	if packs, _ := packFiles(t, gitDir); len(packs) != 1 {
		t.Fatalf("after a one-file commit: packs %q, want still one", packs)
	}
	commit(t, r, "main", packChanges(n, 2)...)
	if packs, _ := packFiles(t, gitDir); len(packs) != 2 {
		t.Fatalf("after a second large commit: packs %q, want two", packs)
	}
	var dels []Change
	for _, c := range packChanges(n, 2)[1:] {
		dels = append(dels, del(c.Path))
	}
	last := commit(t, r, "main", dels...)
	fsck(t, dir)
	if st := status(t, dir); len(st) != 0 {
		t.Fatalf("git status after the last commit: %q", st[:min(len(st), 5)])
	}
	if got := lsTree(t, dir, last.String()); !slices.Equal(got, []string{"overlays/dr/kustomization.yaml", packChanges(1, 0)[0].Path}) {
		t.Fatalf("git ls-tree after deleting: %q", got)
	}
	if n := looseObjects(t, gitDir); n > 20 {
		t.Fatalf("%d loose objects, want only those of the small commits", n)
	}
	gitRun(t, dir, "gc", "-q")
	fsck(t, dir)
}

// TestCommitPackBare writes a pack into a bare repository and then commits
// again: the object storage must see the new pack.
func TestCommitPackBare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bare.git")
	gitRun(t, filepath.Dir(dir), "init", "-q", "--bare", "--initial-branch=main", dir)
	r, err := Open(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, r, "main", packChanges(packThreshold, 1)...)
	commit(t, r, "main", put("snapshots/prod/ns-00/apps.Deployment/d-00001.yaml", "x\n"))
	cs, err := r.Diff(t.Context(), "main", "snapshots/prod/ns-01/", map[string][]byte{})
	if err != nil || len(cs.Removed) == 0 {
		t.Fatalf("Diff after the pack commit = %d removed, %v", len(cs.Removed), err)
	}
	fsck(t, dir)
	if packs, _ := packFiles(t, dir); len(packs) != 1 {
		t.Fatalf("packs %q, want one", packs)
	}
}

// TestCommitPackRefMoved makes the branch move while Commit writes a pack:
// the commit fails, the branch is left alone, and the pack, complete and
// unreferenced, breaks nothing.
func TestCommitPackRefMoved(t *testing.T) {
	r, dir := initRepo(t)
	base := commit(t, r, "main", put("a.txt", "a\n"))
	other := otherCommit(t, dir, base)
	r.beforeRefUpdate = func() { gitRun(t, dir, "update-ref", "refs/heads/main", other) }
	_, err := r.Commit(t.Context(), packChanges(packThreshold, 1), CommitOptions{Branch: "main", Message: "m"})
	if err == nil {
		t.Fatal("Commit succeeded although the branch moved")
	}
	if got := revParse(t, dir, "main").String(); got != other {
		t.Fatalf("main = %s, want %s (moved by the other writer)", got, other)
	}
	if packs, tmp := packFiles(t, filepath.Join(dir, ".git")); len(packs) != 1 || len(tmp) != 0 {
		t.Fatalf("packs %q, temporary files %q; want the one written", packs, tmp)
	}
	fsck(t, dir)
}

// otherCommit makes a commit on top of base with git, for a concurrent writer.
func otherCommit(t *testing.T, dir string, base fmt.Stringer) string {
	t.Helper()
	tree := strings.TrimSpace(gitRun(t, dir, "rev-parse", base.String()+"^{tree}"))
	return strings.TrimSpace(gitRun(t, dir, "commit-tree", "-p", base.String(), "-m", "other", tree))
}
