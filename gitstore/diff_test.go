package gitstore

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	r, _ := initRepo(t)
	ctx := t.Context()
	const prefix = "snapshots/prod/"
	tip := []Change{
		put("dr-syncer.yaml", "mapping"),
		put("overlays/dr/kustomization.yaml", "k"),
		put("snapshots/other/a/ConfigMap/same.yaml", "same"),
		put("snapshots/prod/a/ConfigMap/same.yaml", "same"),
		put("snapshots/prod/a/ConfigMap/changed.yaml", "old"),
		put("snapshots/prod/a/ConfigMap/gone.yaml", "gone"),
		put("snapshots/prod/b/Secret/gone.yaml", "gone"),
		put("snapshots/prod-eu/a/ConfigMap/x.yaml", "not under snapshots/prod/"),
	}

	files := map[string][]byte{
		"snapshots/prod/a/ConfigMap/same.yaml":    []byte("same"),
		"snapshots/prod/a/ConfigMap/changed.yaml": []byte("new"),
		"snapshots/prod/a/ConfigMap/new.yaml":     []byte("new"),
		"snapshots/prod/c/ConfigMap/empty.yaml":   nil, // an empty file, not a deletion
	}
	// Before any commit every file is added.
	cs, err := r.Diff(ctx, "main", prefix, files)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{
		"snapshots/prod/a/ConfigMap/changed.yaml", "snapshots/prod/a/ConfigMap/new.yaml",
		"snapshots/prod/a/ConfigMap/same.yaml", "snapshots/prod/c/ConfigMap/empty.yaml",
	}, cs.Added); diff != "" || cs.Modified != nil || cs.Removed != nil {
		t.Errorf("Diff on an empty branch: added (-want +got):\n%s modified %q removed %q", diff, cs.Modified, cs.Removed)
	}

	commit(t, r, "main", tip...)
	cs, err = r.Diff(ctx, "main", prefix, files)
	if err != nil {
		t.Fatal(err)
	}
	want := ChangeSet{
		Changes: []Change{
			put("snapshots/prod/a/ConfigMap/changed.yaml", "new"),
			del("snapshots/prod/a/ConfigMap/gone.yaml"),
			put("snapshots/prod/a/ConfigMap/new.yaml", "new"),
			del("snapshots/prod/b/Secret/gone.yaml"),
			{Path: "snapshots/prod/c/ConfigMap/empty.yaml", Content: []byte{}},
		},
		Added:    []string{"snapshots/prod/a/ConfigMap/new.yaml", "snapshots/prod/c/ConfigMap/empty.yaml"},
		Modified: []string{"snapshots/prod/a/ConfigMap/changed.yaml"},
		Removed:  []string{"snapshots/prod/a/ConfigMap/gone.yaml", "snapshots/prod/b/Secret/gone.yaml"},
	}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if c := cs.Changes[4]; c.Content == nil {
		t.Error("the empty file's change has nil content, which Commit reads as a deletion")
	}

	// Committing the change set makes the prefix equal to files; the rest stays.
	commit(t, r, "main", cs.Changes...)
	if cs, err := r.Diff(ctx, "main", prefix, files); err != nil || len(cs.Changes) != 0 {
		t.Errorf("Diff after committing its changes = %+v, %v; want no changes", cs, err)
	}
	got, err := r.Files(ctx, "main", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"dr-syncer.yaml", "overlays/dr/kustomization.yaml", "snapshots/other/a/ConfigMap/same.yaml", "snapshots/prod-eu/a/ConfigMap/x.yaml"} {
		if _, ok := got[p]; !ok {
			t.Errorf("%s outside the prefix was removed", p)
		}
	}

	// A prefix that does not exist: everything is added.
	cs, err = r.Diff(ctx, "main", "snapshots/staging", map[string][]byte{"snapshots/staging/a": []byte("a")})
	if err != nil || len(cs.Added) != 1 || len(cs.Changes) != 1 {
		t.Errorf("Diff under a missing prefix = %+v, %v; want one added file", cs, err)
	}
}

func TestDiffErrors(t *testing.T) {
	r, _ := initRepo(t)
	for _, tc := range []struct {
		branch, prefix string
		files          map[string][]byte
		want           string
	}{
		{"main", "snapshots/prod/", map[string][]byte{"snapshots/prod-eu/x": nil}, `path "snapshots/prod-eu/x": outside the prefix`},
		{"main", "snapshots/prod/", map[string][]byte{"overlays/x": nil}, `path "overlays/x": outside the prefix`},
		{"main", "snapshots/prod/", map[string][]byte{"snapshots/prod/../x": nil}, `path "snapshots/prod/../x"`},
		{"main", "../", nil, `prefix "../"`},
		{"", "snapshots/prod/", nil, `empty branch`},
	} {
		_, err := r.Diff(t.Context(), tc.branch, tc.prefix, tc.files)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gitstore: diff ") {
			t.Errorf("Diff(%q, %q, %v) = %v, want an error containing %q", tc.branch, tc.prefix, tc.files, err, tc.want)
		}
	}
}

