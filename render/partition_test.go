package render

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// traceBuilds records how the builds of a test ran.
func traceBuilds(t *testing.T) *[]int {
	t.Helper()
	var runs []int
	buildTrace = func(chunks int, why string) {
		if chunks == 0 {
			t.Logf("built in one piece: %s", why)
		}
		runs = append(runs, chunks)
	}
	t.Cleanup(func() { buildTrace = nil })
	return &runs
}

// A partitioned build gives what one build in one piece gives: every golden
// case, cut into chunks of one and two objects, renders its golden file.
func TestPartitionedBuildIsTheWholeBuild(t *testing.T) {
	for _, name := range goldenCases {
		for _, size := range []int{1, 2, 3} {
			t.Run(fmt.Sprintf("%s/chunks-of-%d", name, size), func(t *testing.T) {
				withChunkSize(t, size)
				runs := traceBuilds(t)
				repo, head, cfg := goldenRepo(t, name)
				got, err := Build(context.Background(), repo, head, cfg)
				if err != nil {
					t.Fatal(err)
				}
				golden(t, filepath.Join("testdata", name, "rendered.yaml"), stream(t, got))
				if len(*runs) != 1 || (*runs)[0] < 2 {
					t.Errorf("builds: %v, want one build in chunks", *runs)
				}
			})
		}
	}
}

// goldenRepo commits a golden case (input and generated files) and returns
// the repository, the commit and the mapping.
func goldenRepo(t *testing.T, name string) (repoT, string, cfgT) {
	t.Helper()
	dir := filepath.Join("testdata", name)
	in := readDir(t, dir)
	cfg := loadConfig(t, in["dr-syncer.yaml"])
	files := map[string][]byte{}
	for p, data := range in {
		switch {
		case p == "rendered.yaml":
		case strings.HasPrefix(p, "generated/"):
			files[GeneratedPrefix(cfg)+strings.TrimPrefix(p, "generated/")] = data
		default:
			files[p] = data
		}
	}
	repo, _, head := newRepo(t, files)
	return repo, head.String(), cfg
}

// An overlay that relates objects to each other (here a name prefix, which
// references follow) is built in one piece, whatever the size.
func TestWholeOverlayIsNotPartitioned(t *testing.T) {
	withChunkSize(t, 1)
	runs := traceBuilds(t)
	repo, _, cfg := goldenRepo(t, "user-patch")
	files := map[string][]byte{"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\nnamePrefix: dr-\n")}
	h := commit(t, repo, files, "prefix")
	got, err := Build(context.Background(), repo, h.String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{0}, *runs); diff != "" {
		t.Errorf("builds (-want +got):\n%s", diff)
	}
	for _, o := range got {
		if o.GetKind() != "Namespace" && !strings.HasPrefix(o.GetName(), "dr-") {
			t.Errorf("%s %s: no prefix", o.GetKind(), o.GetName())
		}
	}
}

// When a chunk fails, the overlay is built in one piece, and kustomize's
// error (naming the overlay) is Build's.
func TestChunkFailureBuildsInOnePiece(t *testing.T) {
	withChunkSize(t, 1)
	runs := traceBuilds(t)
	repo, _, cfg := goldenRepo(t, "user-patch")
	h := commit(t, repo, map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\npatches:\n- path: nope.yaml\n"),
		"overlays/dr/nope.yaml":          []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nope\n  namespace: shop-dr\nspec:\n  replicas: 1\n"),
	}, "patch of nothing")
	_, err := Build(context.Background(), repo, h.String(), cfg)
	if err == nil || !strings.Contains(err.Error(), "overlays/dr/kustomization.yaml: kustomize build: ") ||
		!strings.Contains(err.Error(), "no resource matches strategic merge patch") {
		t.Fatalf("error: %v", err)
	}
	if diff := cmp.Diff([]int{0}, *runs); diff != "" {
		t.Errorf("builds (-want +got):\n%s", diff)
	}
}
