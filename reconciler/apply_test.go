package reconciler

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func TestApplyCreatesThenUnchanged(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m, requests := newCountingManager(t, Options{})

	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	require.Len(t, res.Changes, len(set))
	for _, c := range res.Changes {
		require.Equal(t, Created, c.Action, c.Object.String())
	}
	// Each object: one strict dry run, then one write of the body it
	// validated, which the server need not validate again.
	sent := requests.reset()
	require.Equal(t, len(set), sent["PATCH dry-run Strict"], "requests: %v", sent)
	require.Equal(t, len(set), sent["PATCH Ignore"], "requests: %v", sent)
	require.Equal(t, 2*len(set), sent["PATCH"], "requests: %v", sent)
	rvs := resourceVersions(t, m, set)
	for ref, rv := range rvs {
		require.NotEmpty(t, rv, "%s must exist", ref)
	}
	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	require.Equal(t, "c1", inv.Commit)
	require.Len(t, inv.Entries, len(set))
	for _, e := range inv.Entries {
		require.Equal(t, "c1", e.Commit, e.Object.String())
	}

	requests.reset()
	res, err = m.Apply(t.Context(), shopSet(t, ns), ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	// Decided locally from lists: no apply and no dry run was sent; the only
	// write is the inventory's.
	sent = requests.reset()
	require.Zero(t, sent["PATCH"], "requests: %v", sent)
	require.Equal(t, 1, sent["PUT"], "requests: %v", sent)
	t.Logf("unchanged re-apply of %d objects: requests %v", len(set), sent)
	for _, c := range res.Changes {
		require.Equal(t, Unchanged, c.Action, c.Object.String())
	}
	require.Equal(t, rvs, resourceVersions(t, m, set))
	inv, err = m.Inventory(t.Context())
	require.NoError(t, err)
	require.Equal(t, "c2", inv.Commit)
	for _, e := range inv.Entries {
		require.Equal(t, "c1", e.Commit, "%s did not change since c1", e.Object)
	}
}

func TestApplyChangeOne(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)

	set = shopSet(t, ns)
	cm := find(set, "ConfigMap", "settings")
	require.NoError(t, unstructured.SetNestedField(cm.Object, "green", "data", "color"))
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)

	changed := refOf(cm).String()
	after := resourceVersions(t, m, set)
	for _, c := range res.Changes {
		ref := c.Object.String()
		if ref == changed {
			require.Equal(t, Configured, c.Action)
			require.NotEqual(t, before[ref], after[ref], "%s changed", ref)
			continue
		}
		require.Equal(t, Unchanged, c.Action, ref)
		require.Equal(t, before[ref], after[ref], "%s must not be written", ref)
	}
	live := getLive(t, m, refOf(cm))
	color, _, _ := unstructured.NestedString(live.Object, "data", "color")
	require.Equal(t, "green", color)

	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	for _, e := range inv.Entries {
		want := "c1"
		if e.Object.String() == changed {
			want = "c2"
		}
		require.Equal(t, want, e.Commit, e.Object.String())
	}
}

// A field removed from the set is removed from the object: a subset check
// alone would miss it.
func TestApplyRemovedField(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	set := decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: `+ns+`, labels: {a: "1", b: "2"}}, data: {x: "1", y: "2"}}`)
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)

	set = decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: `+ns+`, labels: {a: "1"}}, data: {x: "1"}}`)
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	require.Equal(t, Configured, res.Changes[0].Action)
	live := getLive(t, m, refOf(set[0]))
	require.Equal(t, map[string]string{"a": "1"}, live.GetLabels())
	data, _, _ := unstructured.NestedStringMap(live.Object, "data")
	require.Equal(t, map[string]string{"x": "1"}, data)
}

