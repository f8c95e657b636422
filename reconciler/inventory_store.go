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
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
)

// inventoryBuckets is how many buckets the entries are spread over, by a
// hash of their key (bucketOf): a change of a few objects re-encodes and
// rewrites a few buckets. 64 buckets of a 10,000-entry inventory hold
// about 160 entries each.
const inventoryBuckets = 64

var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// bucketOf is the bucket of an entry: FNV-1a of its key, which does not
// change with the object's apiVersion or commit.
func bucketOf(k objKey) int {
	// hash/fnv, inlined: it would allocate for each string.
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for _, s := range [...]string{k.group, k.kind, k.namespace, k.name} {
		for i := range len(s) {
			h ^= uint32(s[i])
			h *= prime32
		}
		h *= prime32 // the separator, a zero byte
	}
	return int(h % inventoryBuckets)
}

func bucketKey(i int) string { return fmt.Sprintf("inventory-%02d.json.gz", i) }

// splitBuckets spreads sorted entries over the buckets, keeping their order.
func splitBuckets(entries []InventoryEntry) [][]InventoryEntry {
	// Two passes into one array: growing 64 slices cost more than hashing.
	of := make([]uint8, len(entries))
	var count [inventoryBuckets]int
	for i, e := range entries {
		b := bucketOf(e.Object.key())
		of[i] = uint8(b)
		count[b]++
	}
	all := make([]InventoryEntry, len(entries))
	out := make([][]InventoryEntry, inventoryBuckets)
	start := 0
	for b, n := range count {
		out[b] = all[start : start : start+n]
		start += n
	}
	for i, e := range entries {
		out[of[i]] = append(out[of[i]], e)
	}
	return out
}

// storedInventory is the inventory as read, with what is needed to replace
// it safely. Its Entries are empty when it has a state: entries() returns
// them, shared with the Manager's cache (read only).
type storedInventory struct {
	Inventory
	resourceVersion string // of the head ConfigMap; empty when there is none

	state *inventoryState // the decoded form it came from; nil when none
}

// entries returns the entries, in apply order. Read only.
func (s *storedInventory) entries() []InventoryEntry {
	if s.state != nil {
		return s.state.entries()
	}
	return s.Entries
}

// count is len(s.entries()), without merging the buckets.
func (s *storedInventory) count() int {
	if s.state != nil {
		return s.state.count()
	}
	return len(s.Entries)
}

// count is the number of entries of s.
func (s *inventoryState) count() int {
	if s.buckets == nil {
		return len(s.inv.Entries)
	}
	n := 0
	for _, es := range s.buckets {
		n += len(es)
	}
	return n
}

// inventoryState is the inventory as last read or written by this Manager,
// kept between applies: valid while the head's resourceVersion, and the
// shards' when there are any, are the ones it records. Immutable once made.
type inventoryState struct {
	inv    Inventory // Entries: nil when made from buckets; see entries
	rv     string
	shards []shardRef // v2 shards, in order; empty when inline
	// buckets and blobs are the entries of each bucket, in order, and
	// their encoding; nil when the inventory was read in format v1.
	buckets [][]InventoryEntry
	blobs   [][]byte
	// read: the state was read, not written by this Manager: shards left
	// over by another writer (or of format v1) are looked for at the next
	// write. After a write of its own, an inline inventory needs no look.
	read bool

	mergeOnce sync.Once
	merged    []InventoryEntry // the buckets merged, at the first entries

	keysMu sync.Mutex
	// keys maps the key of each entry to its place (entryPos), built at
	// the first look-up; see takeKeys.
	keys map[objKey]entryPos
}

// entryPos is the place of an entry in an inventoryState: bucket and index
// in the bucket, or index in inv.Entries (bucket 0) when it has no buckets.
type entryPos struct{ bucket, index int32 }

type shardRef struct{ name, rv string }

// entries returns the entries in apply order. A state made by an update of
// a few buckets (updateState) merges its buckets at the first call only:
// an ApplyDelta does not need them.
func (s *inventoryState) entries() []InventoryEntry {
	if s.inv.Entries != nil || s.buckets == nil {
		return s.inv.Entries
	}
	s.mergeOnce.Do(func() {
		all := make([]InventoryEntry, 0, s.count())
		for _, b := range s.buckets {
			all = append(all, b...)
		}
		sortEntries(all)
		s.merged = all
	})
	return s.merged
}

