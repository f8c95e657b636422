package snapshot

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/policies"
)

// requestLog records the requests a client made and the statuses it got.
type requestLog struct {
	mu     sync.Mutex
	paths  []string
	denied int
}

func (l *requestLog) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.paths = append(l.paths, r.URL.Path)
			if err == nil && resp.StatusCode == http.StatusForbidden {
				l.denied++
			}
			return resp, err
		})
	})
	return cfg
}

// listed reports whether resource was listed in namespace ns.
func (l *requestLog) listed(ns, resource string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.paths, "/api/v1/namespaces/"+ns+"/"+resource)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestTakeProbes: a kind is listed only in the mapped namespaces that hold
// objects of it, as a cluster-wide probe finds them; a kind with more
// objects than a probe reads, Secrets (never probed), and every kind for a
// source that grants rights in the mapped namespaces only (one probe
// denied, no more) are listed in every mapped namespace. Each way takes the
// same objects.
func TestTakeProbes(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	cs := src.Clientset()
	a, b, other := src.Namespace(t), src.Namespace(t), src.Namespace(t)

	// A ResourceQuota in b only; a LimitRange in the unmapped namespace
	// only; a ServiceAccount in a, and more than a probe reads in the
	// unmapped namespace; a Secret in a.
	_, err := cs.CoreV1().ResourceQuotas(b).Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "quota"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("10")}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().LimitRanges(other).Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			Max: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cs.CoreV1().ServiceAccounts(a).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	for i := range probeLimit + 1 {
		_, err = cs.CoreV1().ServiceAccounts(other).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("sa-%03d", i)}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = cs.CoreV1().Secrets(a).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "probe-test-password"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	id, sealer := newTestSealer(t)
	cfg, err := policies.Decode(policies.FileName, []byte(fmt.Sprintf(`apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: probes}
spec:
  source: {name: src}
  target: {name: tgt}
  namespaces:
  - {source: %s}
  - {source: %s}
  secrets: {mode: encrypt, recipients: [%s]}
`, a, b, id.Recipient())))
	require.NoError(t, err)
	want := []ID{
		{Kind: "Namespace", Name: a},
		{Kind: "Namespace", Name: b},
		{Kind: "ResourceQuota", Namespace: b, Name: "quota"},
		{Kind: "Secret", Namespace: a, Name: "db"},
		{Kind: "ServiceAccount", Namespace: a, Name: "app"},
	}
	take := func(t *testing.T, source *rest.Config) *Set {
		set, err := Take(ctx, cfg, source, Options{Sealer: sealer})
		require.NoError(t, err)
		var got []ID
		for _, o := range set.Objects {
			got = append(got, idOf(o))
		}
		slices.SortFunc(want, func(x, y ID) int {
			return cmp.Or(cmp.Compare(x.Group, y.Group), cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
		})
		require.Equal(t, want, got)
		return set
	}

	quiet := rest.CopyConfig(src.Config)
	quiet.WarningHandler = rest.NoWarnings{} // v1 Endpoints is deprecated
	admin := &requestLog{}
	full := take(t, admin.wrap(quiet))
	require.Zero(t, admin.denied)
	require.True(t, admin.listed(b, "resourcequotas"))
	require.False(t, admin.listed(a, "resourcequotas"), "no ResourceQuota in %s: not listed there", a)
	require.False(t, admin.listed(a, "limitranges") || admin.listed(b, "limitranges"), "LimitRanges only in an unmapped namespace: not listed")
	for _, ns := range []string{a, b} {
		require.True(t, admin.listed(ns, "serviceaccounts"), "more ServiceAccounts than a probe reads: listed in %s", ns)
		require.True(t, admin.listed(ns, "secrets"), "Secrets are not probed: listed in %s", ns)
	}

	// Rights in the mapped namespaces only, as a least-privilege source
	// grants them: namespaces and CRDs cluster-wide, the rest per namespace.
	user := "dr-syncer-restricted-" + a[len(a)-6:]
	rbac := cs.RbacV1()
	_, err = rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list"}},
		{APIGroups: []string{"apiextensions.k8s.io"}, Resources: []string{"customresourcedefinitions"}, Verbs: []string{"list"}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rbac.ClusterRoles().Delete(ctx, user, metav1.DeleteOptions{}) })
	subjects := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	_, err = rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, Subjects: subjects,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user}}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rbac.ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{}) })
	for _, ns := range []string{a, b} {
		_, err = rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"list"}},
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user}, Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	restricted := rest.CopyConfig(quiet)
	restricted.Impersonate = rest.ImpersonationConfig{UserName: user}
	rcs, err := kubernetes.NewForConfig(restricted)
	require.NoError(t, err)
	require.Eventually(t, func() bool { // RBAC is read from a watch cache
		_, err1 := rcs.CoreV1().ResourceQuotas(b).List(ctx, metav1.ListOptions{})
		_, err2 := rcs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{Limit: 1})
		return err1 == nil && err2 == nil
	}, 10*time.Second, 20*time.Millisecond)
	_, err = rcs.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{Limit: 1})
	require.True(t, err != nil && strings.Contains(err.Error(), "forbidden"), "cluster-wide LIST: %v", err)

	// With the Role and RoleBinding the restricted user now sees, want
	// grows by what its own RBAC objects add to the mapped namespaces.
	want = append(want,
		ID{Group: rbacv1.GroupName, Kind: "Role", Namespace: a, Name: user},
		ID{Group: rbacv1.GroupName, Kind: "Role", Namespace: b, Name: user},
		ID{Group: rbacv1.GroupName, Kind: "RoleBinding", Namespace: a, Name: user},
		ID{Group: rbacv1.GroupName, Kind: "RoleBinding", Namespace: b, Name: user},
	)
	denied := &requestLog{}
	limited := take(t, denied.wrap(restricted))
	require.Equal(t, 1, denied.denied, "one probe denied, no more: %v", denied.paths)
	for _, ns := range []string{a, b} {
		require.True(t, denied.listed(ns, "resourcequotas") && denied.listed(ns, "limitranges"), "without probes: every kind listed in %s", ns)
	}
	withAdmin := take(t, quiet)

	// The same objects, whoever took them (Secrets differ by their
	// ciphertext only).
	for _, set := range []*Set{full, withAdmin} {
		byID := map[ID]*unstructured.Unstructured{}
		for _, o := range set.Objects {
			byID[idOf(o)] = o
		}
		for _, o := range limited.Objects {
			if id := idOf(o); id.Kind != "Secret" && byID[id] != nil {
				require.Equal(t, byID[id].Object, o.Object, "%s", id)
			}
		}
	}
}

