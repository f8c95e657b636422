package gitstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// linkOf returns the link extension of a work tree's index, if it has one.
func linkOf(t *testing.T, dir string) ([]byte, bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, ".git/index"))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := parseIndex(data)
	if errors.Is(err, errIndexV4) {
		return nil, false // not split by anything here
	}
	if err != nil {
		t.Fatal(err)
	}
	return ix.extension("link")
}

func isSplit(t *testing.T, dir string) bool {
	t.Helper()
	_, ok := linkOf(t, dir)
	return ok
}

// sharedFiles lists the shared index files of a work tree.
func sharedFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".git/sharedindex.*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkIndexMatches asserts that git reads the index as the commit of main
// plus the changes staged before (staged), and the work tree as clean
// apart from them.
func checkIndexMatches(t *testing.T, dir string, staged, wantStatus []string) {
	t.Helper()
	if diff := cmp.Diff(staged, gitLines(t, dir, "diff-index", "--cached", "--name-status", "main")); diff != "" {
		t.Fatalf("index against main (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantStatus, status(t, dir)); diff != "" {
		t.Fatalf("git status (-want +got):\n%s", diff)
	}
}

func TestEWAHRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := [][]int{nil, {0}, {63}, {64}, {0, 1, 2, 3}, {5, 700, 701, 100_000}, {128, 129, 4000}}
	for range 200 {
		var set []int
		p := 0
		for range rng.IntN(50) {
			p += 1 + rng.IntN([]int{3, 70, 5000}[rng.IntN(3)])
			set = append(set, p)
		}
		cases = append(cases, set)
	}
	for _, want := range cases {
		enc := ewahEncode(want)
		got, n, err := ewahDecode(append(enc, "trailing"...))
		if err != nil || n != len(enc) {
			t.Fatalf("decode(encode(%v)) = %d bytes, %v; want %d", want, n, err, len(enc))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("decode(encode(%v)) = %v", want, got)
		}
	}
	// git's empty bitmap (ewah_new, serialized): no bits, one zero word.
	if got, want := ewahEncode(nil), []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("empty bitmap = %v, want %v", got, want)
	}
	for _, bad := range [][]byte{nil, {0, 0, 0, 1, 0, 0, 0, 2, 0}, append(ewahEncode([]int{3})[:16], 0, 0, 0, 1)} {
		if _, _, err := ewahDecode(bad); err == nil {
			t.Errorf("decode(%v) succeeded", bad)
		}
	}
}

// An index git split, with entries git replaced, deleted and added on top
// of the shared index (a person's staged changes), is read whole: Commit
// updates its own paths, keeps the person's staged changes, and leaves
// the index split; git agrees with every entry.
func TestCommitSplitIndexWrittenByGit(t *testing.T) {
	r, dir := initRepo(t)
	var files []Change
	for i := range 40 {
		files = append(files, put(fmt.Sprintf("snapshots/prod/ns/ConfigMap/c%02d.yaml", i), fmt.Sprint(i)))
	}
	files = append(files, put("overlays/dr/kustomization.yaml", "k"), put("overlays/dr/patch.yaml", "p"))
	commit(t, r, "main", files...)
	gitRun(t, dir, "update-index", "--split-index")
	// Staged by a person: a replaced entry, a deleted one, an added one.
	writeFile(t, filepath.Join(dir, "overlays/dr/patch.yaml"), "p2")
	gitRun(t, dir, "add", "overlays/dr/patch.yaml")
	gitRun(t, dir, "rm", "-q", "--cached", "overlays/dr/kustomization.yaml")
	writeFile(t, filepath.Join(dir, "overlays/dr/new.yaml"), "n")
	gitRun(t, dir, "add", "overlays/dr/new.yaml")
	link, ok := linkOf(t, dir)
	if !ok {
		t.Fatal("setup: git did not split the index")
	}
	deleted, n, err := ewahDecode(link[20:])
	if err != nil {
		t.Fatal(err)
	}
	replaced, _, err := ewahDecode(link[20+n:])
	if err != nil || len(deleted) == 0 || len(replaced) == 0 {
		t.Fatalf("setup: git's bitmaps: deleted %v, replaced %v (%v); want some of each", deleted, replaced, err)
	}
	staged := gitLines(t, dir, "diff-index", "--cached", "--name-status", "main")
	wantStatus := status(t, dir)

	commit(t, r, "main",
		put("snapshots/prod/ns/ConfigMap/c01.yaml", "changed"),
		del("snapshots/prod/ns/ConfigMap/c02.yaml"),
		put("snapshots/prod/ns/ConfigMap/c99.yaml", "new"))
	checkIndexMatches(t, dir, staged, wantStatus)
	if !isSplit(t, dir) {
		t.Error("Commit wrote a split index whole")
	}
	fsck(t, dir)
}