func TestPrune(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)

	// Made by hand in the same namespace: never dr-syncer's to delete.
	hand := decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: by-hand, namespace: `+ns+`}, data: {a: b}}`)[0]
	_, err = clusters.Target.Dynamic().Resource(gvrOf(t, m, refOf(hand))).Namespace(ns).Create(t.Context(), hand, metav1.CreateOptions{})
	require.NoError(t, err)

	removed := find(set, "Service", "web")
	set = without(shopSet(t, ns), "Service", "web")
	before := resourceVersions(t, m, set)
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	require.Equal(t, Deleted, actions(res)[refOf(removed).String()])
	require.Equal(t, 1, res.Counts()[Deleted])
	require.Equal(t, len(set), res.Counts()[Unchanged])
	require.Nil(t, getLive(t, m, refOf(removed)))
	require.Equal(t, before, resourceVersions(t, m, set), "the others are untouched")
	require.NotNil(t, getLive(t, m, refOf(hand)), "the hand-made object survives")

	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	require.Len(t, inv.Entries, len(set))

	// prune: disabled keeps an object, which leaves the inventory.
	kept := find(set, "ConfigMap", "settings")
	live := getLive(t, m, refOf(kept))
	live.SetAnnotations(map[string]string{PruneAnnotation: PruneDisabled})
	_, err = clusters.Target.Dynamic().Resource(gvrOf(t, m, refOf(kept))).Namespace(ns).Update(t.Context(), live, metav1.UpdateOptions{})
	require.NoError(t, err)
	set = without(set, "ConfigMap", "settings")
	res, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c3"})
	require.NoError(t, err)
	require.Equal(t, Skipped, actions(res)[refOf(kept).String()])
	require.NotNil(t, getLive(t, m, refOf(kept)))
	require.NotNil(t, getLive(t, m, refOf(hand)), "the hand-made object survives")
	inv, err = m.Inventory(t.Context())
	require.NoError(t, err)
	require.Len(t, inv.Entries, len(set))
	for _, e := range inv.Entries {
		require.NotEqual(t, refOf(kept).String(), e.Object.String())
	}
}

// A Namespace that holds objects that are not being pruned is kept: its
// deletion would take them along.
func TestPruneNamespaceHoldingForeignObjects(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{MassPruneRatio: 0.5})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	extraNS := ns + "-extra"
	hand := decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: by-hand, namespace: `+extraNS+`}}`)[0]
	_, err = clusters.Target.Dynamic().Resource(gvrOf(t, m, refOf(hand))).Namespace(extraNS).Create(t.Context(), hand, metav1.CreateOptions{})
	require.NoError(t, err)

	set = without(without(shopSet(t, ns), "Namespace", extraNS), "ConfigMap", "extra")
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	got := actions(res)
	require.Equal(t, Deleted, got["ConfigMap/"+extraNS+"/extra"])
	require.Equal(t, Skipped, got["Namespace/"+extraNS])
	nsLive := getLive(t, m, ObjectRef{Version: "v1", Kind: "Namespace", Name: extraNS})
	require.NotNil(t, nsLive)
	require.Nil(t, nsLive.GetDeletionTimestamp())
	require.NotNil(t, getLive(t, m, refOf(hand)))
}

func TestInvalidObjectsStopEverything(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	set := decode(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: `+ns+`}
data: {color: blue}
`)
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)

	set = decode(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: `+ns+`}
data: {color: green}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: new, namespace: `+ns+`}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: `+ns+`}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: Bad_Name, image: nginx}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: `+ns+`}
spec:
  ports: [{port: 99999}]
---
apiVersion: example.dr-syncer.io/v1
kind: Unknown
metadata: {name: x, namespace: `+ns+`}
`)
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.Nil(t, res)
	var invalid *InvalidError
	require.ErrorAs(t, err, &invalid)
	require.False(t, invalid.Partial)
	var refs []string
	for _, e := range invalid.Errors {
		var oe *ObjectError
		require.ErrorAs(t, e, &oe)
		refs = append(refs, oe.Object.String())
	}
	require.ElementsMatch(t, []string{"Deployment.apps/" + ns + "/web", "Service/" + ns + "/web", "Unknown.example.dr-syncer.io/" + ns + "/x"}, refs)
	require.Contains(t, err.Error(), "Deployment.apps/"+ns+"/web: dry run: ")
	t.Log(err)

	// Nothing was applied: the valid change did not happen, the valid new
	// object was not created, the inventory is as it was.
	require.Equal(t, before, resourceVersions(t, m, set[:1]))
	require.Nil(t, getLive(t, m, refOf(set[1])))
	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	require.Equal(t, "c1", inv.Commit)
}

