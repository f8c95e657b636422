package snapshot

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
	"github.com/dr-syncer/dr-syncer/policies"
)

var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }

// changes collects what a Watcher reports.
type changes struct {
	mu  sync.Mutex
	ids map[ID]int
}

func (c *changes) add(id ID, _ time.Time) {
	c.mu.Lock()
	c.ids[id]++
	c.mu.Unlock()
}

func (c *changes) has(id ID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ids[id] > 0
}

// TestWatch: changes of taken objects are reported and read back cleaned;
// an object that stops being taken reads as gone; a namespace that a
// selector maps later, and a kind that a CRD brings later, are watched.
func TestWatch(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	label := "watch-" + ns[len(ns)-6:]
	cfg, err := policies.Decode(policies.FileName, []byte(fmt.Sprintf(`apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: watch}
spec:
  source: {name: src}
  target: {name: tgt}
  namespaces:
  - {source: %s}
  - selector: {matchLabels: {%s: "yes"}}
  secrets: {mode: exclude}
`, ns, label)))
	require.NoError(t, err)
	got := &changes{ids: map[ID]int{}}
	w, err := Watch(ctx, cfg, src.Config, got.add)
	require.NoError(t, err)
	require.NoError(t, w.WaitForSync(ctx))

	cms := src.Clientset().CoreV1().ConfigMaps(ns)
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	id := ID{Kind: "ConfigMap", Namespace: ns, Name: "a"}
	require.Eventually(t, func() bool { return got.has(id) }, 10*time.Second, 20*time.Millisecond)
	o, err := w.Object(ctx, id, Options{})
	require.NoError(t, err)
	require.NotNil(t, o)
	require.Empty(t, o.GetResourceVersion(), "cleaned")
	require.Empty(t, o.GetManagedFields(), "cleaned")
	require.Empty(t, o.GetUID(), "cleaned")

	// Ignored from now on: reported, and gone.
	got.ids = map[ID]int{}
	cm, err := cms.Get(ctx, "a", metav1.GetOptions{})
	require.NoError(t, err)
	cm.Labels = map[string]string{policies.IgnoreLabel: "true"}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.has(id) }, 10*time.Second, 20*time.Millisecond)
	o, err = w.Object(ctx, id, Options{})
	require.NoError(t, err)
	require.Nil(t, o, "an ignored object is not taken")

	// A namespace selected later: its objects are reported.
	other := testcluster.NamespaceName(t)
	_, err = src.Clientset().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other, Labels: map[string]string{label: "yes"}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.Clientset().CoreV1().ConfigMaps(other).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	idB := ID{Kind: "ConfigMap", Namespace: other, Name: "b"}
	require.Eventually(t, func() bool { return got.has(idB) && got.has(ID{Kind: "Namespace", Name: other}) }, 10*time.Second, 20*time.Millisecond)

	// A kind brought by a new CRD: watched, and its CRD taken with it.
	group := ns + ".example.dr-syncer.io"
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gizmos." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gizmos", Singular: "gizmo", Kind: "Gizmo", ListKind: "GizmoList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}}}},
		},
	}
	_, err = src.InstallCRDs([]*apiextensionsv1.CustomResourceDefinition{crd})
	require.NoError(t, err)
	crdID := ID{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition", Name: crd.Name}
	require.Eventually(t, func() bool { return got.has(crdID) }, 10*time.Second, 20*time.Millisecond)
	o, err = w.Object(ctx, crdID, Options{})
	require.NoError(t, err)
	require.Nil(t, o, "a CRD without objects is not taken")
	gizmo := &unstructured.Unstructured{Object: map[string]any{"apiVersion": group + "/v1", "kind": "Gizmo", "metadata": map[string]any{"name": "g"}}}
	gvr := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "gizmos"}
	// The new kind is watched once discovery serves it: create until seen.
	idG := ID{Group: group, Kind: "Gizmo", Namespace: ns, Name: "g"}
	_, err = src.Dynamic().Resource(gvr).Namespace(ns).Create(ctx, gizmo, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.has(idG) }, 20*time.Second, 20*time.Millisecond)
	o, err = w.Object(ctx, crdID, Options{})
	require.NoError(t, err)
	require.NotNil(t, o, "the CRD of a taken custom object is taken")
	names := map[string]bool{}
	for _, o := range w.Objects() {
		names[o.GetKind()+"/"+o.GetName()] = true
	}
	require.True(t, names["Gizmo/g"] && names["CustomResourceDefinition/"+crd.Name] && names["Namespace/"+other], "%v", names)
}

func ptr[T any](v T) *T { return &v }
