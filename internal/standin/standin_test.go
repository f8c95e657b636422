package standin

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A stand-in holds its object's identity as maps and gives the object back
// whole; an object that is not one is said so.
func TestStandIn(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  map[string]any
		meta map[string]any // the identity the stand-in holds
	}{
		{"namespaced", map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": "a", "namespace": "ns", "labels": map[string]any{"x": "y"}}, "data": map[string]any{"k": "v"}},
			map[string]any{"name": "a", "namespace": "ns"}},
		{"cluster-scoped", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns"}},
			map[string]any{"name": "ns"}},
		{"replicas", map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "web", "namespace": "ns"}, "spec": map[string]any{"replicas": int64(3)}},
			map[string]any{"name": "web", "namespace": "ns"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &unstructured.Unstructured{Object: tc.obj}
			data, err := json.Marshal(o.Object)
			require.NoError(t, err)
			s := New(o, data)
			require.Len(t, s.Object, 4, "apiVersion, kind, metadata and the JSON")
			require.Equal(t, tc.meta, s.Object["metadata"])
			require.Equal(t, o.GroupVersionKind(), s.GroupVersionKind())
			js, ok := JSON(s)
			require.True(t, ok)
			require.JSONEq(t, string(data), js)

			got, ok, err := Expand(s)
			require.True(t, ok)
			require.NoError(t, err)
			require.Equal(t, tc.obj, got.Object)
			got.SetName("changed")
			again, _, _ := Expand(s)
			require.Equal(t, tc.obj, again.Object, "each Expand decodes afresh")

			_, ok = JSON(o)
			require.False(t, ok)
			_, ok, err = Expand(o)
			require.False(t, ok)
			require.NoError(t, err)
		})
	}
	// JSON that does not decode: an error naming the object.
	bad := New(&unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "a", "namespace": "ns"}}}, []byte("{"))
	_, ok, err := Expand(bad)
	require.True(t, ok)
	require.ErrorContains(t, err, "ConfigMap/ns/a")
}