// TestNewObjectsValidatedAsApplied: the dry run of an object that does not
// exist yet is the apply itself. A dry-run create would cost the apiserver
// less, but it accepts the Deployment (two env vars of the same name),
// whose write would then fail after others were made.
func TestNewObjectsValidatedAsApplied(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	set := decode(t, `
apiVersion: v1
kind: ConfigMap
metadata: {name: fine, namespace: `+ns+`}
data: {a: b}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: twice, namespace: `+ns+`}
spec:
  selector: {matchLabels: {app: twice}}
  template:
    metadata: {labels: {app: twice}}
    spec:
      containers:
      - name: app
        image: nginx
        env: [{name: MODE, value: a}, {name: MODE, value: b}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: typo, namespace: `+ns+`}
data: {a: b}
datta: {c: d}
`)
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.Nil(t, res)
	var invalid *InvalidError
	require.ErrorAs(t, err, &invalid)
	var refs []string
	for _, e := range invalid.Errors {
		var oe *ObjectError
		require.ErrorAs(t, e, &oe)
		refs = append(refs, oe.Object.String())
	}
	require.ElementsMatch(t, []string{"Deployment.apps/" + ns + "/twice", "ConfigMap/" + ns + "/typo"}, refs)
	require.Contains(t, err.Error(), `duplicate entries for key [name="MODE"]`)
	require.Contains(t, err.Error(), `.datta: field not declared in schema`)
	require.Nil(t, getLive(t, m, refOf(set[0])), "a valid object was written before the refusal")
}

func TestMassPruneRefused(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	set := decode(t, fmt.Sprintf(`
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: %[1]s}, data: {v: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: %[1]s}, data: {v: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: %[1]s}, data: {v: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: d, namespace: %[1]s}, data: {v: "1"}}
`, ns))
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)

	half := set[:2]
	require.NoError(t, unstructured.SetNestedField(half[0].Object, "2", "data", "v"))
	_, err = m.Apply(t.Context(), half, ApplyOptions{Commit: "c2"})
	require.ErrorIs(t, err, ErrMassPrune)
	t.Log(err)
	require.Equal(t, before, resourceVersions(t, m, set), "nothing changed, not even the changed object")
	for _, dry := range []bool{true, false} {
		res, err := m.Apply(t.Context(), half, ApplyOptions{Commit: "c2", AllowMassPrune: true, DryRun: dry})
		require.NoError(t, err)
		require.Equal(t, map[Action]int{Configured: 1, Unchanged: 1, Deleted: 2}, res.Counts(), "dry run %v", dry)
	}
	after := resourceVersions(t, m, set)
	require.Empty(t, after[refOf(set[2]).String()])
	require.Empty(t, after[refOf(set[3]).String()])
}

func TestImmutableRecreatedByDefault(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	releaseServices(t, ns)
	m := newManager(t, Options{})
	doc := func(clusterIP, image string) []*unstructured.Unstructured {
		return decode(t, fmt.Sprintf(`
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  clusterIP: %[2]s
  ports: [{port: 80}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate, namespace: %[1]s}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: migrate, image: %[3]s}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s}
data: {a: b}
`, ns, clusterIP, image))
	}
	ips := freeClusterIPs(t, 2)
	set := doc(ips[0], "busybox:1")
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	uids := map[string]types.UID{}
	for _, o := range set {
		uids[refOf(o).String()] = getLive(t, m, refOf(o)).GetUID()
	}

	set = doc(ips[1], "busybox:2")
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{
		"Service/" + ns + "/web":        Recreated,
		"Job.batch/" + ns + "/migrate":  Recreated,
		"ConfigMap/" + ns + "/settings": Unchanged,
	}, actions(res))
	svc := getLive(t, m, refOf(set[0]))
	ip, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP")
	require.Equal(t, ips[1], ip)
	require.NotEqual(t, uids[refOf(set[0]).String()], svc.GetUID())
	require.NotEqual(t, uids[refOf(set[1]).String()], getLive(t, m, refOf(set[1])).GetUID())
	require.Equal(t, uids[refOf(set[2]).String()], getLive(t, m, refOf(set[2])).GetUID())
}

