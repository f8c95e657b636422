package reconciler

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

func inventoryCommits(t *testing.T, m *Manager) (string, map[string]string) {
	t.Helper()
	inv, err := m.Inventory(t.Context())
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range inv.Entries {
		out[e.Object.String()] = e.Commit
	}
	return inv.Commit, out
}

// An incremental apply writes the changed objects only — a dry run and an
// apply each, no list of the live objects — prunes what left the set, and
// updates the inventory as the whole apply would.
func TestApplyDelta(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m, requests := newCountingManager(t, Options{MassPruneRatio: 0.5})
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	before := resourceVersions(t, m, set)

	// One ConfigMap changes.
	set = shopSet(t, ns)
	cm := find(set, "ConfigMap", "settings")
	require.NoError(t, unstructured.SetNestedField(cm.Object, "green", "data", "color"))
	requests.reset()
	res, err := m.ApplyDelta(t.Context(), set, Delta{Since: "c1", Changed: []*unstructured.Unstructured{cm}}, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	sent := requests.reset()
	t.Logf("incremental apply of one object of %d: requests %v", len(set), sent)
	require.Equal(t, map[string]Action{refOf(cm).String(): Configured}, actions(res))
	require.Equal(t, 2, sent["PATCH"], "a dry run and an apply: %v", sent)
	// Reads: the inventory, the object, the Namespaces (one list), the
	// inventory's Namespace and its shards (one list) — not the set.
	require.LessOrEqual(t, sent["GET"], 5, "requests: %v", sent)
	after := resourceVersions(t, m, set)
	for ref, rv := range before {
		if ref == refOf(cm).String() {
			require.NotEqual(t, rv, after[ref])
			continue
		}
		require.Equal(t, rv, after[ref], "%s must not be written", ref)
	}
	live := getLive(t, m, refOf(cm))
	color, _, _ := unstructured.NestedString(live.Object, "data", "color")
	require.Equal(t, "green", color)
	commit, entries := inventoryCommits(t, m)
	require.Equal(t, "c2", commit)
	require.Len(t, entries, len(set))
	for ref, c := range entries {
		want := "c1"
		if ref == refOf(cm).String() {
			want = "c2"
		}
		require.Equal(t, want, c, ref)
	}

	// A Service leaves the set, a ConfigMap joins it.
	removed := find(set, "Service", "web")
	added := decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: added, namespace: `+ns+`}, data: {a: "1"}}`)[0]
	set = append(without(set, "Service", "web"), added)
	res, err = m.ApplyDelta(t.Context(), set, Delta{Since: "c2", Changed: []*unstructured.Unstructured{added}}, ApplyOptions{Commit: "c3"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{refOf(added).String(): Created, refOf(removed).String(): Deleted}, actions(res))
	require.Nil(t, getLive(t, m, refOf(removed)))
	require.NotNil(t, getLive(t, m, refOf(added)))
	commit, entries = inventoryCommits(t, m)
	require.Equal(t, "c3", commit)
	require.Len(t, entries, len(set))
	require.Equal(t, "c3", entries[refOf(added).String()])
	require.NotContains(t, entries, refOf(removed).String())
	require.Equal(t, "c2", entries[refOf(cm).String()])

	// The inventory holds another commit: nothing is written.
	rvs := resourceVersions(t, m, set)
	cm2 := cm.DeepCopy()
	require.NoError(t, unstructured.SetNestedField(cm2.Object, "red", "data", "color"))
	_, err = m.ApplyDelta(t.Context(), set, Delta{Since: "c2", Changed: []*unstructured.Unstructured{cm2}}, ApplyOptions{Commit: "c4"})
	require.ErrorIs(t, err, ErrNotIncremental)
	require.Equal(t, rvs, resourceVersions(t, m, set))
	commit, _ = inventoryCommits(t, m)
	require.Equal(t, "c3", commit)
}

// An invalid object among the changes stops the incremental apply before
// anything is written, as it stops Apply.
func TestApplyDeltaInvalidStopsEverything(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	set := decode(t, `
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: `+ns+`}, data: {x: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: `+ns+`}, data: {x: "1"}}
`)
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	rvs := resourceVersions(t, m, set)

	next := decode(t, `
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: `+ns+`}, data: {x: "2"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: `+ns+`}, data: {x: "1"}, bogus: true}
`)
	_, err = m.ApplyDelta(t.Context(), next, Delta{Since: "c1", Changed: next}, ApplyOptions{Commit: "c2"})
	var invalid *InvalidError
	require.True(t, errors.As(err, &invalid), "error: %v", err)
	require.Len(t, invalid.Errors, 1)
	require.Equal(t, rvs, resourceVersions(t, m, set), "nothing written")
	commit, _ := inventoryCommits(t, m)
	require.Equal(t, "c1", commit)
}

// An object of the set that the inventory does not hold is applied even
// when the changes do not name it; drift of an object the commit did not
// change waits for Apply of the whole set.
func TestApplyDeltaMissingAndDrift(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{MassPruneRatio: 0.9})
	set := decode(t, `
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: `+ns+`}, data: {x: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: `+ns+`}, data: {x: "1"}}
`)
	_, err := m.Apply(t.Context(), set[:1], ApplyOptions{Commit: "c1"})
	require.NoError(t, err)

	// b is in the set, not in the inventory: applied.
	res, err := m.ApplyDelta(t.Context(), set, Delta{Since: "c1"}, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{refOf(set[1]).String(): Created}, actions(res))
	_, entries := inventoryCommits(t, m)
	require.Equal(t, map[string]string{refOf(set[0]).String(): "c1", refOf(set[1]).String(): "c2"}, entries)

	// Someone changes a on the target.
	gvr := gvrOf(t, m, refOf(set[0]))
	_, err = clusters.Target.Dynamic().Resource(gvr).Namespace(ns).Patch(t.Context(), "a", types.MergePatchType,
		[]byte(`{"data":{"x":"drifted"}}`), metav1.PatchOptions{FieldManager: "someone"})
	require.NoError(t, err)
	_, err = m.ApplyDelta(t.Context(), set, Delta{Since: "c2"}, ApplyOptions{Commit: "c3"})
	require.NoError(t, err)
	x, _, _ := unstructured.NestedString(getLive(t, m, refOf(set[0])).Object, "data", "x")
	require.Equal(t, "drifted", x, "an incremental apply does not look at unchanged objects")
	res, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c3"})
	require.NoError(t, err)
	require.Equal(t, Configured, actions(res)[refOf(set[0]).String()])
	x, _, _ = unstructured.NestedString(getLive(t, m, refOf(set[0])).Object, "data", "x")
	require.Equal(t, "1", x, "Apply corrects drift")

	// A prune of most of the inventory is refused as by Apply.
	_, err = m.ApplyDelta(t.Context(), nil, Delta{Since: "c3"}, ApplyOptions{Commit: "c4"})
	require.ErrorIs(t, err, ErrMassPrune)
	res, err = m.ApplyDelta(t.Context(), set[1:], Delta{Since: "c3"}, ApplyOptions{Commit: "c4"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{refOf(set[0]).String(): Deleted}, actions(res))
	_, entries = inventoryCommits(t, m)
	require.Equal(t, map[string]string{refOf(set[1]).String(): "c2"}, entries)
}

// The inventory after an incremental apply: entries of written objects get
// the commit, pruned ones leave, failed deletes stay.
func TestWithoutPruned(t *testing.T) {
	a, b, c := entry("ConfigMap", "ns", "a", "c1"), entry("ConfigMap", "ns", "b", "c1"), entry("ConfigMap", "ns", "c", "c1")
	pruned := pruneResults{{entry: a, action: Deleted}, {entry: b, err: errors.New("boom")}}
	got := withoutPruned([]InventoryEntry{a, b, c}, pruned)
	require.Equal(t, []InventoryEntry{b, c}, got)
}

// With ApplyOptions.Expand, the set may hold stand-ins carrying only their
// identity: ApplyDelta applies what Expand gives for the changed objects
// and for those the inventory does not hold, and reads the others by
// identity only (a stand-in that were applied would fail validation);
// Apply of the whole set compares and applies what Expand gives for each.
func TestApplyExpand(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{MassPruneRatio: 0.9})
	full := decode(t, `
{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: `+ns+`}, data: {x: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: b, namespace: `+ns+`}, data: {x: "1"}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: `+ns+`}, data: {x: "1"}}
`)
	_, err := m.Apply(t.Context(), full[:2], ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	require.NoError(t, unstructured.SetNestedField(full[1].Object, "2", "data", "x"))
	// Stand-ins: the identity and a field no ConfigMap has.
	byStandIn := map[*unstructured.Unstructured]*unstructured.Unstructured{}
	var set []*unstructured.Unstructured
	for _, o := range full {
		s := &unstructured.Unstructured{Object: map[string]any{"stand-in": true}}
		s.SetAPIVersion(o.GetAPIVersion())
		s.SetKind(o.GetKind())
		s.SetNamespace(o.GetNamespace())
		s.SetName(o.GetName())
		byStandIn[s] = o
		set = append(set, s)
	}
	var mu sync.Mutex
	expanded := map[string]bool{}
	expand := func(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
		mu.Lock() // the reconciler's workers call it at once
		defer mu.Unlock()
		expanded[o.GetName()] = true
		return byStandIn[o].DeepCopy(), nil
	}
	res, err := m.ApplyDelta(t.Context(), set, Delta{Since: "c1", Changed: set[1:2]}, ApplyOptions{Commit: "c2", Expand: expand})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"b": true, "c": true}, expanded, "the changed object and the one the inventory lacks")
	require.Equal(t, map[string]Action{refOf(full[1]).String(): Configured, refOf(full[2]).String(): Created}, actions(res))
	x, _, _ := unstructured.NestedString(getLive(t, m, refOf(full[1])).Object, "data", "x")
	require.Equal(t, "2", x)
	_, entries := inventoryCommits(t, m)
	require.Equal(t, map[string]string{refOf(full[0]).String(): "c1", refOf(full[1]).String(): "c2", refOf(full[2]).String(): "c2"}, entries)

	// The whole set: a drift of a is seen through Expand and corrected,
	// b and c are unchanged; the set's objects stay stand-ins.
	live := getLive(t, m, refOf(full[0]))
	require.NoError(t, unstructured.SetNestedField(live.Object, "drift", "data", "x"))
	live.SetManagedFields(nil)
	_, err = m.dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(ns).Update(t.Context(), live, metav1.UpdateOptions{FieldManager: "someone"})
	require.NoError(t, err)
	clear(expanded)
	res, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c3", Expand: expand})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"a": true, "b": true, "c": true}, expanded)
	require.Equal(t, map[string]Action{refOf(full[0]).String(): Configured, refOf(full[1]).String(): Unchanged, refOf(full[2]).String(): Unchanged}, actions(res))
	x, _, _ = unstructured.NestedString(getLive(t, m, refOf(full[0])).Object, "data", "x")
	require.Equal(t, "1", x)
	for _, s := range set {
		require.Equal(t, true, s.Object["stand-in"], "the set's objects are left as they were")
	}
}

// After each incremental apply — changes, additions, removals, a call
// refused before any write, duplicates in the set — the Manager's cached
// state (buckets, their encoding, the count, the entries, the key set) is
// what a fresh read of the target decodes, and the scan of the set finds
// the prune candidates that pruneCandidates finds with a map of the set.
func TestApplyDeltaStateMatchesRead(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{MassPruneRatio: 0.9})
	cm := func(name, x string) *unstructured.Unstructured {
		return decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: `+name+`, namespace: `+ns+`}, data: {x: "`+x+`"}}`)[0]
	}
	var set []*unstructured.Unstructured
	for i := range 150 {
		set = append(set, cm(fmt.Sprintf("cm-%03d", i), "1"))
	}
	_, err := m.Apply(t.Context(), set, ApplyOptions{Commit: "c0"})
	require.NoError(t, err)
	check := func(step string, objects []*unstructured.Unstructured) {
		t.Helper()
		cached := m.invCache.get()
		require.NotNil(t, cached, step)
		read, err := m.readWholeInventory(t.Context())
		require.NoError(t, err, step)
		require.Equal(t, read.inv.Commit, cached.inv.Commit, step)
		require.Equal(t, read.rv, cached.rv, step)
		require.Equal(t, read.count(), cached.count(), step)
		require.Equal(t, read.entries(), cached.entries(), step)
		if diff := cmp.Diff(read.buckets, cached.buckets, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%s: buckets (-read +cached):\n%s", step, diff)
		}
		for b := range inventoryBuckets {
			require.Equal(t, len(read.blobs[b]) == 0, len(cached.blobs[b]) == 0, "%s: bucket %d", step, b)
			if len(read.blobs[b]) > 0 {
				require.Equal(t, read.blobs[b], cached.blobs[b], "%s: bucket %d", step, b)
			}
		}
		read.withKeys(func(want map[objKey]entryPos) {
			cached.withKeys(func(got map[objKey]entryPos) { require.Equal(t, want, got, step) })
		})
		scan, err := m.scanSet(cached.stored(), objects, nil)
		require.NoError(t, err, step)
		keys := map[objKey]bool{}
		for _, o := range objects {
			keys[refOf(o).key()] = true
		}
		require.Equal(t, pruneCandidates(cached.entries(), keys), scan.pruneCandidates(cached.stored()), step)
	}
	check("after Apply", set)

	since := "c0"
	for i, step := range []struct {
		name    string
		set     func() []*unstructured.Unstructured
		changed func(set []*unstructured.Unstructured) []*unstructured.Unstructured
		fails   bool
	}{
		{name: "change one", set: func() []*unstructured.Unstructured {
			set[7] = cm("cm-007", "2")
			return set
		}, changed: func(s []*unstructured.Unstructured) []*unstructured.Unstructured { return s[7:8] }},
		{name: "change thirty", set: func() []*unstructured.Unstructured {
			for j := 20; j < 50; j++ {
				set[j] = cm(fmt.Sprintf("cm-%03d", j), "3")
			}
			return set
		}, changed: func(s []*unstructured.Unstructured) []*unstructured.Unstructured { return s[20:50] }},
		{name: "add and remove", set: func() []*unstructured.Unstructured {
			set = append(slices.Delete(set, 100, 110), cm("added-1", "1"), cm("added-2", "1"))
			return set
		}, changed: func(s []*unstructured.Unstructured) []*unstructured.Unstructured { return s[len(s)-2:] }},
		{name: "refused", set: func() []*unstructured.Unstructured {
			bad := cm("cm-001", "4")
			bad.Object["bogus"] = true
			return append(slices.Clone(set[:len(set)-1]), bad)
		}, changed: func(s []*unstructured.Unstructured) []*unstructured.Unstructured { return s[len(s)-1:] }, fails: true},
		{name: "duplicates, nothing changed", set: func() []*unstructured.Unstructured {
			return append(slices.Clone(set), set[3], set[5])
		}, changed: func([]*unstructured.Unstructured) []*unstructured.Unstructured { return nil }},
		{name: "remove only", set: func() []*unstructured.Unstructured {
			set = set[5:]
			return set
		}, changed: func([]*unstructured.Unstructured) []*unstructured.Unstructured { return nil }},
	} {
		objects := step.set()
		commit := fmt.Sprintf("c%d", i+1)
		_, err := m.ApplyDelta(t.Context(), objects, Delta{Since: since, Changed: step.changed(objects)}, ApplyOptions{Commit: commit})
		if step.fails {
			var invalid *InvalidError
			require.True(t, errors.As(err, &invalid), "%s: %v", step.name, err)
			check(step.name, set)
			continue
		}
		require.NoError(t, err, step.name)
		since = commit
		check(step.name, objects)
	}
}
