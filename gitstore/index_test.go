package gitstore

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/google/go-cmp/cmp"
)

// indexFile.apply against go-git's decoder as the reference reader, on random
// indexes and updates, including names too long for the name-length field.
func TestPatchIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	name := func() string {
		if rng.IntN(20) == 0 {
			return strings.Repeat("long/", 900) + fmt.Sprint(rng.IntN(5)) // > 0xfff bytes
		}
		return fmt.Sprintf("d%d/e%d/f%d", rng.IntN(4), rng.IntN(4), rng.IntN(8))
	}
	hash := func() plumbing.Hash {
		var h plumbing.Hash
		for i := range h {
			h[i] = byte(rng.IntN(256))
		}
		return h
	}
	var inPlace, rebuilt int
	defer func() {
		if inPlace == 0 || rebuilt == 0 {
			t.Errorf("rounds changed in place: %d, rebuilt: %d; want both", inPlace, rebuilt)
		}
	}()
	for round := range 200 {
		want := map[string]plumbing.Hash{}
		idx := &index.Index{Version: 2}
		for range rng.IntN(30) {
			n := name()
			if _, dup := want[n]; dup {
				continue
			}
			want[n] = hash()
			idx.Entries = append(idx.Entries, &index.Entry{Name: n, Hash: want[n], Mode: filemode.Regular, Size: uint32(rng.IntN(1000))})
		}
		var in bytes.Buffer
		if err := index.NewEncoder(&in).Encode(idx); err != nil {
			t.Fatal(err)
		}
		var ups []indexUpdate
		seen := map[string]bool{}
		for range rng.IntN(6) {
			n := name()
			if seen[n] {
				continue
			}
			seen[n] = true
			u := indexUpdate{path: n, mode: filemode.Regular, hash: hash(), stat: indexStat{size: 7, mtimeSec: 100}}
			if rng.IntN(3) == 0 {
				u.remove = true
				delete(want, n)
			} else {
				want[n] = u.hash
			}
			ups = append(ups, u)
		}
		slices.SortFunc(ups, func(a, b indexUpdate) int { return strings.Compare(a.path, b.path) })

		ix, err := parseIndex(bytes.Clone(in.Bytes()))
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		same, old, err := ix.apply(ups, nil)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if old == nil {
			inPlace++
		} else {
			rebuilt++
		}
		out := ix.data
		if !bytes.Equal(out[:same], in.Bytes()[:same]) {
			t.Fatalf("round %d: apply claims %d bytes unchanged, but they differ", round, same)
		}
		// The offsets apply keeps must be those of a fresh parse.
		sum := sha1.Sum(out)
		out = append(out, sum[:]...)
		if again, err := parseIndex(out); err != nil || !slices.Equal(again.offsets, ix.offsets) || again.entEnd != ix.entEnd {
			t.Fatalf("round %d: offsets after apply differ from a fresh parse (%v)", round, err)
		}
		var got index.Index
		if err := index.NewDecoder(bytes.NewReader(out)).Decode(&got); err != nil {
			t.Fatalf("round %d: go-git cannot read the patched index: %v", round, err)
		}
		gotMap := map[string]plumbing.Hash{}
		var names []string
		for _, e := range got.Entries {
			gotMap[e.Name] = e.Hash
			names = append(names, e.Name)
		}
		if diff := cmp.Diff(want, gotMap); diff != "" {
			t.Fatalf("round %d: entries (-want +got):\n%s", round, diff)
		}
		if !slices.IsSorted(names) {
			t.Fatalf("round %d: entries not sorted: %q", round, names)
		}
	}
}

// indexVersion reads the version field of a work tree's index.
func indexVersion(t *testing.T, dir string) uint32 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ".git/index"))
	if err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(b[4:])
}

// After Commit, git's own view of the index must agree with the commit: the
// tree git writes from the index (which uses the cached trees Commit
// invalidated) is the commit's tree, and git status is clean.
func TestCommitIndexFormats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		version uint32
	}{
		{"git-written with cached trees", func(t *testing.T, dir string) {
			if !bytes.Contains([]byte(readFile(t, filepath.Join(dir, ".git/index"))), []byte("TREE")) {
				t.Fatal("setup: git wrote no cached trees")
			}
		}, 2},
		{"version 4", func(t *testing.T, dir string) { gitRun(t, dir, "update-index", "--index-version", "4") }, 4},
		{"untracked cache", func(t *testing.T, dir string) {
			gitRun(t, dir, "update-index", "--untracked-cache")
			writeFile(t, filepath.Join(dir, "snapshots/prod/untracked"), "u")
			gitRun(t, dir, "status")
		}, 2},
		{"split index", func(t *testing.T, dir string) {
			gitRun(t, dir, "update-index", "--split-index")
		}, 2},
		{"no index", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, ".git/index"))
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, dir := initRepo(t)
			commit(t, r, "main",
				put("snapshots/prod/a/ConfigMap/x.yaml", "x"),
				put("snapshots/prod/a/ConfigMap/y.yaml", "y"),
				put("snapshots/prod/b/Secret/s.yaml", "s"),
				put("overlays/dr/kustomization.yaml", "k"),
			)
			// A person's commit makes git write the index with cached trees.
			writeFile(t, filepath.Join(dir, "overlays/dr/patch.yaml"), "p")
			gitRun(t, dir, "add", ".")
			gitRun(t, dir, "commit", "-q", "-m", "person")
			tc.prepare(t, dir)
			before := status(t, dir)

			_, err := r.Commit(t.Context(), []Change{
				put("snapshots/prod/a/ConfigMap/x.yaml", "x2"),
				del("snapshots/prod/b/Secret/s.yaml"),
				put("snapshots/prod/c/ConfigMap/z.yaml", "z"),
			}, CommitOptions{Branch: "main", Message: "m"})
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "no index" {
				before = nil // Commit makes an index of the commit; the files are there
			}
			if diff := cmp.Diff(before, status(t, dir)); diff != "" {
				t.Errorf("git status (-before +after):\n%s", diff)
			}
			if got, want := strings.TrimSpace(gitRun(t, dir, "write-tree")), revParse(t, dir, "main^{tree}").String(); got != want {
				t.Errorf("git write-tree = %s, want the commit's tree %s", got, want)
			}
			if v := indexVersion(t, dir); v != tc.version {
				t.Errorf("index version %d, want %d", v, tc.version)
			}
			if got := gitRun(t, dir, "diff-index", "--cached", "main"); got != "" {
				t.Errorf("index differs from the commit:\n%s", got)
			}
			if got, want := isSplit(t, dir), tc.name == "split index"; got != want {
				t.Errorf("index split: %v, want %v (as it was)", got, want)
			}
		})
	}
}

