package reconciler

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Inventory is what the target holds from dr-syncer: every object applied
// and the commit it came from, and the last commit applied.
type Inventory struct {
	// Commit is the last commit whose apply completed; empty when none has.
	Commit string
	// AppliedAt is when that apply completed.
	AppliedAt time.Time
	// Entries are the objects, in apply order.
	Entries []InventoryEntry
}

// InventoryEntry is one object of the inventory.
type InventoryEntry struct {
	Object ObjectRef
	// Commit is the commit that last wrote the object (created, configured
	// or recreated it); an object found unchanged keeps the commit it had.
	Commit string
}

// The inventory's ConfigMap. Its format is described in doc.go.
const (
	inventoryFormat   = "dr-syncer.io/inventory-v2"
	inventoryFormatV1 = "dr-syncer.io/inventory-v1" // read, and replaced by v2 on the next write
	inventoryBlobKey  = "inventory.json.gz"         // v1
	labelInventory    = "dr-syncer.io/inventory"
	labelGeneration   = "dr-syncer.io/inventory-generation"
	labelManagedBy    = "app.kubernetes.io/managed-by"
)

// maxInlineBlob is the largest compressed inventory kept in the head
// ConfigMap itself; a larger one is cut into shards of this size. A
// ConfigMap holds at most 1 MiB, and its request (base64) must stay under
// etcd's 1.5 MiB. A variable so that tests can shard small inventories.
var maxInlineBlob = 768 << 10

// inventoryBlob is the compressed JSON document: entries grouped by kind and
// namespace, commits interned.
type inventoryBlob struct {
	Commits []string         `json:"commits"`
	Groups  []inventoryGroup `json:"groups"`
}

type inventoryGroup struct {
	Group     string   `json:"group,omitempty"`
	Version   string   `json:"version"`
	Kind      string   `json:"kind"`
	Namespace string   `json:"namespace,omitempty"`
	Names     []string `json:"names"`
	Commits   []int    `json:"commits"` // index into inventoryBlob.Commits, one per name
}

// encodeEntries encodes entries, in any order, as one document.
func encodeEntries(entries []InventoryEntry) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b InventoryEntry) int {
		return compareRefs(a.Object, 0, b.Object, 0)
	})
	return encodeBucket(sorted)
}

// groupEntries groups runs of entries of one kind and namespace, and
// interns the commits.
func groupEntries(entries []InventoryEntry) inventoryBlob {
	var blob inventoryBlob
	commitIndex := map[string]int{}
	for _, e := range entries {
		ci, ok := commitIndex[e.Commit]
		if !ok {
			ci = len(blob.Commits)
			commitIndex[e.Commit] = ci
			blob.Commits = append(blob.Commits, e.Commit)
		}
		r := e.Object
		n := len(blob.Groups)
		if n == 0 || blob.Groups[n-1].Group != r.Group || blob.Groups[n-1].Version != r.Version ||
			blob.Groups[n-1].Kind != r.Kind || blob.Groups[n-1].Namespace != r.Namespace {
			blob.Groups = append(blob.Groups, inventoryGroup{Group: r.Group, Version: r.Version, Kind: r.Kind, Namespace: r.Namespace})
			n++
		}
		g := &blob.Groups[n-1]
		g.Names = append(g.Names, r.Name)
		g.Commits = append(g.Commits, ci)
	}
	return blob
}

// decodeEntries decodes a document, in apply order.
func decodeEntries(data []byte) ([]InventoryEntry, error) {
	entries, err := decodeBlob(data)
	if err != nil {
		return nil, err
	}
	sortEntries(entries)
	return entries, nil
}

func decodeBlob(data []byte) ([]InventoryEntry, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var blob inventoryBlob
	if err := json.Unmarshal(raw, &blob); err != nil {
		return nil, err
	}
	var entries []InventoryEntry
	for _, g := range blob.Groups {
		if len(g.Commits) != len(g.Names) {
			return nil, fmt.Errorf("group %s %s/%s: %d names, %d commits", g.Namespace, g.Group, g.Kind, len(g.Names), len(g.Commits))
		}
		for i, name := range g.Names {
			ci := g.Commits[i]
			if ci < 0 || ci >= len(blob.Commits) {
				return nil, fmt.Errorf("group %s %s/%s: commit index %d out of range", g.Namespace, g.Group, g.Kind, ci)
			}
			entries = append(entries, InventoryEntry{
				Object: ObjectRef{Group: g.Group, Version: g.Version, Kind: g.Kind, Namespace: g.Namespace, Name: name},
				Commit: blob.Commits[ci],
			})
		}
	}
	return entries, nil
}