// TestListerDecodesAsTheDynamicClient: the objects lister reads, page by
// page, are those the dynamic client lists, value for value (integers as
// int64, other numbers as float64).
func TestListerDecodesAsTheDynamicClient(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	group := ns + ".lister.dr-syncer.io"
	crd := namespacedCRD(group, "thing", "Thing")
	_, err := src.InstallCRDs([]*apiextensionsv1.CustomResourceDefinition{crd})
	require.NoError(t, err)
	things := schema.GroupVersionResource{Group: group, Version: "v1", Resource: "things"}
	for i := range 5 {
		thing := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": group + "/v1", "kind": "Thing",
			"metadata": map[string]any{"name": fmt.Sprintf("thing-%d", i), "labels": map[string]any{"n": fmt.Sprint(i)}},
			"spec": map[string]any{
				"int": int64(1) << 53, "negative": int64(-i), "float": 0.25 + float64(i), "big": 1e300, "exp": 1.5e-7,
				"text": "é \u2028 \"quoted\" \\ </script>", "empty": map[string]any{}, "list": []any{int64(1), "two", nil, true, []any{}},
			},
		}}
		_, err := src.Dynamic().Resource(things).Namespace(ns).Create(ctx, thing, metav1.CreateOptions{})
		require.NoError(t, err)
		_, err = src.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i)},
			Data: map[string]string{"k": strings.Repeat("v", i)}, BinaryData: map[string][]byte{"b": {0, 1, byte(i)}}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	l, err := newLister(src.Config, 2) // three pages of each
	require.NoError(t, err)
	for _, gvr := range []schema.GroupVersionResource{things, {Version: "v1", Resource: "configmaps"}} {
		want, err := src.Dynamic().Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		require.Len(t, want.Items, 5)
		var got []map[string]any
		require.NoError(t, l.each(ctx, gvr, ns, func(o *unstructured.Unstructured) error {
			if o.GetKind() == "" { // as the dynamic client does for the items of a typed list
				o.SetAPIVersion(want.GetAPIVersion())
				o.SetKind(strings.TrimSuffix(want.GetKind(), "List"))
			}
			got = append(got, o.Object)
			return nil
		}))
		require.Len(t, got, 5)
		for i := range got {
			require.Equal(t, want.Items[i].Object, got[i], "%s %d", gvr.Resource, i)
		}
	}

	err = l.each(ctx, schema.GroupVersionResource{Version: "v1", Resource: "nothings"}, ns, func(*unstructured.Unstructured) error { return nil })
	require.True(t, apierrors.IsNotFound(err), "a typed error: %v", err)
}
