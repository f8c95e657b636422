package testcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"
)

func TestServerVersion(t *testing.T) {
	for _, c := range []*Cluster{clusters.Source, clusters.Target} {
		v, err := c.Clientset().Discovery().ServerVersion()
		require.NoError(t, err, c.Name)
		require.Equal(t, "v1.37.2", v.GitVersion, "cluster %s must report its real version, or kubectl cannot talk to it", c.Name)
	}
}

func TestRateLimitsRaised(t *testing.T) {
	for _, c := range []*Cluster{clusters.Source, clusters.Target} {
		require.GreaterOrEqual(t, c.Config.QPS, float32(100), c.Name)
		require.GreaterOrEqual(t, c.Config.Burst, 100, c.Name)
	}
}

var (
	crdGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	namespaceGVR  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	configMapGVR  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	pvcGVR        = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumeclaims"}
	deploymentGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// TestApplyReachesOnlyTheSource server-side applies a CRD, a custom object, a
// Namespace, a ConfigMap, a PVC and a Deployment to the source, and checks
// that they exist there and not on the target, and that the two clusters'
// resourceVersions are independent.
func TestApplyReachesOnlyTheSource(t *testing.T) {
	ctx := t.Context()
	src, tgt := clusters.Source.Dynamic(), clusters.Target.Dynamic()
	ns := NamespaceName(t)
	group := fmt.Sprintf("%s.example.dr-syncer.io", ns) // CRDs are cluster-wide: one group per test run
	widgetGVR := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "widgets"}

	apply := func(gvr schema.GroupVersionResource, namespace, manifest string) *unstructured.Unstructured {
		t.Helper()
		obj := &unstructured.Unstructured{}
		require.NoError(t, yaml.Unmarshal([]byte(manifest), &obj.Object))
		var ri = src.Resource(gvr)
		var out *unstructured.Unstructured
		var err error
		if namespace == "" {
			out, err = ri.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "dr-syncer-test", Force: true})
		} else {
			out, err = ri.Namespace(namespace).Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: "dr-syncer-test", Force: true})
		}
		require.NoError(t, err, "apply %s %s", gvr.Resource, obj.GetName())
		return out
	}

	apply(crdGVR, "", fmt.Sprintf(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.%[1]s
spec:
  group: %[1]s
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
`, group))
	waitEstablished(ctx, t, clusters.Source, "widgets."+group)

	apply(namespaceGVR, "", fmt.Sprintf(`{apiVersion: v1, kind: Namespace, metadata: {name: %s}}`, ns))
	t.Cleanup(func() { _ = src.Resource(namespaceGVR).Delete(context.Background(), ns, metav1.DeleteOptions{}) })
	apply(configMapGVR, ns, `{apiVersion: v1, kind: ConfigMap, metadata: {name: settings}, data: {color: blue}}`)
	apply(pvcGVR, ns, `
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: standard
  resources: {requests: {storage: 1Gi}}
`)
	apply(deploymentGVR, ns, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: nginx:1.27}
`)
	apply(widgetGVR, ns, fmt.Sprintf(`{apiVersion: %s/v1, kind: Widget, metadata: {name: blue}, spec: {size: 3}}`, group))

	for _, o := range []struct {
		gvr             schema.GroupVersionResource
		namespace, name string
	}{
		{crdGVR, "", "widgets." + group},
		{namespaceGVR, "", ns},
		{configMapGVR, ns, "settings"},
		{pvcGVR, ns, "data"},
		{deploymentGVR, ns, "web"},
		{widgetGVR, ns, "blue"},
	} {
		_, err := src.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
		require.NoError(t, err, "source: %s %s/%s", o.gvr.Resource, o.namespace, o.name)
		_, err = tgt.Resource(o.gvr).Namespace(o.namespace).Get(ctx, o.name, metav1.GetOptions{})
		require.Truef(t, apierrors.IsNotFound(err), "target: %s %s/%s: want NotFound, got %v", o.gvr.Resource, o.namespace, o.name, err)
	}
	widget, err := src.Resource(widgetGVR).Namespace(ns).Get(ctx, "blue", metav1.GetOptions{})
	require.NoError(t, err)
	size, _, _ := unstructured.NestedInt64(widget.Object, "spec", "size")
	require.EqualValues(t, 3, size)

	// Each cluster has its own etcd, so resourceVersions are independent: a
	// resourceVersion copied from the source is not a valid precondition in
	// the target, and an update carrying it is refused.
	tgtNS := clusters.Target.NamespaceNamed(t, ns)
	cm := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal([]byte(`{apiVersion: v1, kind: ConfigMap, metadata: {name: settings}, data: {color: blue}}`), &cm.Object))
	tgtCM, err := tgt.Resource(configMapGVR).Namespace(tgtNS).Create(ctx, cm, metav1.CreateOptions{})
	require.NoError(t, err)
	srcCM, err := src.Resource(configMapGVR).Namespace(ns).Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	for srcCM.GetResourceVersion() == tgtCM.GetResourceVersion() {
		// A coincidence of two counters; move the source on.
		require.NoError(t, unstructured.SetNestedField(srcCM.Object, time.Now().String(), "data", "touched"))
		srcCM, err = src.Resource(configMapGVR).Namespace(ns).Update(ctx, srcCM, metav1.UpdateOptions{})
		require.NoError(t, err)
	}
	stale := tgtCM.DeepCopy()
	stale.SetResourceVersion(srcCM.GetResourceVersion())
	_, err = tgt.Resource(configMapGVR).Namespace(tgtNS).Update(ctx, stale, metav1.UpdateOptions{})
	require.Truef(t, apierrors.IsConflict(err), "update with the source's resourceVersion: want Conflict, got %v", err)
}

func waitEstablished(ctx context.Context, t *testing.T, c *Cluster, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		u, err := c.Dynamic().Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
			return false, err
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	require.NoError(t, err, "cluster %s: CRD %s not Established", c.Name, name)
}

func TestInstallCRDs(t *testing.T) {
	group := NamespaceName(t) + ".example.dr-syncer.io"
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "gadgets." + group},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: group,
			Scope: apiextensionsv1.ClusterScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "gadgets", Singular: "gadget", Kind: "Gadget", ListKind: "GadgetList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptrTo(true),
				}},
			}},
		},
	}
	_, err := clusters.Target.InstallCRDs([]*apiextensionsv1.CustomResourceDefinition{crd})
	require.NoError(t, err)
	resources, err := clusters.Target.Clientset().Discovery().ServerResourcesForGroupVersion(group + "/v1")
	require.NoError(t, err, "the CRD's kind must be served once InstallCRDs returns")
	require.Len(t, resources.APIResources, 1)
	require.Equal(t, "Gadget", resources.APIResources[0].Kind)
	_, err = clusters.Source.Clientset().Discovery().ServerResourcesForGroupVersion(group + "/v1")
	require.True(t, apierrors.IsNotFound(err), "the source must not serve a CRD installed in the target: %v", err)
}

func ptrTo[T any](v T) *T { return &v }