// withKeys calls f with the key set of s, built if need be. f must not
// keep it: takeKeys hands it to the next state.
func (s *inventoryState) withKeys(f func(map[objKey]entryPos)) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if s.keys == nil {
		s.keys = make(map[objKey]entryPos, s.count())
		if s.buckets == nil {
			for i, e := range s.inv.Entries {
				s.keys[e.Object.key()] = entryPos{index: int32(i)}
			}
		}
		for b, es := range s.buckets {
			for i, e := range es {
				s.keys[e.Object.key()] = entryPos{bucket: int32(b), index: int32(i)}
			}
		}
	}
	f(s.keys)
}

// positions returns, for each bucket of s (one when it has none), where
// its entries start in a numbering of all of them, and their number.
func (s *inventoryState) positions() (start []int, total int) {
	if s.buckets == nil {
		return []int{0}, len(s.inv.Entries)
	}
	start = make([]int, len(s.buckets))
	for b, es := range s.buckets {
		start[b] = total
		total += len(es)
	}
	return start, total
}

// each calls f with each entry and its number in positions' numbering.
func (s *inventoryState) each(f func(i int, e InventoryEntry)) {
	if s.buckets == nil {
		for i, e := range s.inv.Entries {
			f(i, e)
		}
		return
	}
	n := 0
	for _, es := range s.buckets {
		for _, e := range es {
			f(n, e)
			n++
		}
	}
}

// takeKeys hands the key set of s, if built, to next, which differs from s
// in the buckets dirty only: the set is updated rather than built again
// (10,000 keys cost about 2 ms). s builds its own again if asked.
func (s *inventoryState) takeKeys(next *inventoryState, dirty []int) {
	s.keysMu.Lock()
	keys := s.keys
	s.keys = nil
	s.keysMu.Unlock()
	if keys == nil || s.buckets == nil {
		return
	}
	for _, i := range dirty {
		for _, e := range s.buckets[i] {
			delete(keys, e.Object.key())
		}
		for j, e := range next.buckets[i] {
			keys[e.Object.key()] = entryPos{bucket: int32(i), index: int32(j)}
		}
	}
	next.keys = keys
}

func (s *inventoryState) stored() *storedInventory {
	return &storedInventory{Inventory: Inventory{Commit: s.inv.Commit, AppliedAt: s.inv.AppliedAt}, resourceVersion: s.rv, state: s}
}

// inventoryCache holds the Manager's inventoryState.
type inventoryCache struct {
	mu    sync.Mutex
	state *inventoryState
	// off makes every read decode and every write encode the whole
	// inventory (benchmarks compare with it).
	off bool
}

func (c *inventoryCache) get() *inventoryState {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off {
		return nil
	}
	return c.state
}

func (c *inventoryCache) set(s *inventoryState) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
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
	out := inv.Inventory
	out.Entries = slices.Clone(inv.entries())
	return &out, nil
}

// readInventory returns the inventory the target holds: the one this
// Manager last read or wrote when the head ConfigMap (one metadata-only
// GET) and its shards (one metadata-only list) have the resourceVersions
// it recorded, else the one it reads and decodes.
func (m *Manager) readInventory(ctx context.Context) (*storedInventory, error) {
	ref := m.inventoryRef()
	if s := m.invCache.get(); s != nil {
		head, err := m.meta.Resource(configMapsGVR).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			m.invCache.set(nil)
			return &storedInventory{}, nil
		}
		if err != nil {
			return nil, objectErr(ref, "read inventory", err)
		}
		if head.ResourceVersion == s.rv {
			same, err := m.shardsUnchanged(ctx, s)
			if err != nil {
				return nil, objectErr(ref, "read inventory", err)
			}
			if same {
				return s.stored(), nil
			}
		}
	}
	s, err := m.readWholeInventory(ctx)
	if err != nil {
		m.invCache.set(nil)
		return nil, objectErr(ref, "read inventory", err)
	}
	m.invCache.set(s)
	if s == nil {
		return &storedInventory{}, nil
	}
	return s.stored(), nil
}

