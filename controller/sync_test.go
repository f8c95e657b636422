package controller

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"

	"github.com/dr-syncer/dr-syncer/reconciler"
)

const syncConfig = `
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: realistic}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces:
  - {source: real-shop, target: real-shop-dr}
  storageClasses:
  - {source: fast, target: standard}
  resources:
    excludeObjects:
    - {name: "tmp-*"}
  secrets:
    mode: encrypt
    recipients: [%s]
`

// TestSyncRealisticNamespace: the realistic namespace, renamed and with its
// storage class mapped, applied to the target: the target holds exactly the
// rendered objects (every rendered field, compared with go-cmp), with the
// RoleBinding subject in the new namespace and the Secret opened.
func TestSyncRealisticNamespace(t *testing.T) {
	ctx := t.Context()
	applyManifests(t, clusters.Source, fmt.Sprintf(realisticNamespace, "real-shop", "real-other", 30081))
	// The class the mapping maps to: Apply refuses a claim of a mapped
	// class the target lacks.
	applyManifests(t, clusters.Target, "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard}\nprovisioner: example.com/none\n")
	id, sealer := testKeys(t)
	cfg := decodeConfig(t, fmt.Sprintf(syncConfig, id.Recipient()))
	repo, _ := skeletonRepo(t, cfg)

	_, err := Snapshot(ctx, SnapshotOptions{Repo: repo, Config: cfg, Source: clusters.Source.Config, Sealer: sealer})
	require.NoError(t, err)
	opts := ApplyOptions{Repo: repo, Config: cfg, Target: clusters.Target.Config, Identity: id}
	res, err := Apply(ctx, opts)
	require.NoError(t, err)
	require.NotZero(t, res.Counts()[reconciler.Created])

	_, want, err := desired(ctx, opts)
	require.NoError(t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(clusters.Target.Clientset().Discovery()))
	for _, d := range want {
		gvk := d.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(t, err, gvk)
		live, err := clusters.Target.Dynamic().Resource(m.Resource).Namespace(d.GetNamespace()).Get(ctx, d.GetName(), metav1.GetOptions{})
		require.NoError(t, err, "%s %s/%s not in the target", gvk.Kind, d.GetNamespace(), d.GetName())
		if diff := cmp.Diff(d.Object, project(live.Object, d.Object)); diff != "" {
			t.Errorf("%s %s/%s differs from the rendered object (-rendered +target):\n%s", gvk.Kind, d.GetNamespace(), d.GetName(), diff)
		}
	}

	rb, err := clusters.Target.Clientset().RbacV1().RoleBindings("real-shop-dr").Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "real-shop-dr", rb.Subjects[0].Namespace)
	pvc, err := clusters.Target.Clientset().CoreV1().PersistentVolumeClaims("real-shop-dr").Get(ctx, "uploads", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "standard", *pvc.Spec.StorageClassName)
	sts, err := clusters.Target.Clientset().AppsV1().StatefulSets("real-shop-dr").Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "standard", *sts.Spec.VolumeClaimTemplates[0].Spec.StorageClassName)
	require.Zero(t, *sts.Spec.Replicas)
	secret, err := clusters.Target.Clientset().CoreV1().Secrets("real-shop-dr").Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "golden-plaintext-password", string(secret.Data["password"]))
	for _, name := range []string{"scratch", "tmp-build-cache", "kube-root-ca.crt"} {
		_, err := clusters.Target.Clientset().CoreV1().ConfigMaps("real-shop-dr").Get(ctx, name, metav1.GetOptions{})
		require.Error(t, err, "ConfigMap %s must not be replicated", name)
	}

	// Applied again: nothing changes.
	res, err = Apply(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, len(want), res.Counts()[reconciler.Unchanged], "%v", res.Counts())
}

// project returns the parts of live that desired has: the fields of desired,
// with live's values (lists element by element), so that cmp.Diff shows
// exactly where the target differs from what was rendered.
func project(live, desired any) any {
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return live
		}
		out := make(map[string]any, len(d))
		for k, dv := range d {
			if lv, ok := l[k]; ok {
				out[k] = project(lv, dv)
			}
		}
		return out
	case []any:
		l, ok := live.([]any)
		if !ok || len(l) != len(d) {
			return live
		}
		out := make([]any, len(d))
		for i := range d {
			out[i] = project(l[i], d[i])
		}
		return out
	default:
		return live
	}
}
