package reconciler

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
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
	inventoryFormat  = "dr-syncer.io/inventory-v1"
	inventoryBlobKey = "inventory.json.gz"
	labelInventory   = "dr-syncer.io/inventory"
	labelGeneration  = "dr-syncer.io/inventory-generation"
	labelManagedBy   = "app.kubernetes.io/managed-by"
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

func encodeEntries(entries []InventoryEntry) ([]byte, error) {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b InventoryEntry) int {
		return compareRefs(a.Object, 0, b.Object, 0)
	})
	var blob inventoryBlob
	commitIndex := map[string]int{}
	for _, e := range sorted {
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
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(blob); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeEntries(data []byte) ([]InventoryEntry, error) {
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
	sortEntries(entries)
	return entries, nil
}

func sortEntries(entries []InventoryEntry) {
	slices.SortFunc(entries, func(a, b InventoryEntry) int {
		return compareRefs(a.Object, stageOf(a.Object.GroupKind(), a.Object.Namespace != ""),
			b.Object, stageOf(b.Object.GroupKind(), b.Object.Namespace != ""))
	})
}

// storedInventory is the inventory as read, with what is needed to replace
// it safely.
type storedInventory struct {
	Inventory
	resourceVersion string // of the head ConfigMap; empty when there is none
}

func (m *Manager) inventoryRef() ObjectRef {
	return ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: m.opts.InventoryNamespace, Name: m.opts.InventoryName}
}

// Inventory returns what the target holds. It is empty, not an error, when
// nothing has been applied yet.
func (m *Manager) Inventory(ctx context.Context) (*Inventory, error) {
	inv, err := m.readInventory(ctx)
	if err != nil {
		return nil, err
	}
	return &inv.Inventory, nil
}

func (m *Manager) readInventory(ctx context.Context) (*storedInventory, error) {
	ref := m.inventoryRef()
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	head, err := cms.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return &storedInventory{}, nil
	}
	if err != nil {
		return nil, objectErr(ref, "read inventory", err)
	}
	if f := head.Data["format"]; f != inventoryFormat {
		return nil, objectErr(ref, "read inventory", fmt.Errorf("unknown format %q (want %q)", f, inventoryFormat))
	}
	inv := &storedInventory{resourceVersion: head.ResourceVersion}
	inv.Commit = head.Data["commit"]
	if at := head.Data["appliedAt"]; at != "" {
		if inv.AppliedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return nil, objectErr(ref, "read inventory", fmt.Errorf("appliedAt: %w", err))
		}
	}
	blob := head.BinaryData[inventoryBlobKey]
	if shards := head.Data["shards"]; shards != "" && shards != "0" {
		if blob, err = m.readShards(ctx, head); err != nil {
			return nil, objectErr(ref, "read inventory", err)
		}
	}
	if len(blob) > 0 {
		if inv.Entries, err = decodeEntries(blob); err != nil {
			return nil, objectErr(ref, "read inventory", err)
		}
	}
	if want := head.Data["entries"]; want != "" && want != strconv.Itoa(len(inv.Entries)) {
		return nil, objectErr(ref, "read inventory", fmt.Errorf("%d entries, the head says %s", len(inv.Entries), want))
	}
	return inv, nil
}

func (m *Manager) readShards(ctx context.Context, head *corev1.ConfigMap) ([]byte, error) {
	n, err := strconv.Atoi(head.Data["shards"])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("shards: %q is not a count", head.Data["shards"])
	}
	gen := head.Data["generation"]
	var blob []byte
	for i := range n {
		name := shardName(head.Name, gen, i)
		cm, err := m.kube.CoreV1().ConfigMaps(head.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", name, err)
		}
		blob = append(blob, cm.BinaryData[inventoryBlobKey]...)
	}
	if sum := sha256.Sum256(blob); hex.EncodeToString(sum[:]) != head.Data["sha256"] {
		return nil, fmt.Errorf("the %d shards of generation %s do not match the head's checksum", n, gen)
	}
	return blob, nil
}