func TestImmutablePVCRefused(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	// Even a policy that says yes to everything never recreates a PVC.
	m := newManager(t, Options{Recreate: func(schema.GroupKind) bool { return true }})
	doc := func(class string) []*unstructured.Unstructured {
		return decode(t, fmt.Sprintf(`
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: %s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: %s
  resources: {requests: {storage: 1Gi}}
`, ns, class))
	}
	_, err := m.Apply(t.Context(), doc("standard"), ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := getLive(t, m, refOf(doc("x")[0]))

	_, err = m.Apply(t.Context(), doc("fast"), ApplyOptions{Commit: "c2"})
	var imm *ImmutableError
	require.ErrorAs(t, err, &imm)
	require.Equal(t, "PersistentVolumeClaim/"+ns+"/data", imm.Object.String())
	require.Equal(t, []string{"spec"}, imm.Fields)
	require.Equal(t, []string{"spec.storageClassName"}, imm.Changed)
	require.Contains(t, err.Error(), "PersistentVolumeClaim/"+ns+"/data: apply: field spec cannot change (changed: spec.storageClassName)")
	t.Log(err)
	var invalid *InvalidError
	require.ErrorAs(t, err, &invalid, "refused before anything is applied")
	after := getLive(t, m, refOf(doc("x")[0]))
	require.Equal(t, before.GetResourceVersion(), after.GetResourceVersion())
}

func TestDryRunWritesNothing(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{})
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1", DryRun: true})
	require.NoError(t, err)
	require.Equal(t, map[Action]int{Created: len(set)}, res.Counts())
	for ref, rv := range resourceVersionsOrMissing(t, m, set) {
		require.Empty(t, rv, "%s must not exist", ref)
	}
	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	require.Empty(t, inv.Entries)
	require.Empty(t, inv.Commit)

	_, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)
	changed := shopSet(t, ns)
	require.NoError(t, unstructured.SetNestedField(find(changed, "ConfigMap", "settings").Object, "green", "data", "color"))
	changed = without(changed, "Secret", "creds")
	res, err = m.Apply(t.Context(), changed, ApplyOptions{Commit: "c2", DryRun: true})
	require.NoError(t, err)
	require.Equal(t, map[Action]int{Configured: 1, Deleted: 1, Unchanged: len(set) - 2}, res.Counts())
	require.Equal(t, before, resourceVersions(t, m, set))
	inv, err = m.Inventory(t.Context())
	require.NoError(t, err)
	require.Equal(t, "c1", inv.Commit)
}

// resourceVersionsOrMissing is resourceVersions for objects whose kind may
// not be served yet.
func resourceVersionsOrMissing(t testing.TB, m *Manager, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	rvs := map[string]string{}
	for _, o := range objs {
		ref := refOf(o)
		rm, err := m.mapper.RESTMapping(ref.GroupKind(), ref.Version)
		if meta.IsNoMatchError(err) {
			rvs[ref.String()] = ""
			continue
		}
		require.NoError(t, err)
		u, err := clusters.Target.Dynamic().Resource(rm.Resource).Namespace(ref.Namespace).Get(t.Context(), ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			rvs[ref.String()] = ""
			continue
		}
		require.NoError(t, err)
		rvs[ref.String()] = u.GetResourceVersion()
	}
	return rvs
}

// A custom object can only be validated once its CRD is applied: when it is
// invalid, the CRD (and any Namespace of the set) is applied, nothing else.
func TestInvalidCustomObjectAfterItsCRD(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	require.NoError(t, unstructured.SetNestedField(find(set, "Widget", "blue").Object, "three", "spec", "size"))
	m := newManager(t, Options{})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	var invalid *InvalidError
	require.ErrorAs(t, err, &invalid)
	require.True(t, invalid.Partial)
	require.Len(t, invalid.Errors, 1)
	require.Contains(t, invalid.Errors[0].Error(), "Widget."+ns+".example.dr-syncer.io/"+ns+"/blue: dry run: ")
	t.Log(err)

	for _, o := range set {
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace":
			require.NotNil(t, getLive(t, m, refOf(o)), "%s is applied", refOf(o))
		case "Widget":
		default:
			require.Nil(t, getLive(t, m, refOf(o)), "%s is not applied", refOf(o))
		}
	}
	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	require.Empty(t, inv.Commit, "the apply did not complete")
	require.Len(t, inv.Entries, 2, "what was created is recorded, so that it can be pruned")
}

