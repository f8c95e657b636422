package reconciler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func entry(kind, ns, name, commit string) InventoryEntry {
	r := ObjectRef{Version: "v1", Kind: kind, Namespace: ns, Name: name}
	switch kind {
	case "Deployment":
		r.Group = "apps"
	case "CustomResourceDefinition":
		r.Group = "apiextensions.k8s.io"
	case "Widget":
		r.Group = "example.com"
	}
	return InventoryEntry{Object: r, Commit: commit}
}

func keysOf(entries ...InventoryEntry) map[objKey]bool {
	out := map[objKey]bool{}
	for _, e := range entries {
		out[e.Object.key()] = true
	}
	return out
}

func TestPruneCandidates(t *testing.T) {
	crd := entry("CustomResourceDefinition", "", "widgets.example.com", "c1")
	ns := entry("Namespace", "", "shop", "c1")
	cm := entry("ConfigMap", "shop", "settings", "c1")
	dep := entry("Deployment", "shop", "web", "c2")
	widget := entry("Widget", "shop", "blue", "c1")
	svc := entry("Service", "shop", "web", "c1")
	all := []InventoryEntry{crd, ns, cm, svc, dep, widget}

	for _, tc := range []struct {
		name    string
		desired map[objKey]bool
		want    []InventoryEntry
	}{
		{"nothing removed", keysOf(all...), nil},
		{"one removed", keysOf(crd, ns, cm, dep, widget), []InventoryEntry{svc}},
		{"everything removed, in reverse apply order", nil, []InventoryEntry{widget, dep, svc, cm, ns, crd}},
		{"new objects in the set change nothing", keysOf(append(all, entry("ConfigMap", "shop", "new", ""))...), nil},
		{
			"another version of the same object is the same object",
			map[objKey]bool{
				{group: "apps", kind: "Deployment", namespace: "shop", name: "web"}: true,
			},
			[]InventoryEntry{widget, svc, cm, ns, crd},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pruneCandidates(all, tc.desired)
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(objKey{})); diff != "" {
				t.Errorf("pruneCandidates (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMassPruneRatio(t *testing.T) {
	for _, tc := range []struct {
		n, total int
		ratio    float64
		want     bool
	}{
		{0, 0, 0.25, false},
		{0, 10, 0.25, false},
		{2, 10, 0.25, false},
		{3, 10, 0.25, true},
		{1, 4, 0.25, false},
		{2, 4, 0.25, true},
		{1, 1, 1, false},
		{1, 2, 0.25, true},
	} {
		if got := massPrune(tc.n, tc.total, tc.ratio); got != tc.want {
			t.Errorf("massPrune(%d, %d, %v) = %v, want %v", tc.n, tc.total, tc.ratio, got, tc.want)
		}
	}
}

func TestNextInventory(t *testing.T) {
	cm := entry("ConfigMap", "shop", "settings", "c1")
	svc := entry("Service", "shop", "web", "c1")
	dep := entry("Deployment", "shop", "web", "c1")
	old := entry("ConfigMap", "shop", "old", "c0")
	prev := []InventoryEntry{cm, svc, dep, old}
	at := func(e InventoryEntry, commit string) InventoryEntry { e.Commit = commit; return e }
	change := func(e InventoryEntry, a Action) Change { return Change{Object: e.Object, Action: a} }
	newCM := entry("ConfigMap", "shop", "new", "")

	for _, tc := range []struct {
		name        string
		applied     []Change
		pruneFailed []ObjectRef
		complete    bool
		want        []InventoryEntry
	}{
		{
			name:     "unchanged objects keep their commit, written ones get the new one, pruned ones leave",
			applied:  []Change{change(cm, Unchanged), change(svc, Configured), change(dep, Recreated), change(newCM, Created)},
			complete: true,
			want:     []InventoryEntry{at(newCM, "c2"), cm, at(svc, "c2"), at(dep, "c2")},
		},
		{
			name:        "an object whose delete failed stays, with its commit",
			applied:     []Change{change(cm, Unchanged), change(svc, Unchanged), change(dep, Unchanged)},
			pruneFailed: []ObjectRef{old.Object},
			complete:    true,
			want:        []InventoryEntry{old, cm, svc, dep},
		},
		{
			name:     "a stopped apply keeps every previous entry and adds what it wrote",
			applied:  []Change{change(newCM, Created)},
			complete: false,
			want:     []InventoryEntry{at(newCM, "c2"), old, cm, svc, dep},
		},
		{
			name:     "an empty set empties it",
			complete: true,
			want:     []InventoryEntry{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := nextInventory(prev, tc.applied, tc.pruneFailed, "c2", tc.complete)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("nextInventory (-want +got):\n%s", diff)
			}
		})
	}
}