func shardName(head, gen string, i int) string { return fmt.Sprintf("%s-%s-%d", head, gen, i) }

// writeInventory replaces the inventory read as prev. It fails, changing
// nothing, when someone else replaced it in between.
//
// A large inventory is written in shards first, named after a hash of their
// content, and the head ConfigMap, which names the shards, last: a reader
// sees the old inventory or the new one, never a mix, and a failure halfway
// leaves the old one whole. Shards of other generations are removed after.
func (m *Manager) writeInventory(ctx context.Context, prev *storedInventory, inv *Inventory) error {
	ref := m.inventoryRef()
	blob, err := encodeEntries(inv.Entries)
	if err != nil {
		return objectErr(ref, "write inventory", err)
	}
	if err := m.ensureInventoryNamespace(ctx); err != nil {
		return objectErr(ref, "write inventory", err)
	}
	head := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: ref.Name, Namespace: ref.Namespace, ResourceVersion: prev.resourceVersion,
			Labels: map[string]string{labelManagedBy: "dr-syncer", labelInventory: ref.Name},
		},
		Data: map[string]string{
			"format":    inventoryFormat,
			"commit":    inv.Commit,
			"appliedAt": inv.AppliedAt.UTC().Format(time.RFC3339Nano),
			"entries":   strconv.Itoa(len(inv.Entries)),
		},
	}
	gen := ""
	if len(blob) <= maxInlineBlob {
		head.BinaryData = map[string][]byte{inventoryBlobKey: blob}
	} else {
		sum := sha256.Sum256(blob)
		gen = hex.EncodeToString(sum[:6])
		n := (len(blob) + maxInlineBlob - 1) / maxInlineBlob
		for i := range n {
			part := blob[i*maxInlineBlob : min(len(blob), (i+1)*maxInlineBlob)]
			if err := m.writeShard(ctx, ref, gen, i, part); err != nil {
				return objectErr(ref, "write inventory", err)
			}
		}
		head.Data["shards"] = strconv.Itoa(n)
		head.Data["generation"] = gen
		head.Data["sha256"] = hex.EncodeToString(sum[:])
	}
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	if prev.resourceVersion == "" {
		_, err = cms.Create(ctx, head, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	} else {
		_, err = cms.Update(ctx, head, metav1.UpdateOptions{FieldManager: m.opts.FieldManager})
	}
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return objectErr(ref, "write inventory", fmt.Errorf("replaced by someone else during this apply (is another dr-syncer applying to this target?): %w", err))
	}
	if err != nil {
		return objectErr(ref, "write inventory", err)
	}
	return m.removeStaleShards(ctx, ref, gen)
}

func (m *Manager) writeShard(ctx context.Context, ref ObjectRef, gen string, i int, part []byte) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: shardName(ref.Name, gen, i), Namespace: ref.Namespace,
			Labels: map[string]string{labelManagedBy: "dr-syncer", labelInventory: ref.Name, labelGeneration: gen},
		},
		BinaryData: map[string][]byte{inventoryBlobKey: part},
	}
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	_, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		// Same generation, same content (the name is its hash): left over by
		// an apply that failed before writing the head.
		return nil
	}
	if err != nil {
		return fmt.Errorf("shard %s: %w", cm.Name, err)
	}
	return nil
}

func (m *Manager) removeStaleShards(ctx context.Context, ref ObjectRef, keep string) error {
	sel := labels.NewSelector()
	r1, _ := labels.NewRequirement(labelInventory, selection.Equals, []string{ref.Name})
	r2, _ := labels.NewRequirement(labelGeneration, selection.Exists, nil)
	sel = sel.Add(*r1, *r2)
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return objectErr(ref, "remove old inventory shards", err)
	}
	var errs []error
	for _, cm := range list.Items {
		if cm.Labels[labelGeneration] == keep {
			continue
		}
		if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return objectErr(ref, "remove old inventory shards", err)
	}
	return nil
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
