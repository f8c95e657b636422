package gitstore

import (
	"strings"
	"testing"

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
