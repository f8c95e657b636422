package reconciler

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// refOf reads what the accessors of unstructured read.
func TestRefOf(t *testing.T) {
	for _, obj := range []map[string]any{
		{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web", "namespace": "shop"}},
		{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop"}},
		{"apiVersion": "a/b/c", "kind": "Bad", "metadata": map[string]any{"name": "x"}},
		{"apiVersion": 1, "kind": "NoVersion", "metadata": map[string]any{"name": 2, "namespace": true}},
		{"kind": "NoMetadata"},
		{},
	} {
		u := &unstructured.Unstructured{Object: obj}
		gvk := u.GroupVersionKind()
		want := ObjectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
		require.Equal(t, want, refOf(u), "%v", obj)
	}
}