// shardsUnchanged reports whether the shards of s are still there with the
// resourceVersions it recorded.
func (m *Manager) shardsUnchanged(ctx context.Context, s *inventoryState) (bool, error) {
	if len(s.shards) == 0 {
		return true, nil
	}
	list, err := m.meta.Resource(configMapsGVR).Namespace(m.opts.InventoryNamespace).List(ctx, metav1.ListOptions{LabelSelector: m.shardSelector()})
	if err != nil {
		return false, fmt.Errorf("list shards: %w", err)
	}
	live := make(map[string]string, len(list.Items))
	for _, it := range list.Items {
		live[it.Name] = it.ResourceVersion
	}
	for _, sh := range s.shards {
		if live[sh.name] != sh.rv {
			return false, nil
		}
	}
	return true, nil
}

func (m *Manager) shardSelector() string {
	sel := labels.NewSelector()
	r1, _ := labels.NewRequirement(labelInventory, selection.Equals, []string{m.opts.InventoryName})
	r2, _ := labels.NewRequirement(labelGeneration, selection.Exists, nil)
	return sel.Add(*r1, *r2).String()
}

// readWholeInventory reads and decodes the inventory, in either format. It
// returns nil when there is none.
func (m *Manager) readWholeInventory(ctx context.Context) (*inventoryState, error) {
	ref := m.inventoryRef()
	head, err := m.kube.CoreV1().ConfigMaps(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s := &inventoryState{rv: head.ResourceVersion, read: true}
	s.inv.Commit = head.Data["commit"]
	if at := head.Data["appliedAt"]; at != "" {
		if s.inv.AppliedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return nil, fmt.Errorf("appliedAt: %w", err)
		}
	}
	switch f := head.Data["format"]; f {
	case inventoryFormatV1:
		if err := m.readV1(ctx, head, s); err != nil {
			return nil, err
		}
	case inventoryFormat:
		if err := m.readV2(ctx, head, s); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown format %q (want %q)", f, inventoryFormat)
	}
	if want := head.Data["entries"]; want != "" && want != strconv.Itoa(len(s.inv.Entries)) {
		return nil, fmt.Errorf("%d entries, the head says %s", len(s.inv.Entries), want)
	}
	return s, nil
}

// readV1 reads the format of dr-syncer before buckets: one document,
// inline or cut into shards. The next write replaces it with format v2.
func (m *Manager) readV1(ctx context.Context, head *corev1.ConfigMap, s *inventoryState) error {
	blob := head.BinaryData[inventoryBlobKey]
	if shards := head.Data["shards"]; shards != "" && shards != "0" {
		var err error
		if blob, err = m.readV1Shards(ctx, head); err != nil {
			return err
		}
	}
	if len(blob) == 0 {
		return nil
	}
	entries, err := decodeEntries(blob)
	if err != nil {
		return err
	}
	s.inv.Entries = entries
	return nil
}

func (m *Manager) readV1Shards(ctx context.Context, head *corev1.ConfigMap) ([]byte, error) {
	n, err := strconv.Atoi(head.Data["shards"])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("shards: %q is not a count", head.Data["shards"])
	}
	gen := head.Data["generation"]
	var blob []byte
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", head.Name, gen, i)
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

