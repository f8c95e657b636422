package render

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The golden cases: testdata/<case>/ holds the input of a DR repository
// (dr-syncer.yaml, snapshots/<source>/..., the user's overlays/<target>/...),
// generated/ what Generate writes under overlays/<target>/generated/, and
// rendered.yaml what Build renders. go test -update rewrites the last two.
var goldenCases = []string{"shop", "multi", "user-patch", "selector"}

func TestGolden(t *testing.T) {
	for _, name := range goldenCases {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", name)
			in := readDir(t, dir)
			for p := range in {
				if strings.HasPrefix(p, "generated/") || p == "rendered.yaml" {
					delete(in, p)
				}
			}
			cfg := loadConfig(t, in["dr-syncer.yaml"])
			objs := decodeSnapshot(t, in, "snapshots/"+cfg.Spec.Source.Name+"/")

			gen, err := Generate(cfg, objs)
			if err != nil {
				t.Fatal(err)
			}
			prefix := GeneratedPrefix(cfg)
			if *update {
				if err := os.RemoveAll(filepath.Join(dir, "generated")); err != nil {
					t.Fatal(err)
				}
			}
			for p, data := range gen {
				rel, ok := strings.CutPrefix(p, prefix)
				if !ok {
					t.Fatalf("Generate wrote %s, outside %s", p, prefix)
				}
				golden(t, filepath.Join(dir, "generated", filepath.FromSlash(rel)), data)
				in[p] = data
			}
			if !*update {
				want := readDir(t, filepath.Join(dir, "generated"))
				for rel := range want {
					if _, ok := gen[prefix+rel]; !ok {
						t.Errorf("Generate did not write %s%s", prefix, rel)
					}
				}
			}

			reversed := slices.Clone(objs)
			slices.Reverse(reversed)
			again, err := Generate(cfg, reversed)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(gen, again); diff != "" {
				t.Errorf("Generate depends on the order of the objects:\n%s", diff)
			}
			outlines := make([]*unstructured.Unstructured, len(objs))
			for i, o := range objs {
				outlines[i] = GenerateInput(o.DeepCopy())
			}
			fromOutlines, err := Generate(cfg, outlines)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(gen, fromOutlines); diff != "" {
				t.Errorf("Generate reads more of the objects than GenerateInput keeps:\n%s", diff)
			}

			repo, _, head := newRepo(t, in)
			got, err := Build(context.Background(), repo, head.String(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "rendered.yaml"), stream(t, got))
		})
	}
}
