package controller

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
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

func TestEncodeSetRejectsCollisions(t *testing.T) {
	cm := func() *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "a", "namespace": "x"}}}
	}
	_, _, _, err := encodeSet("prod", "prod", []*unstructured.Unstructured{cm(), cm()})
	require.ErrorContains(t, err, "ConfigMap/x/a: two objects map to snapshots/prod/x/ConfigMap/a.yaml")
}

// TestEncodeSetCache encodes a snapshot twice, then with one object
// changed: unchanged objects are not encoded again but given by the blob
// hash of their YAML, the changed one is encoded again, every file or hash
// is that of a fresh encoding, and the cache holds one hash per object.
func TestEncodeSetCache(t *testing.T) {
	const source = "cache-test"
	lastEncoded.forget(source)
	objects := func(rev string) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for i := range 200 {
			out = append(out, &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": fmt.Sprintf("cm-%03d", i), "namespace": "x"},
				"data":     map[string]any{"rev": map[bool]string{true: rev, false: "0"}[i == 7], "n": int64(i)},
			}})
		}
		return out
	}
	first, firstBlobs, _, err := encodeSet(source, source, objects("1"))
	require.NoError(t, err)
	require.Len(t, first, 200)
	require.Empty(t, firstBlobs, "nothing cached yet")
	second, secondBlobs, _, err := encodeSet(source, source, objects("1"))
	require.NoError(t, err)
	require.Empty(t, second, "every object encoded again although unchanged")
	require.Len(t, secondBlobs, 200)
	third, thirdBlobs, _, err := encodeSet(source, source, objects("2"))
	require.NoError(t, err)
	require.Len(t, third, 1)
	require.Len(t, thirdBlobs, 199)
	for _, o := range objects("2") {
		path, err := gitstore.ObjectPath(source, gitstore.ObjectID(idOf(o)))
		require.NoError(t, err)
		want, err := yaml.Marshal(o.Object)
		require.NoError(t, err)
		if o.GetName() == "cm-007" {
			require.Equal(t, string(want), string(third[path]), path)
			require.NotContains(t, thirdBlobs, path)
		} else {
			require.Equal(t, plumbing.ComputeHash(plumbing.BlobObject, want), thirdBlobs[path], path)
			require.Equal(t, plumbing.ComputeHash(plumbing.BlobObject, first[path]), secondBlobs[path], path)
		}
	}

	// The cache holds a blob hash per object, that of the last call.
	cached := lastEncoded.previous(source)
	require.Len(t, cached, 200)
	var c canonical
	for _, o := range objects("2") {
		fp, ok := c.fingerprint(o.Object)
		require.True(t, ok)
		want, err := yaml.Marshal(o.Object)
		require.NoError(t, err)
		require.Equal(t, plumbing.ComputeHash(plumbing.BlobObject, want), cached[fp], o.GetName())
	}

	// Forgotten, the source is encoded again in full.
	lastEncoded.forget(source)
	fourth, fourthBlobs, _, err := encodeSet(source, source, objects("2"))
	require.NoError(t, err)
	require.Len(t, fourth, 200)
	require.Empty(t, fourthBlobs)
}

// TestCanonicalUnambiguous holds that values that differ, however little,
// have different canonical forms, and that unknown types are not cached.
func TestCanonicalUnambiguous(t *testing.T) {
	values := []any{
		nil, true, false, "", "1", int64(1), 1, float64(1), "a", "ab",
		map[string]any{}, []any{}, []any{nil}, map[string]any{"": nil},
		map[string]any{"ab": "c"}, map[string]any{"a": "bc"}, map[string]any{"a": "b", "c": "d"},
		map[string]any{"a": map[string]any{"b": "c"}}, map[string]any{"a": []any{"b", "c"}},
		[]any{"a", "b"}, []any{"ab"}, []any{[]any{"a"}, "b"}, []any{[]any{"a", "b"}},
		math.Copysign(0, -1), float64(0), int64(0),
	}
	seen := map[string]int{}
	for i, v := range values {
		var c canonical
		require.True(t, c.append(v), "%#v", v)
		b := c.buf
		if j, dup := seen[string(b)]; dup {
			t.Fatalf("%#v and %#v have the same canonical form", values[j], v)
		}
		seen[string(b)] = i
	}
	var c canonical
	_, ok := c.fingerprint(map[string]any{"a": int32(1)})
	require.False(t, ok)
	// The scratch space is left as it was after a failure.
	fp, ok := c.fingerprint(map[string]any{"b": map[string]any{"c": "d"}})
	require.True(t, ok)
	var fresh canonical
	want, _ := fresh.fingerprint(map[string]any{"b": map[string]any{"c": "d"}})
	require.Equal(t, want, fp)
}