// readV2 reads the buckets, from the head or from the shards it names.
func (m *Manager) readV2(ctx context.Context, head *corev1.ConfigMap, s *inventoryState) error {
	n, err := strconv.Atoi(head.Data["buckets"])
	if err != nil || n <= 0 {
		return fmt.Errorf("buckets: %q is not a count", head.Data["buckets"])
	}
	data := head.BinaryData
	if names := head.Data["shards"]; names != "" {
		data = map[string][]byte{}
		for _, name := range strings.Split(names, ",") {
			cm, err := m.kube.CoreV1().ConfigMaps(head.Namespace).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("shard %s: %w", name, err)
			}
			if want := shardName(head.Name, cm.BinaryData); name != want {
				return fmt.Errorf("shard %s: its content is that of %s", name, want)
			}
			for k, v := range cm.BinaryData {
				data[k] = v
			}
			s.shards = append(s.shards, shardRef{name: name, rv: cm.ResourceVersion})
		}
	}
	blobs := make([][]byte, n)
	reuse := n == inventoryBuckets
	var entries []InventoryEntry
	for i := range n {
		blob := data[bucketKey(i)]
		if len(blob) == 0 {
			continue
		}
		es, err := decodeBucket(blob)
		if err != nil {
			return fmt.Errorf("bucket %d: %w", i, err)
		}
		for _, e := range es {
			// Written by another bucketing: read all the same, and
			// encode every bucket at the next write.
			reuse = reuse && bucketOf(e.Object.key()) == i
		}
		blobs[i] = blob
		entries = append(entries, es...)
	}
	sortEntries(entries)
	s.inv.Entries = entries
	if reuse {
		s.buckets, s.blobs = splitBuckets(entries), blobs
	}
	return nil
}

// shardName names a shard after its content, so that a shard is never
// replaced in place: a reader that follows an older head finds the shards
// it names, or none.
func shardName(head string, data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		_, _ = h.Write([]byte(k))
		_, _ = h.Write([]byte{0})
		_, _ = h.Write(data[k])
	}
	return head + "-" + hex.EncodeToString(h.Sum(nil)[:6])
}

// writeInventory replaces the inventory read as prev. It fails, changing
// nothing, when someone else replaced it in between.
//
// Only the buckets whose entries changed since prev are encoded again
// (when prev is this Manager's last read or write). A small inventory is
// one ConfigMap, the head; a large one is cut into shards, each holding
// the buckets of one residue, named after their content: a shard whose
// buckets did not change is kept, and the shards are written before the
// head, which names them, so that a reader sees the old inventory or the
// new one, never a mix. Shards the head no longer names are removed after.
func (m *Manager) writeInventory(ctx context.Context, prev *storedInventory, inv *Inventory) error {
	s, dirty, err := m.encodeInventory(prev, inv)
	if err != nil {
		return objectErr(m.inventoryRef(), "write inventory", err)
	}
	return m.writeState(ctx, prev, s, dirty)
}

// writeOverlay writes the inventory prev holds with the entries of the
// pruned objects (deleted or Skipped) removed and those of the applied
// objects overlaid, as overlayInventory(withoutPruned(...)) makes them,
// under the commit and time of head. From the Manager's state it updates
// the buckets of those objects only (updateState): its cost follows the
// changes, not the inventory.
func (m *Manager) writeOverlay(ctx context.Context, prev *storedInventory, head Inventory, pruned pruneResults, applied []Change, commit string) error {
	if p := prev.state; p != nil && p.blobs != nil && !m.invCache.disabled() {
		s, dirty, err := updateState(p, head, pruned, applied, commit)
		if err != nil {
			return objectErr(m.inventoryRef(), "write inventory", err)
		}
		return m.writeState(ctx, prev, s, dirty)
	}
	head.Entries = overlayInventory(withoutPruned(prev.entries(), pruned), applied, commit)
	return m.writeInventory(ctx, prev, &head)
}