// TestDiffBlobs diffs files of which some are given by their blob hash:
// equal to the tip's, unchanged; different, or not at the tip, read from
// the repository's objects; not there, ErrBlobMissing.
func TestDiffBlobs(t *testing.T) {
	r, dir := initRepo(t)
	const prefix = "snapshots/prod/"
	const (
		same    = "snapshots/prod/a/ConfigMap/same.yaml"
		changed = "snapshots/prod/a/ConfigMap/changed.yaml"
		gone    = "snapshots/prod/a/ConfigMap/gone.yaml"
		added   = "snapshots/prod/b/ConfigMap/added.yaml"
	)
	commit(t, r, "main", put(same, "same"), put(changed, "old"), put(gone, "gone"), put("snapshots/other/x.yaml", "x"))
	// Blobs in the repository but at no tip, as a snapshot's files are
	// once a person's commit changed them; git writes them, and names them
	// as go-git does.
	stored := func(content string) plumbing.Hash {
		h := plumbing.NewHash(strings.TrimSpace(gitStdin(t, dir, content, "hash-object", "-w", "--stdin")))
		if want := plumbing.ComputeHash(plumbing.BlobObject, []byte(content)); h != want {
			t.Fatalf("git hash-object %q = %s, go-git %s", content, h, want)
		}
		return h
	}
	hash := func(content string) plumbing.Hash { return plumbing.ComputeHash(plumbing.BlobObject, []byte(content)) }
	newBlob, addedBlob, emptyBlob := stored("new"), stored("added"), stored("")
	missing := hash("never written")

	rest := map[string][]byte{changed: []byte("old"), gone: []byte("gone")}
	for _, tc := range []struct {
		name        string
		files       map[string][]byte
		blobs       map[string]plumbing.Hash
		want        ChangeSet
		wantErr     string
		wantMissing bool
	}{
		{name: "unchanged", files: rest, blobs: map[string]plumbing.Hash{same: hash("same")}},
		{
			name:  "all blobs unchanged",
			blobs: map[string]plumbing.Hash{same: hash("same"), changed: hash("old"), gone: hash("gone")},
		},
		{
			name:  "modified",
			files: map[string][]byte{same: []byte("same"), gone: []byte("gone")},
			blobs: map[string]plumbing.Hash{changed: newBlob},
			want:  ChangeSet{Changes: []Change{put(changed, "new")}, Modified: []string{changed}},
		},
		{
			name:  "added",
			files: map[string][]byte{same: []byte("same")},
			blobs: map[string]plumbing.Hash{changed: hash("old"), gone: hash("gone"), added: addedBlob},
			want:  ChangeSet{Changes: []Change{put(added, "added")}, Added: []string{added}},
		},
		{
			name:  "empty blob",
			files: rest,
			blobs: map[string]plumbing.Hash{same: emptyBlob},
			want:  ChangeSet{Changes: []Change{{Path: same, Content: []byte{}}}, Modified: []string{same}},
		},
		{
			name:  "removed",
			files: map[string][]byte{changed: []byte("new")},
			blobs: map[string]plumbing.Hash{same: hash("same")},
			want: ChangeSet{
				Changes:  []Change{put(changed, "new"), del(gone)},
				Modified: []string{changed}, Removed: []string{gone},
			},
		},
		{
			name:        "missing blob",
			files:       rest,
			blobs:       map[string]plumbing.Hash{same: hash("same"), added: missing},
			wantErr:     `path "` + added + `": blob ` + missing.String(),
			wantMissing: true,
		},
		{
			name:    "in both",
			files:   rest,
			blobs:   map[string]plumbing.Hash{same: hash("same"), changed: hash("old")},
			wantErr: `path "` + changed + `": given both as content and as a blob`,
		},
		{name: "outside the prefix", blobs: map[string]plumbing.Hash{"snapshots/prod-eu/x": hash("x")}, wantErr: `path "snapshots/prod-eu/x": outside the prefix`},
		{name: "invalid path", blobs: map[string]plumbing.Hash{"snapshots/prod/../x": hash("x")}, wantErr: `path "snapshots/prod/../x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, err := r.DiffBlobs(t.Context(), "main", prefix, tc.files, tc.blobs)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "gitstore: diff ") {
					t.Fatalf("DiffBlobs = %v, want an error containing %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrBlobMissing) != tc.wantMissing {
					t.Errorf("errors.Is(%v, ErrBlobMissing) = %v, want %v", err, !tc.wantMissing, tc.wantMissing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cs); diff != "" {
				t.Errorf("DiffBlobs (-want +got):\n%s", diff)
			}
			for _, c := range cs.Changes {
				if c.Content == nil && !slices.Contains(cs.Removed, c.Path) {
					t.Errorf("%s: nil content, which Commit reads as a deletion", c.Path)
				}
			}
		})
	}

	// Committing a change set read from blobs makes the tip hold those
	// blobs, as git sees them; a second diff finds nothing.
	files := map[string][]byte{same: []byte("same")}
	blobs := map[string]plumbing.Hash{changed: newBlob, added: addedBlob}
	cs, err := r.DiffBlobs(t.Context(), "main", prefix, files, blobs)
	if err != nil {
		t.Fatal(err)
	}
	commit(t, r, "main", cs.Changes...)
	for p, h := range blobs {
		if got := strings.TrimSpace(gitRun(t, dir, "rev-parse", "main:"+p)); got != h.String() {
			t.Errorf("git rev-parse main:%s = %s, want %s", p, got, h)
		}
	}
	if got := gitRun(t, dir, "cat-file", "blob", "main:"+changed); got != "new" {
		t.Errorf("git cat-file main:%s = %q, want the blob's content", changed, got)
	}
	if got, want := lsTree(t, dir, "main"), []string{"snapshots/other/x.yaml", changed, same, added}; !slices.Equal(got, want) {
		t.Errorf("git ls-tree main = %q, want %q", got, want)
	}
	if cs, err := r.DiffBlobs(t.Context(), "main", prefix, files, blobs); err != nil || len(cs.Changes) != 0 {
		t.Errorf("DiffBlobs after committing its changes = %+v, %v; want no changes", cs, err)
	}
	fsck(t, dir)
}
