package render

import (
	"context"
	"flag"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// readDir returns the files under dir, keyed by slash path relative to dir.
func readDir(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// decodeSnapshot decodes the snapshot files (one object each) under prefix.
func decodeSnapshot(t testing.TB, files map[string][]byte, prefix string) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	for _, p := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal(files[p], &m); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		u := &unstructured.Unstructured{}
		data, err := yaml.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		json, err := yaml.YAMLToJSON(data)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.UnmarshalJSON(json); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		objs = append(objs, u)
	}
	return objs
}

func loadConfig(t testing.TB, data []byte) *policies.SyncConfig {
	t.Helper()
	cfg, err := policies.Decode(policies.FileName, data)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// newRepo creates a repository with files as its first commit on main.
func newRepo(t testing.TB, files map[string][]byte) (*gitstore.Repository, string, plumbing.Hash) {
	t.Helper()
	dir := t.TempDir()
	repo, err := gitstore.Init(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	workTrees[repo] = dir
	return repo, dir, commit(t, repo, files, "first")
}

func commit(t testing.TB, repo *gitstore.Repository, files map[string][]byte, msg string) plumbing.Hash {
	t.Helper()
	var changes []gitstore.Change
	for _, p := range slices.Sorted(maps.Keys(files)) {
		changes = append(changes, gitstore.Change{Path: p, Content: files[p]})
	}
	h, err := repo.Commit(context.Background(), changes, gitstore.CommitOptions{Branch: "main", Message: msg})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// golden compares got with the file at path, or rewrites it with -update.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s: mismatch (-want +got):\n%s", path, diff)
	}
}

func stream(t testing.TB, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	data, err := Stream(objs)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// withChunkSize runs f with the given partition size.
func withChunkSize(t testing.TB, n int) {
	t.Helper()
	old := chunkSize
	chunkSize = n
	t.Cleanup(func() { chunkSize = old })
}

type (
	repoT = *gitstore.Repository
	cfgT  = *policies.SyncConfig
)

// buildBoth builds rev through c and without a cache.
func buildBoth(t testing.TB, c *Cache, repo *gitstore.Repository, rev string, cfg *policies.SyncConfig) (got, want []*unstructured.Unstructured) {
	t.Helper()
	ctx := context.Background()
	got, err := c.Build(ctx, repo, rev, cfg)
	if err != nil {
		t.Fatalf("build %s through the cache: %v", rev, err)
	}
	if want, err = Build(ctx, repo, rev, cfg); err != nil {
		t.Fatalf("build %s: %v", rev, err)
	}
	return got, want
}