// writeState writes s, made from prev by encodeInventory or updateState.
func (m *Manager) writeState(ctx context.Context, prev *storedInventory, s *inventoryState, dirty []int) error {
	ref := m.inventoryRef()
	inv := &s.inv
	var err error
	if prev.resourceVersion == "" {
		if err := m.ensureInventoryNamespace(ctx); err != nil {
			return objectErr(ref, "write inventory", err)
		}
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
			"entries":   strconv.Itoa(s.count()),
			"buckets":   strconv.Itoa(inventoryBuckets),
		},
	}
	old := map[string]string{}
	if prev.state != nil {
		for _, sh := range prev.state.shards {
			old[sh.name] = sh.rv
		}
	}
	total := 0
	for _, b := range s.blobs {
		total += len(b)
	}
	if total <= maxInlineBlob {
		head.BinaryData = map[string][]byte{}
		for i, b := range s.blobs {
			if len(b) > 0 {
				head.BinaryData[bucketKey(i)] = b
			}
		}
	} else {
		groups, err := shardGroups(s.blobs, len(prev.stateShards()))
		if err != nil {
			return objectErr(ref, "write inventory", err)
		}
		var names []string
		for _, data := range groups {
			name := shardName(ref.Name, data)
			rv, ok := old[name]
			if !ok {
				if rv, err = m.writeShard(ctx, ref, name, len(groups), data); err != nil {
					return objectErr(ref, "write inventory", err)
				}
			}
			s.shards = append(s.shards, shardRef{name: name, rv: rv})
			names = append(names, name)
		}
		head.Data["shards"] = strings.Join(names, ",")
	}
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	var written *corev1.ConfigMap
	if prev.resourceVersion == "" {
		written, err = cms.Create(ctx, head, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	} else {
		written, err = cms.Update(ctx, head, metav1.UpdateOptions{FieldManager: m.opts.FieldManager})
	}
	if err != nil {
		m.invCache.set(nil)
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return objectErr(ref, "write inventory", fmt.Errorf("replaced by someone else during this apply (is another dr-syncer applying to this target?): %w", err))
		}
		return objectErr(ref, "write inventory", err)
	}
	s.rv = written.ResourceVersion
	if dirty != nil {
		prev.state.takeKeys(s, dirty)
	}
	m.invCache.set(s)
	if len(s.shards) == 0 && len(old) == 0 && prev.state != nil && !prev.state.read {
		// No shard before, none now, and this Manager knows it: nothing to
		// remove (saves a list per write).
		return nil
	}
	keep := map[string]bool{}
	for _, sh := range s.shards {
		keep[sh.name] = true
	}
	return m.removeStaleShards(ctx, ref, keep)
}

func (s *storedInventory) stateShards() []shardRef {
	if s.state == nil {
		return nil
	}
	return s.state.shards
}

// encodeInventory returns the state of inv, with its buckets encoded: those
// of prev's state whose entries are the same are taken as they are.
func (m *Manager) encodeInventory(prev *storedInventory, inv *Inventory) (s *inventoryState, dirty []int, err error) {
	s = &inventoryState{inv: *inv, buckets: splitBuckets(inv.Entries), blobs: make([][]byte, inventoryBuckets)}
	var reuse *inventoryState
	if p := prev.state; p != nil && p.blobs != nil && !m.invCache.disabled() {
		reuse = p
	}
	for i, es := range s.buckets {
		if reuse != nil && slices.Equal(es, reuse.buckets[i]) {
			s.blobs[i] = reuse.blobs[i]
			continue
		}
		dirty = append(dirty, i)
		if err := s.setBucket(i, es); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case reuse == nil:
		dirty = nil // every bucket: no key set to update
	case dirty == nil:
		dirty = []int{}
	}
	return s, dirty, nil
}

// updateState returns the state of prev's inventory with the entries of
// the pruned objects (deleted or Skipped) removed and those of the applied
// objects overlaid (overlayInventory), under the commit and time of head,
// and the buckets that changed. Only the buckets of those objects are
// copied, compared and encoded again; the others, and their encoding, are
// shared with prev. prev must have buckets.
func updateState(prev *inventoryState, head Inventory, pruned pruneResults, applied []Change, commit string) (*inventoryState, []int, error) {
	touched := map[int]bool{}
	prunedIn := map[int]pruneResults{}
	for _, r := range pruned {
		if r.action != "" {
			b := bucketOf(r.entry.Object.key())
			prunedIn[b] = append(prunedIn[b], r)
			touched[b] = true
		}
	}
	appliedIn := map[int][]Change{}
	for _, c := range applied {
		b := bucketOf(c.Object.key())
		appliedIn[b] = append(appliedIn[b], c)
		touched[b] = true
	}
	s := &inventoryState{
		inv:     Inventory{Commit: head.Commit, AppliedAt: head.AppliedAt},
		buckets: slices.Clone(prev.buckets),
		blobs:   slices.Clone(prev.blobs),
	}
	dirty := []int{}
	for _, b := range slices.Sorted(maps.Keys(touched)) {
		old := prev.buckets[b]
		es := overlayInventory(withoutPruned(old, prunedIn[b]), appliedIn[b], commit)
		if slices.Equal(es, old) {
			continue
		}
		dirty = append(dirty, b)
		if err := s.setBucket(b, es); err != nil {
			return nil, nil, err
		}
	}
	return s, dirty, nil
}

