package snapshot

import (
	"cmp"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
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
	crd := namespacedCRD(group, "gizmo", "Gizmo")
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
	objs, err := w.Objects()
	require.NoError(t, err)
	for _, o := range objs {
		names[o.GetKind()+"/"+o.GetName()] = true
	}
	require.True(t, names["Gizmo/g"] && names["CustomResourceDefinition/"+crd.Name] && names["Namespace/"+other], "%v", names)

	// ObjectsIn: every object of the namespaces asked for, the
	// cluster-scoped ones, and one object of each other namespace.
	_, err = src.Clientset().CoreV1().ConfigMaps(other).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.has(ID{Kind: "ConfigMap", Namespace: other, Name: "c"}) }, 10*time.Second, 20*time.Millisecond)
	count := func(objs []*unstructured.Unstructured) map[string]int {
		n := map[string]int{}
		for _, o := range objs {
			n[cmp.Or(o.GetNamespace(), "_cluster")]++
		}
		return n
	}
	objs, err = w.Objects()
	require.NoError(t, err)
	objsIn, err := w.ObjectsIn(ns)
	require.NoError(t, err)
	all, in := count(objs), count(objsIn)
	require.Equal(t, all[ns], in[ns], "every object of %s", ns)
	require.Equal(t, all["_cluster"], in["_cluster"], "every cluster-scoped object")
	require.Equal(t, 2, all[other])
	require.Equal(t, 1, in[other], "one object of %s", other)
}

func ptr[T any](v T) *T { return &v }

// namespacedCRD defines kind (plural singular+"s") in group, version v1,
// namespaced, with a schema that keeps every field.
func namespacedCRD(group, singular, kind string) *apiextensionsv1.CustomResourceDefinition {
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: singular + "s." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group, Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: singular + "s", Singular: singular, Kind: kind, ListKind: kind + "List"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr(true)}}}},
		},
	}
}

// TestWatchObjectsAsTake: the objects the watcher holds — listed when it
// started, or changed since — are those Take returns.
func TestWatchObjectsAsTake(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	cfg, err := policies.Decode(policies.FileName, []byte(fmt.Sprintf(`apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: watch-take}
spec:
  source: {name: src}
  target: {name: tgt}
  namespaces:
  - {source: %s}
  secrets: {mode: exclude}
`, ns)))
	require.NoError(t, err)
	replicas := int32(3)
	deployment := func(name string) *appsv1.Deployment {
		labels := map[string]string{"app": name}
		return &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
				},
			},
		}
	}
	_, err = src.Clientset().AppsV1().Deployments(ns).Create(ctx, deployment("before"), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	got := &changes{ids: map[ID]int{}}
	w, err := Watch(ctx, cfg, src.Config, got.add)
	require.NoError(t, err)
	require.NoError(t, w.WaitForSync(ctx))
	_, err = src.Clientset().AppsV1().Deployments(ns).Create(ctx, deployment("after"), metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return got.has(ID{Group: "apps", Kind: "Deployment", Namespace: ns, Name: "after"}) }, 10*time.Second, 20*time.Millisecond)

	set, err := Take(ctx, cfg, src.Config, Options{})
	require.NoError(t, err)
	objs, err := w.Objects()
	require.NoError(t, err)
	byID := func(objs []*unstructured.Unstructured) map[ID]map[string]any {
		m := map[ID]map[string]any{}
		for _, o := range objs {
			c := o.DeepCopy()
			c.SetResourceVersion("")
			m[idOf(c)] = c.Object
		}
		return m
	}
	want := byID(set.Objects)
	require.Len(t, want, 4, "two Deployments, a ConfigMap, the Namespace")
	require.Equal(t, want, byID(objs))
	for id, o := range want {
		one, err := w.Object(ctx, id, Options{})
		require.NoError(t, err)
		require.Equal(t, o, one.Object, "%s", id)
	}
}