// Index entries of other paths keep their flags (skip-worktree makes a
// version 3 index); conflicted stages of a committed path are replaced.
func TestCommitIndexEntries(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("keep/skipped", "s"), put("conflicted", "c"), put("other", "o"))
	gitRun(t, dir, "update-index", "--skip-worktree", "keep/skipped")
	if v := indexVersion(t, dir); v != 3 {
		t.Fatalf("index version %d after --skip-worktree, want 3", v)
	}
	blob := strings.TrimSpace(gitRun(t, dir, "rev-parse", "main:conflicted"))
	cmd := fmt.Sprintf("0 %s\t%s\n100644 %s 1\tconflicted\n100644 %s 2\tconflicted\n100644 %s 3\tconflicted\n",
		strings.Repeat("0", 40), "conflicted", blob, blob, blob)
	gitStdin(t, dir, cmd, "update-index", "--index-info")
	if got := len(gitLines(t, dir, "ls-files", "-s", "conflicted")); got != 3 {
		t.Fatalf("setup: %d stages of conflicted, want 3", got)
	}

	commit(t, r, "main", put("conflicted", "resolved"), put("new", "n"))
	if got := gitLines(t, dir, "ls-files", "-s", "conflicted"); len(got) != 1 || !strings.Contains(got[0], " 0\t") {
		t.Errorf("conflicted after Commit: %q, want one stage-0 entry", got)
	}
	if got := gitLines(t, dir, "ls-files", "-v", "keep/skipped"); len(got) != 1 || !strings.HasPrefix(got[0], "S ") {
		t.Errorf("skip-worktree flag lost: %q", got)
	}
	if got := gitRun(t, dir, "diff-index", "--cached", "main"); got != "" {
		t.Errorf("index differs from the commit:\n%s", got)
	}
}

// Resuming the index hash from a saved state gives the hash of the whole.
func TestHashIndexResume(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		a := make([]byte, rng.IntN(5*indexMarkEvery))
		for i := range a {
			a[i] = byte(rng.IntN(256))
		}
		sumA, marks := hashIndex(a, nil, 0)
		if want := sha1.Sum(a); !bytes.Equal(sumA, want[:]) {
			t.Fatalf("hash of %d bytes without marks is wrong", len(a))
		}
		same := rng.IntN(len(a) + 1)
		b := append(append([]byte(nil), a[:same]...), make([]byte, rng.IntN(indexMarkEvery))...)
		for i := same; i < len(b); i++ {
			b[i] = byte(rng.IntN(256))
		}
		sumB, marksB := hashIndex(b, marks, same)
		if want := sha1.Sum(b); !bytes.Equal(sumB, want[:]) {
			t.Fatalf("resumed hash wrong: %d bytes, %d unchanged of %d", len(b), same, len(a))
		}
		if _, again := hashIndex(b, nil, 0); len(again) != len(marksB) {
			t.Fatalf("marks after resuming: %d, from scratch: %d", len(marksB), len(again))
		}
	}
}

// The cached index must not be used once the file changed, even in place
// with the same size and modification time (as go-git writes it).
func TestCommitIndexRewrittenInPlace(t *testing.T) {
	r, dir := initRepo(t)
	commit(t, r, "main", put("a", "1"), put("b", "2"))
	name := filepath.Join(dir, ".git/index")
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(readFile(t, name))
	ix, err := parseIndex(data)
	if err != nil {
		t.Fatal(err)
	}
	// Change the recorded modification time of "b" (git will read the file
	// and find it unchanged), recompute the checksum, write in place,
	// restore the file's time.
	binary.BigEndian.PutUint32(ix.data[ix.offsets[1]+8:], 12345)
	sum := sha1.Sum(ix.data)
	f, err := os.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(ix.data, sum[:]...))
	f.Close()
	os.Chtimes(name, fi.ModTime(), fi.ModTime())

	commit(t, r, "main", put("a", "3"))
	if got := gitRun(t, dir, "ls-files", "--debug", "b"); !strings.Contains(got, "mtime: 12345:") {
		t.Errorf("the in-place change of the index was lost:\n%s", got)
	}
	if st := status(t, dir); len(st) != 0 {
		t.Errorf("git status %q, want clean", st)
	}
}