// setBucket makes es bucket i of s, encoded (no blob when it is empty).
func (s *inventoryState) setBucket(i int, es []InventoryEntry) error {
	s.buckets[i], s.blobs[i] = es, nil
	if len(es) == 0 {
		return nil
	}
	blob, err := encodeBucket(es)
	if err != nil {
		return fmt.Errorf("bucket %d: %w", i, err)
	}
	s.blobs[i] = blob
	return nil
}

func (c *inventoryCache) disabled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

// shardGroups spreads the buckets over shards, bucket i in shard i mod n,
// each shard at most maxInlineBlob: with the previous shard count when the
// buckets still fit, so that unchanged shards stay, else with the fewest
// shards at which they fit with room to grow.
func shardGroups(blobs [][]byte, prevShards int) ([]map[string][]byte, error) {
	total := 0
	for _, b := range blobs {
		total += len(b)
	}
	fits := func(n int) bool {
		size := make([]int, n)
		for i, b := range blobs {
			size[i%n] += len(b)
		}
		return slices.Max(size) <= maxInlineBlob
	}
	n := prevShards
	if n == 0 || n > len(blobs) || !fits(n) {
		n = max(1, (2*total+maxInlineBlob-1)/maxInlineBlob)
		for n <= len(blobs) && !fits(n) {
			n++
		}
		if n > len(blobs) {
			return nil, fmt.Errorf("a bucket exceeds %d bytes", maxInlineBlob)
		}
	}
	groups := make([]map[string][]byte, n)
	for j := range groups {
		groups[j] = map[string][]byte{}
	}
	for i, b := range blobs {
		if len(b) > 0 {
			groups[i%n][bucketKey(i)] = b
		}
	}
	return groups, nil
}

// writeShard creates a shard and returns its resourceVersion.
func (m *Manager) writeShard(ctx context.Context, ref ObjectRef, name string, n int, data map[string][]byte) (string, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ref.Namespace,
			Labels: map[string]string{labelManagedBy: "dr-syncer", labelInventory: ref.Name, labelGeneration: fmt.Sprintf("v2-%d", n)},
		},
		BinaryData: data,
	}
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	created, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: m.opts.FieldManager})
	if apierrors.IsAlreadyExists(err) {
		// Same content (the name is its hash): left over by an apply that
		// failed before writing the head.
		created, err = cms.Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return "", fmt.Errorf("shard %s: %w", cm.Name, err)
	}
	return created.ResourceVersion, nil
}

// removeStaleShards removes the shards of the inventory but those kept.
func (m *Manager) removeStaleShards(ctx context.Context, ref ObjectRef, keep map[string]bool) error {
	cms := m.kube.CoreV1().ConfigMaps(ref.Namespace)
	list, err := m.meta.Resource(configMapsGVR).Namespace(ref.Namespace).List(ctx, metav1.ListOptions{LabelSelector: m.shardSelector()})
	if err != nil {
		return objectErr(ref, "remove old inventory shards", err)
	}
	var errs []error
	for _, cm := range list.Items {
		if keep[cm.Name] {
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

// gzipWriters are reused: a gzip.Writer allocates about 800 KiB. The
// fastest level: encoding 30 buckets of a 10,000-entry inventory took
// 7.1 ms instead of 10.1 ms (medians of 5, BenchmarkInventoryUpdate), for
// a fifth more bytes.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// encodeBucket encodes the entries of one bucket, in the order given, as
// the document of format v1.
func encodeBucket(entries []InventoryEntry) ([]byte, error) {
	blob := groupEntries(entries)
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&buf)
	if err := json.NewEncoder(zw).Encode(blob); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decodeBucket decodes one bucket, without sorting it.
func decodeBucket(data []byte) ([]InventoryEntry, error) {
	return decodeBlob(data)
}