func TestImmutableServiceWhenPolicySaysNo(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	releaseServices(t, ns)
	m := newManager(t, Options{Recreate: func(schema.GroupKind) bool { return false }})
	doc := func(ip string) []*unstructured.Unstructured {
		return decode(t, `{apiVersion: v1, kind: Service, metadata: {name: web, namespace: `+ns+`}, spec: {clusterIP: `+ip+`, ports: [{port: 80}]}}`)
	}
	ips := freeClusterIPs(t, 2)
	_, err := m.Apply(t.Context(), doc(ips[0]), ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	_, err = m.Apply(t.Context(), doc(ips[1]), ApplyOptions{Commit: "c2"})
	var imm *ImmutableError
	require.ErrorAs(t, err, &imm)
	require.Equal(t, []string{"spec.clusterIPs[0]"}, imm.Fields)
	require.Equal(t, []string{"spec.clusterIP"}, imm.Changed)
	t.Log(err)
}

// A value the apiserver normalizes (a CPU of 0.5 is stored as 500m) cannot
// be found equal locally: the dry run finds the object unchanged, and
// nothing is written.
func TestUnchangedFoundByTheDryRun(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m, requests := newCountingManager(t, Options{})
	set := decode(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: `+ns+`}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx, resources: {requests: {cpu: "0.5"}}}]
`)
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)
	requests.reset()
	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	require.Equal(t, Unchanged, res.Changes[0].Action)
	require.Equal(t, before, resourceVersions(t, m, set))
	require.Equal(t, 1, requests.reset()["PATCH"], "one dry run, no apply")
}

// A commit that adds a field to a CRD and uses it in a custom object: the
// object is validated against the new schema, after the CRD stage.
func TestCRDChangeAndItsObjects(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)

	set = shopSet(t, ns)
	crd := find(set, "CustomResourceDefinition", "widgets."+ns+".example.dr-syncer.io")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	require.NoError(t, unstructured.SetNestedField(versions[0].(map[string]any), map[string]any{"type": "string"},
		"schema", "openAPIV3Schema", "properties", "spec", "properties", "color"))
	require.NoError(t, unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions"))
	require.NoError(t, unstructured.SetNestedField(find(set, "Widget", "blue").Object, "red", "spec", "color"))

	res, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c2", DryRun: true})
	require.NoError(t, err, "a dry run cannot validate against the new schema, but must not refuse")
	require.Equal(t, map[Action]int{Configured: 2, Unchanged: len(set) - 2}, res.Counts())
	diffs, err := m.Diff(t.Context(), set)
	require.NoError(t, err)
	require.Len(t, diffs, 2)

	res, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	got := actions(res)
	require.Equal(t, Configured, got[refOf(crd).String()])
	require.Equal(t, Configured, got[refOf(find(set, "Widget", "blue")).String()])
	require.Equal(t, map[Action]int{Configured: 2, Unchanged: len(set) - 2}, res.Counts())
	color, _, _ := unstructured.NestedString(getLive(t, m, refOf(find(set, "Widget", "blue"))).Object, "spec", "color")
	require.Equal(t, "red", color)
}

// freeClusterIPs returns n ClusterIPs of the target's service range
// (envtest's 10.0.0.0/24) that no Service holds, from the top of the range
// down: a test that sets its Service's clusterIP must not take one that a
// Service of an earlier test got at random (a namespace's deletion deletes
// nothing without a namespace controller), or the apply fails with
// "provided IP is already allocated". The package's tests run one at a
// time, so nothing allocates between the look and the apply.
func freeClusterIPs(t *testing.T, n int) []string {
	t.Helper()
	services := schema.GroupVersionResource{Version: "v1", Resource: "services"}
	list, err := clusters.Target.Dynamic().Resource(services).List(t.Context(), metav1.ListOptions{})
	require.NoError(t, err)
	used := map[string]bool{}
	for _, s := range list.Items {
		ips, _, _ := unstructured.NestedStringSlice(s.Object, "spec", "clusterIPs")
		for _, ip := range ips {
			used[ip] = true
		}
		ip, _, _ := unstructured.NestedString(s.Object, "spec", "clusterIP")
		used[ip] = true
	}
	var free []string
	for i := 254; i > 1 && len(free) < n; i-- {
		if ip := fmt.Sprintf("10.0.0.%d", i); !used[ip] {
			free = append(free, ip)
		}
	}
	require.Len(t, free, n, "the service range 10.0.0.0/24 is full")
	return free
}

// releaseServices deletes the Services of ns when the test ends, so that the
// fixed ClusterIPs of the test are free for its next run (no controller
// empties a deleted namespace here).
func releaseServices(t *testing.T, ns string) {
	t.Cleanup(func() {
		services := schema.GroupVersionResource{Version: "v1", Resource: "services"}
		_ = clusters.Target.Dynamic().Resource(services).Namespace(ns).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
	})
}