func sortEntries(entries []InventoryEntry) {
	slices.SortFunc(entries, compareEntries)
}

// compareEntries orders entries as they are applied.
func compareEntries(a, b InventoryEntry) int {
	return compareRefs(a.Object, stageOf(a.Object.GroupKind(), a.Object.Namespace != ""),
		b.Object, stageOf(b.Object.GroupKind(), b.Object.Namespace != ""))
}

func (m *Manager) ensureInventoryNamespace(ctx context.Context) error {
	nss := m.kube.CoreV1().Namespaces()
	if _, err := nss.Get(ctx, m.opts.InventoryNamespace, metav1.GetOptions{}); err == nil || !apierrors.IsNotFound(err) {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   m.opts.InventoryNamespace,
		Labels: map[string]string{labelManagedBy: "dr-syncer"},
	}}
	if _, err := nss.Create(ctx, ns, metav1.CreateOptions{FieldManager: m.opts.FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Namespace/%s: %w", ns.Name, err)
	}
	return nil
}

// nextInventory computes the inventory after an apply: the objects of the
// set that are in place (written or found unchanged), the pruned objects
// whose delete failed, and — when the apply stopped before its end — every
// entry of the previous inventory that was not replaced (nothing was pruned,
// so all of them may still exist).
func nextInventory(prev []InventoryEntry, applied []Change, pruneFailed []ObjectRef, commit string, complete bool) []InventoryEntry {
	old := make(map[objKey]InventoryEntry, len(prev))
	for _, e := range prev {
		old[e.Object.key()] = e
	}
	next := make(map[objKey]InventoryEntry, len(applied)+len(pruneFailed))
	for _, c := range applied {
		k := c.Object.key()
		e := InventoryEntry{Object: c.Object, Commit: commit}
		if o, ok := old[k]; ok && c.Action == Unchanged && o.Commit != "" {
			e.Commit = o.Commit
		}
		next[k] = e
	}
	for _, r := range pruneFailed {
		if o, ok := old[r.key()]; ok {
			next[r.key()] = o
		}
	}
	if !complete {
		for k, o := range old {
			if _, ok := next[k]; !ok {
				next[k] = o
			}
		}
	}
	entries := make([]InventoryEntry, 0, len(next))
	for _, e := range next {
		entries = append(entries, e)
	}
	sortEntries(entries)
	return entries
}

// overlayInventory is nextInventory of an apply that keeps every entry of
// prev (complete false) for prev in apply order without duplicates, as an
// inventory read or written is: the entries of the applied objects take
// the place of theirs, new ones are inserted in order. Its cost follows
// len(applied), but for one copy of prev.
func overlayInventory(prev []InventoryEntry, applied []Change, commit string) []InventoryEntry {
	upd := make(map[objKey]Change, len(applied))
	for _, c := range applied {
		upd[c.Object.key()] = c
	}
	out := slices.Clone(prev)
	if len(upd) == 0 {
		return out
	}
	for i, e := range out {
		c, ok := upd[e.Object.key()]
		if !ok {
			continue
		}
		delete(upd, e.Object.key())
		n := InventoryEntry{Object: c.Object, Commit: commit}
		if c.Action == Unchanged && e.Commit != "" {
			n.Commit = e.Commit
		}
		out[i] = n
		if len(upd) == 0 {
			return out
		}
	}
	added := make([]InventoryEntry, 0, len(upd))
	for _, c := range upd {
		added = append(added, InventoryEntry{Object: c.Object, Commit: commit})
	}
	sortEntries(added)
	for _, e := range added {
		i, _ := slices.BinarySearchFunc(out, e, compareEntries)
		out = slices.Insert(out, i, e)
	}
	return out
}
