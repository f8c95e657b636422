package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func findObject(objs []*unstructured.Unstructured, kind, namespace, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Build reads the commit, never the work tree: an edit that is not
// committed is not rendered, and an older commit renders its own state.
func TestBuildReadsTheCommit(t *testing.T) {
	ctx := context.Background()
	repo, head, cfg := goldenRepo(t, "user-patch")
	const cm = "snapshots/prod/shop/ConfigMap/settings.yaml"
	first := head

	// A second commit changes the ConfigMap.
	second := commit(t, repo, map[string][]byte{
		cm: []byte("apiVersion: v1\ndata:\n  color: green\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n"),
	}, "green")

	// The work tree gets an edit nobody commits, in the snapshot and in
	// the overlay.
	dir := workTree(t, repo)
	for p, data := range map[string]string{
		cm:                               "apiVersion: v1\ndata:\n  color: red\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n",
		"overlays/dr/kustomization.yaml": "resources:\n- generated\nnamespace: elsewhere\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(p)), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct{ rev, color string }{
		{"main", "green"},
		{second.String(), "green"},
		{first, "blue"},
		{"main~1", "blue"},
	} {
		objs, err := Build(ctx, repo, tc.rev, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.rev, err)
		}
		o := findObject(objs, "ConfigMap", "shop-dr", "settings")
		if o == nil {
			t.Fatalf("%s: no ConfigMap shop-dr/settings", tc.rev)
		}
		if got, _, _ := unstructured.NestedString(o.Object, "data", "color"); got != tc.color {
			t.Errorf("%s: color %q, want %q", tc.rev, got, tc.color)
		}
	}
}

// workTree finds the work tree of a repository made by newRepo.
var workTrees = map[repoT]string{}

func workTree(t *testing.T, repo repoT) string {
	t.Helper()
	dir, ok := workTrees[repo]
	if !ok {
		t.Fatal("not a repository of newRepo")
	}
	return dir
}

func TestBuildIsDeterministic(t *testing.T) {
	withChunkSize(t, 2)
	repo, head, cfg := goldenRepo(t, "multi")
	var first []byte
	for i := range 5 {
		objs, err := Build(context.Background(), repo, head, cfg)
		if err != nil {
			t.Fatal(err)
		}
		s := stream(t, objs)
		if i == 0 {
			first = s
		} else if string(s) != string(first) {
			t.Fatalf("build %d differs from the first", i)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	cfg := loadConfig(t, readDir(t, "testdata/shop")["dr-syncer.yaml"])
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "other"}}}
	if _, err := Generate(cfg, []*unstructured.Unstructured{ns}); err == nil || !strings.Contains(err.Error(), "Namespace/other: not mapped by dr-syncer.yaml") {
		t.Errorf("unmapped Namespace: %v", err)
	}
	if _, err := Generate(cfg, []*unstructured.Unstructured{ns.DeepCopy(), ns.DeepCopy()}); err == nil {
		t.Error("the same object twice: no error")
	}
	bad := *cfg
	bad.Spec.Target.Name = "../x"
	if _, err := Generate(&bad, nil); err == nil || !strings.Contains(err.Error(), "dr-syncer.yaml: spec.target.name: \"../x\"") {
		t.Errorf("bad target name: %v", err)
	}
}

// With nothing in the snapshot, the generated overlay is still a valid
// kustomization (kustomize refuses an empty one).
func TestGenerateEmpty(t *testing.T) {
	cfg := loadConfig(t, readDir(t, "testdata/shop")["dr-syncer.yaml"])
	files, err := Generate(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, _, _ := newRepo(t, map[string][]byte{
		"overlays/dr/kustomization.yaml":           []byte("resources:\n- generated\n"),
		"overlays/dr/generated/kustomization.yaml": files["overlays/dr/generated/kustomization.yaml"],
	})
	objs, err := Build(context.Background(), repo, "main", cfg)
	if err != nil || len(objs) != 0 {
		t.Fatalf("Build: %d objects, %v", len(objs), err)
	}
}

func TestStream(t *testing.T) {
	objs := []*unstructured.Unstructured{
		{Object: map[string]any{"kind": "ConfigMap", "apiVersion": "v1", "metadata": map[string]any{"name": "a"}, "data": map[string]any{"z": "1", "a": "2"}}},
		{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s"}, "data": map[string]any{"k": "ENC[AGE,v1,x,y]"}}},
	}
	got := string(stream(t, objs))
	want := "---\napiVersion: v1\ndata:\n  a: \"2\"\n  z: \"1\"\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\ndata:\n  k: ENC[AGE,v1,x,y]\nkind: Secret\nmetadata:\n  name: s\n"
	if got != want {
		t.Errorf("Stream:\n%s\nwant:\n%s", got, want)
	}
}
