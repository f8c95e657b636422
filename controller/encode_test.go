package controller

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestEncodeMatchesSigsYAML holds the fast encoder to the output of
// sigs.k8s.io/yaml (the form the repository has always had): for every
// object of the golden snapshot and for values that YAML likes to
// reinterpret.
func TestEncodeMatchesSigsYAML(t *testing.T) {
	var objects []*unstructured.Unstructured
	err := filepath.WalkDir("testdata/snapshot/tree", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return err
		}
		objects = append(objects, u)
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, objects)

	tricky := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "tricky", "namespace": "x", "annotations": map[string]any{"a/b": "", "c": "~"}},
		"data": map[string]any{
			"bool-like": "true", "yes": "yes", "on": "on", "null-like": "null", "int-like": "1", "octal-like": "0755",
			"hex-like": "0x1F", "float-like": "1e3", "date-like": "2026-11-25", "colon": "a: b", "dash": "- x",
			"multi": "line one\nline two\n", "trailing-space": "x ", "unicode": "größe ✓", "empty": "", "star": "*ref",
			"hash": "# not a comment", "quote": `"quoted"`, "tab": "a\tb",
		},
		"spec": map[string]any{
			"int": int64(3), "negative": int64(-1), "big": int64(1 << 53), "float": 0.5, "whole-float": float64(2),
			"bool": true, "nil": nil, "empty-map": map[string]any{}, "empty-list": []any{},
			"list": []any{map[string]any{"name": "a", "port": int64(80)}, "s", int64(1)},
		},
	}}
	objects = append(objects, tricky)

	for _, o := range objects {
		want, err := yaml.Marshal(o.Object)
		require.NoError(t, err)
		got := encodeOne("prod", o)
		require.NoError(t, got.err, o.GetName())
		require.Equal(t, string(want), string(got.data), "%s/%s", o.GetKind(), o.GetName())
	}
}

func TestEncodeObjectsRejectsCollisions(t *testing.T) {
	cm := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "a", "namespace": "x"}}}
	}
	_, err := encodeObjects("prod", []*unstructured.Unstructured{cm(), cm()})
	require.ErrorContains(t, err, "ConfigMap/x/a: two objects map to snapshots/prod/x/ConfigMap/a.yaml")
}
