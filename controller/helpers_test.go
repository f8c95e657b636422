package controller

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/internal/testcluster"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

var update = flag.Bool("update", false, "rewrite golden files")

// applyManifests server-side applies a YAML stream to c, as kubectl would
// (field manager "kubectl"), and returns the applied objects.
func applyManifests(t *testing.T, c *testcluster.Cluster, manifests string) []*unstructured.Unstructured {
	t.Helper()
	ctx := t.Context()
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Clientset().Discovery()))
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			mapper.Reset()
			m, err = mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		require.NoError(t, err, "%s %s", gvk, u.GetName())
		ri := c.Dynamic().Resource(m.Resource)
		var applied *unstructured.Unstructured
		if u.GetNamespace() != "" {
			applied, err = ri.Namespace(u.GetNamespace()).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
		} else {
			applied, err = ri.Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
		}
		require.NoError(t, err, "apply %s %s/%s", gvk.Kind, u.GetNamespace(), u.GetName())
		if gvk.Kind == "CustomResourceDefinition" {
			waitServed(t, c, applied)
			mapper.Reset()
		}
		out = append(out, applied)
	}
	return out
}

// waitServed waits until the kind of a CRD is served.
func waitServed(t *testing.T, c *testcluster.Cluster, crd *unstructured.Unstructured) {
	t.Helper()
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	v := versions[0].(map[string]any)["name"].(string)
	require.Eventually(t, func() bool {
		_, err := c.Clientset().Discovery().ServerResourcesForGroupVersion(group + "/" + v)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "CRD %s not served", crd.GetName())
}

// testKeys makes an age identity in a temporary folder and the sealer that
// goes with it.
func testKeys(t testing.TB) (*age.X25519Identity, *snapshot.Sealer) {
	t.Helper()
	id, err := snapshot.GenerateIdentity(filepath.Join(t.TempDir(), "id.agekey"))
	require.NoError(t, err)
	mac, err := snapshot.MACKey(id)
	require.NoError(t, err)
	s, err := snapshot.NewSealer([]string{id.Recipient().String()}, mac)
	require.NoError(t, err)
	return id, s
}

func decodeConfig(t testing.TB, text string) *policies.SyncConfig {
	t.Helper()
	cfg, err := policies.Decode(policies.FileName, []byte(text))
	require.NoError(t, err)
	return cfg
}

// git runs the git command line in dir: an independent reader of what
// gitstore wrote.
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "git %v: %s", args, stderr.String())
	return string(out)
}

var sealedValue = regexp.MustCompile(`ENC\[AGE,v1,[^\]]*\]`)

// treeFiles reads every file under prefix at the tip of branch, with sealed
// values (random ciphertext) replaced by a placeholder.
func treeFiles(t *testing.T, repo *gitstore.Repository, branch, prefix string) map[string]string {
	t.Helper()
	ctx := context.Background()
	files, err := repo.Files(ctx, branch, prefix)
	require.NoError(t, err)
	out := map[string]string{}
	for p := range files {
		data, err := repo.ReadFile(ctx, branch, p)
		require.NoError(t, err)
		out[strings.TrimPrefix(p, prefix)] = sealedValue.ReplaceAllString(string(data), "ENC[AGE,v1,<sealed>]")
	}
	return out
}

// compareGoldenTree compares files with the tree under dir, or rewrites dir
// with -update.
func compareGoldenTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if *update {
		require.NoError(t, os.RemoveAll(dir))
		for p, c := range files {
			path := filepath.Join(dir, filepath.FromSlash(p))
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
			require.NoError(t, os.WriteFile(path, []byte(c), 0o644))
		}
		return
	}
	want := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		want[filepath.ToSlash(rel)] = string(data)
		return err
	})
	require.NoError(t, err, "golden tree %s (run with -update to create it)", dir)
	if diff := cmp.Diff(want, files); diff != "" {
		t.Errorf("snapshot tree differs from %s (-want +got; -update rewrites it):\n%s", dir, diff)
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run with -update to create %s", path)
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

var deleteNow = metav1.DeleteOptions{}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// skeletonRepo returns a new repository in a temporary directory, and the
// directory, whose first commit holds the overlay skeleton of cfg.
func skeletonRepo(tb testing.TB, cfg *policies.SyncConfig) (*gitstore.Repository, string) {
	tb.Helper()
	dir := tb.TempDir()
	repo, err := gitstore.Init(tb.Context(), dir)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := repo.Commit(tb.Context(), []gitstore.Change{{Path: render.OverlayPath(cfg), Content: render.Skeleton(cfg)}},
		gitstore.CommitOptions{Branch: DefaultBranch, Message: "init"}); err != nil {
		tb.Fatal(err)
	}
	return repo, dir
}