// Commits one after the other on a split index: each writes only what
// differs from the shared index until the differences pass 20% of it, then
// a new shared index; old shared files do not pile up; git reads every
// state as the commit.
func TestCommitSplitIndexResplit(t *testing.T) {
	r, dir := initRepo(t)
	gitRun(t, dir, "config", "core.splitIndex", "true")
	var files []Change
	for i := range 50 {
		files = append(files, put(fmt.Sprintf("snapshots/prod/ns/ConfigMap/c%02d.yaml", i), fmt.Sprint(i)))
	}
	commit(t, r, "main", files...)
	if !isSplit(t, dir) {
		t.Fatal("core.splitIndex=true: index not split")
	}
	shared := map[string]bool{}
	for _, f := range sharedFiles(t, dir) {
		shared[f] = true
	}
	for i := range 40 {
		var ch []Change
		switch i % 3 {
		case 0:
			ch = append(ch, put(fmt.Sprintf("snapshots/prod/ns/ConfigMap/c%02d.yaml", i), fmt.Sprint("v", i)))
		case 1:
			ch = append(ch, del(fmt.Sprintf("snapshots/prod/ns/ConfigMap/c%02d.yaml", i)))
		case 2:
			ch = append(ch, put(fmt.Sprintf("snapshots/prod/other/ConfigMap/n%02d.yaml", i), "n"))
		}
		commit(t, r, "main", ch...)
		checkIndexMatches(t, dir, nil, nil)
		if got, want := strings.TrimSpace(gitRun(t, dir, "write-tree")), revParse(t, dir, "main^{tree}").String(); got != want {
			t.Fatalf("commit %d: git write-tree = %s, want the commit's tree %s", i, got, want)
		}
		files := sharedFiles(t, dir)
		if len(files) > 2 {
			t.Fatalf("commit %d: %d shared index files, want at most 2: %v", i, len(files), files)
		}
		for _, f := range files {
			shared[f] = true
		}
	}
	if len(shared) < 3 {
		t.Errorf("%d shared indexes over 40 commits of one change to 50 files; want new ones past 20%% changed", len(shared))
	}

	// A git command that writes the index keeps it split and can go on
	// from what Commit wrote.
	writeFile(t, filepath.Join(dir, "overlays/dr/patch.yaml"), "p")
	gitRun(t, dir, "add", "overlays/dr/patch.yaml")
	gitRun(t, dir, "commit", "-q", "-m", "person")
	commit(t, r, "main", put("snapshots/prod/ns/ConfigMap/c03.yaml", "again"))
	checkIndexMatches(t, dir, nil, nil)
	if !isSplit(t, dir) {
		t.Error("index no longer split")
	}
	fsck(t, dir)
}

// Without core.splitIndex, an index is split once it reaches
// splitIndexMinEntries; core.splitIndex=false writes a split index whole.
func TestCommitSplitIndexMode(t *testing.T) {
	old := splitIndexMinEntries
	splitIndexMinEntries = 30
	t.Cleanup(func() { splitIndexMinEntries = old })
	r, dir := initRepo(t)
	var files []Change
	for i := range 29 {
		files = append(files, put(fmt.Sprintf("f/%02d", i), "x"))
	}
	commit(t, r, "main", files...)
	if isSplit(t, dir) {
		t.Fatal("29 entries: split")
	}
	commit(t, r, "main", put("f/29", "x"))
	if !isSplit(t, dir) {
		t.Fatal("30 entries: not split")
	}
	checkIndexMatches(t, dir, nil, nil)

	gitRun(t, dir, "config", "core.splitIndex", "false")
	commit(t, r, "main", put("f/30", "x"))
	if isSplit(t, dir) {
		t.Fatal("core.splitIndex=false: still split")
	}
	checkIndexMatches(t, dir, nil, nil)
	if got := len(gitLines(t, dir, "ls-files")); got != 31 {
		t.Errorf("git ls-files: %d entries, want 31", got)
	}
}

// A split index whose shared file is gone stops Commit before anything
// moves, with an error naming the file and the remedy.
func TestCommitSplitIndexMissingShared(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("a", "a"), put("b", "b"))
	gitRun(t, dir, "update-index", "--split-index")
	files := sharedFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("setup: shared index files %v", files)
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	tip := revParse(t, dir, "main")
	_, err := r.Commit(t.Context(), []Change{put("a", "a2")}, CommitOptions{Branch: "main", Message: "m"})
	if err == nil || !strings.Contains(err.Error(), filepath.Base(files[0])) || !strings.Contains(err.Error(), "git reset") {
		t.Fatalf("Commit = %v, want an error naming %s and the remedy", err, filepath.Base(files[0]))
	}
	if got := revParse(t, dir, "main"); got != tip {
		t.Errorf("main moved to %s", got)
	}
	if got := readFile(t, filepath.Join(dir, "a")); got != "a" {
		t.Errorf("work tree file a = %q, want it untouched", got)
	}
}

// An entry with extended flags (skip-worktree) that differs from the shared
// index makes the index file version 3, and keeps its flag.
func TestCommitSplitIndexExtendedFlags(t *testing.T) {
	r, dir := initRepo(t)
	gitRun(t, dir, "config", "core.splitIndex", "true")
	var files []Change
	for i := range 20 {
		files = append(files, put(fmt.Sprintf("f/%02d", i), "x"))
	}
	commit(t, r, "main", files...)
	gitRun(t, dir, "update-index", "--skip-worktree", "f/03")
	commit(t, r, "main", put("f/07", "y"))
	if !isSplit(t, dir) {
		t.Fatal("index not split")
	}
	if v := indexVersion(t, dir); v != 3 {
		t.Errorf("index version %d with a skip-worktree entry outside the shared index, want 3", v)
	}
	if got := gitLines(t, dir, "ls-files", "-v", "f/03"); len(got) != 1 || !strings.HasPrefix(got[0], "S ") {
		t.Errorf("skip-worktree flag lost: %q", got)
	}
	checkIndexMatches(t, dir, nil, nil)
}
