package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// writeInventoryV1 writes inv as dr-syncer wrote it before buckets (format
// v1): one document, inline or cut into shards of maxInlineBlob.
func writeInventoryV1(t *testing.T, m *Manager, inv *Inventory) {
	t.Helper()
	ref := m.inventoryRef()
	cms := clusters.Target.Clientset().CoreV1().ConfigMaps(ref.Namespace)
	blob, err := encodeEntries(inv.Entries)
	require.NoError(t, err)
	head := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ref.Name, Namespace: ref.Namespace,
			Labels: map[string]string{labelManagedBy: "dr-syncer", labelInventory: ref.Name}},
		Data: map[string]string{
			"format": inventoryFormatV1, "commit": inv.Commit,
			"appliedAt": inv.AppliedAt.UTC().Format(time.RFC3339Nano), "entries": strconv.Itoa(len(inv.Entries)),
		},
	}
	if len(blob) <= maxInlineBlob {
		head.BinaryData = map[string][]byte{inventoryBlobKey: blob}
	} else {
		sum := sha256.Sum256(blob)
		gen := hex.EncodeToString(sum[:6])
		n := (len(blob) + maxInlineBlob - 1) / maxInlineBlob
		for i := range n {
			_, err := cms.Create(t.Context(), &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%d", ref.Name, gen, i), Namespace: ref.Namespace,
					Labels: map[string]string{labelManagedBy: "dr-syncer", labelInventory: ref.Name, labelGeneration: gen}},
				BinaryData: map[string][]byte{inventoryBlobKey: blob[i*maxInlineBlob : min(len(blob), (i+1)*maxInlineBlob)]},
			}, metav1.CreateOptions{})
			require.NoError(t, err)
		}
		head.Data["shards"], head.Data["generation"], head.Data["sha256"] = strconv.Itoa(n), gen, hex.EncodeToString(sum[:])
	}
	_, err = cms.Create(t.Context(), head, metav1.CreateOptions{})
	require.NoError(t, err)
}

// shardConfigMaps returns the resourceVersion of each shard of m's
// inventory, by name.
func shardConfigMaps(t *testing.T, m *Manager) map[string]string {
	t.Helper()
	list, err := clusters.Target.Clientset().CoreV1().ConfigMaps(m.opts.InventoryNamespace).List(t.Context(),
		metav1.ListOptions{LabelSelector: m.shardSelector()})
	require.NoError(t, err)
	out := map[string]string{}
	for _, cm := range list.Items {
		out[cm.Name] = cm.ResourceVersion
	}
	return out
}

// An inventory written by the previous version (format v1), inline or in
// shards, is read as it was, and replaced by format v2 on the next write,
// its shards removed.
func TestInventoryReadsV1(t *testing.T) {
	withShardedInventory(t)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{100, 5_000} {
		t.Run(fmt.Sprintf("entries=%d", n), func(t *testing.T) {
			ns := clusters.Target.Namespace(t)
			m := newManager(t, Options{InventoryNamespace: ns})
			want := &Inventory{Commit: "c1", AppliedAt: at, Entries: bigInventory(n, true)}
			writeInventoryV1(t, m, want)
			if n > 100 {
				require.NotEmpty(t, shardConfigMaps(t, m), "the v1 inventory is sharded")
			}
			got, err := m.readInventory(t.Context())
			require.NoError(t, err)
			if diff := cmp.Diff(*want, wholeInventory(got)); diff != "" {
				t.Fatalf("read of v1 (-want +got):\n%s", diff)
			}

			next := &Inventory{Commit: "c2", AppliedAt: at, Entries: overlayInventory(got.entries(),
				[]Change{{Object: got.entries()[0].Object, Action: Configured}}, "c2")}
			require.NoError(t, m.writeInventory(t.Context(), got, next))
			head, err := clusters.Target.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), m.opts.InventoryName, metav1.GetOptions{})
			require.NoError(t, err)
			require.Equal(t, inventoryFormat, head.Data["format"])
			require.NotContains(t, head.BinaryData, inventoryBlobKey)
			for name := range shardConfigMaps(t, m) {
				require.Contains(t, head.Data["shards"], name, "v1 shards are removed")
			}
			fresh := newManager(t, Options{InventoryNamespace: ns, InventoryName: m.opts.InventoryName})
			again, err := fresh.Inventory(t.Context())
			require.NoError(t, err)
			if diff := cmp.Diff(*next, *again); diff != "" {
				t.Fatalf("read of v2 (-want +got):\n%s", diff)
			}
		})
	}
}

// A change of one entry re-encodes one bucket and, in a sharded inventory,
// writes one shard: the others keep their names and resourceVersions.
func TestInventoryWritesChangedShards(t *testing.T) {
	withShardedInventory(t)
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for _, n := range []int{100, 5_000} {
		t.Run(fmt.Sprintf("entries=%d", n), func(t *testing.T) {
			ns := clusters.Target.Namespace(t)
			m := newManager(t, Options{InventoryNamespace: ns})
			cms := clusters.Target.Clientset().CoreV1().ConfigMaps(ns)
			prev, err := m.readInventory(t.Context())
			require.NoError(t, err)
			inv := &Inventory{Commit: "c1", AppliedAt: at, Entries: bigInventory(n, true)}
			require.NoError(t, m.writeInventory(t.Context(), prev, inv))
			headBefore, err := cms.Get(t.Context(), m.opts.InventoryName, metav1.GetOptions{})
			require.NoError(t, err)
			shardsBefore := shardConfigMaps(t, m)
			if n > 100 {
				require.Greater(t, len(shardsBefore), 1)
			} else {
				require.Empty(t, shardsBefore)
			}

			for i := range 3 {
				prev, err = m.readInventory(t.Context())
				require.NoError(t, err)
				changed := prev.entries()[rand.IntN(prev.count())].Object
				next := &Inventory{Commit: fmt.Sprintf("c%d", i+2), AppliedAt: at,
					Entries: overlayInventory(prev.entries(), []Change{{Object: changed, Action: Configured}}, fmt.Sprintf("c%d", i+2))}
				require.NoError(t, m.writeInventory(t.Context(), prev, next))

				head, err := cms.Get(t.Context(), m.opts.InventoryName, metav1.GetOptions{})
				require.NoError(t, err)
				shards := shardConfigMaps(t, m)
				if n <= 100 {
					var differ []string
					for k, v := range head.BinaryData {
						if string(headBefore.BinaryData[k]) != string(v) {
							differ = append(differ, k)
						}
					}
					require.Equal(t, []string{bucketKey(bucketOf(changed.key()))}, differ, "only the bucket of %s changes", changed)
				} else {
					require.Len(t, shards, len(shardsBefore), "as many shards as before")
					var kept int
					for name, rv := range shards {
						if shardsBefore[name] == rv {
							kept++
						}
					}
					require.Equal(t, len(shardsBefore)-1, kept, "one shard is new, the others are kept as they were")
				}
				fresh := newManager(t, Options{InventoryNamespace: ns, InventoryName: m.opts.InventoryName})
				got, err := fresh.Inventory(t.Context())
				require.NoError(t, err)
				if diff := cmp.Diff(*next, *got); diff != "" {
					t.Fatalf("read by another Manager (-want +got):\n%s", diff)
				}
				headBefore, shardsBefore = head, shards
			}

			// A shard changed in place (its resourceVersion moves, the head's
			// does not) is not taken from the cache: the read finds it.
			_, err = m.readInventory(t.Context())
			require.NoError(t, err)
			for name := range shardsBefore {
				cm, err := cms.Get(t.Context(), name, metav1.GetOptions{})
				require.NoError(t, err)
				for k := range cm.BinaryData {
					delete(cm.BinaryData, k)
					break
				}
				_, err = cms.Update(t.Context(), cm, metav1.UpdateOptions{})
				require.NoError(t, err)
				break
			}
			if n > 100 {
				_, err = m.readInventory(t.Context())
				require.ErrorContains(t, err, "its content is that of")
			}
		})
	}
}

// overlayInventory is nextInventory of an apply that keeps every entry.
func TestOverlayInventory(t *testing.T) {
	prev := bigInventory(2_000, true)
	var applied []Change
	for i, e := range prev[:50] {
		applied = append(applied, Change{Object: e.Object, Action: []Action{Unchanged, Configured, Recreated}[i%3]})
	}
	for _, e := range bigInventory(20, true) {
		applied = append(applied, Change{Object: e.Object, Action: Created})
	}
	want := nextInventory(prev, applied, nil, "c9", false)
	if diff := cmp.Diff(want, overlayInventory(prev, applied, "c9")); diff != "" {
		t.Fatalf("(-nextInventory +overlayInventory):\n%s", diff)
	}
}

// Two Managers of the same inventory, as after a change of leader or
// beside the CLI: each sees what the other wrote, and a cached inventory
// never decides a prune.
func TestInventoryOtherWriter(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	cm := func(name string) *unstructured.Unstructured {
		return decode(t, `{apiVersion: v1, kind: ConfigMap, metadata: {name: `+name+`, namespace: `+ns+`}, data: {a: "1"}}`)[0]
	}
	x, y, z, w := cm("cm-x"), cm("cm-y"), cm("cm-z"), cm("cm-w")
	opts := Options{MassPruneRatio: 1, InventoryName: "inventory-other-writer-" + ns}
	a := newManager(t, opts)
	b := newManager(t, opts)

	_, err := a.Apply(t.Context(), []*unstructured.Unstructured{x, y}, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	// b writes z, which a's cached inventory does not hold.
	_, err = b.Apply(t.Context(), []*unstructured.Unstructured{x, y, z}, ApplyOptions{Commit: "c2"})
	require.NoError(t, err)

	// a's cache says c1: the delta from c1 must be refused.
	_, err = a.ApplyDelta(t.Context(), []*unstructured.Unstructured{x, y}, Delta{Since: "c1"}, ApplyOptions{Commit: "c3"})
	require.True(t, errors.Is(err, ErrNotIncremental), "%v", err)
	commit, entries := inventoryCommits(t, a)
	require.Equal(t, "c2", commit)
	require.Contains(t, entries, refOf(z).String())

	// a prunes what b applied.
	res, err := a.ApplyDelta(t.Context(), []*unstructured.Unstructured{x}, Delta{Since: "c2"}, ApplyOptions{Commit: "c3"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{refOf(y).String(): Deleted, refOf(z).String(): Deleted}, actions(res))
	require.Nil(t, getLive(t, a, refOf(z)))

	// b's cache holds y and z, deleted by a: b neither prunes them again
	// nor keeps them, and adds w.
	res, err = b.ApplyDelta(t.Context(), []*unstructured.Unstructured{x, w}, Delta{Since: "c3", Changed: []*unstructured.Unstructured{w}}, ApplyOptions{Commit: "c4"})
	require.NoError(t, err)
	require.Equal(t, map[string]Action{refOf(w).String(): Created}, actions(res))
	for _, m := range []*Manager{a, b, newManager(t, opts)} {
		commit, entries = inventoryCommits(t, m)
		require.Equal(t, "c4", commit)
		require.Equal(t, map[string]string{refOf(x).String(): "c1", refOf(w).String(): "c4"}, entries)
	}

	// A write from a's stale cache is refused, and a reads again after it.
	prev, err := a.readInventory(t.Context())
	require.NoError(t, err)
	_, err = b.Apply(t.Context(), []*unstructured.Unstructured{x, w, y}, ApplyOptions{Commit: "c5"})
	require.NoError(t, err)
	err = a.writeInventory(t.Context(), prev, &Inventory{Commit: "stale"})
	require.ErrorContains(t, err, "replaced by someone else")
	commit, entries = inventoryCommits(t, a)
	require.Equal(t, "c5", commit)
	require.Len(t, entries, 3)
}

// Spread over buckets, 100,000 ordinary entries still fit in the head.
func TestInventoryBucketsFit(t *testing.T) {
	entries := bigInventory(100_000, false)
	s, _, err := (&Manager{}).encodeInventory(&storedInventory{}, &Inventory{Entries: entries})
	require.NoError(t, err)
	total := 0
	var got []InventoryEntry
	for i, b := range s.blobs {
		total += len(b)
		es, err := decodeBucket(b)
		require.NoError(t, err)
		for _, e := range es {
			require.Equal(t, i, bucketOf(e.Object.key()))
		}
		got = append(got, es...)
	}
	sortEntries(got)
	if diff := cmp.Diff(entries, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	t.Logf("100,000 entries in %d buckets: %d KiB compressed", inventoryBuckets, total>>10)
	require.Less(t, total, maxInlineBlob, "100,000 ordinary entries fit in the head ConfigMap")
}

// bucketOf is FNV-1a of the key's fields, each followed by a zero byte: a
// reader in another language must find the same buckets.
func TestBucketOf(t *testing.T) {
	for _, k := range []objKey{{}, {group: "apps", kind: "Deployment", namespace: "shop", name: "web"}, {kind: "Namespace", name: "shop"}} {
		h := fnv.New32a()
		for _, s := range []string{k.group, k.kind, k.namespace, k.name} {
			_, _ = h.Write(append([]byte(s), 0))
		}
		require.Equal(t, int(h.Sum32()%inventoryBuckets), bucketOf(k), "%+v", k)
	}
}

// A write updates the key set of the previous state for the buckets that
// changed: it is the set of the new entries.
func TestInventoryKeysCarriedOver(t *testing.T) {
	m := &Manager{}
	entries := bigInventory(3_000, true)
	prev, _, err := m.encodeInventory(&storedInventory{}, &Inventory{Entries: entries})
	require.NoError(t, err)
	require.True(t, keySetHas(prev, entries[0].Object.key()))
	added := bigInventory(5, true)
	var applied []Change
	for _, e := range added {
		applied = append(applied, Change{Object: e.Object, Action: Created})
	}
	applied = append(applied, Change{Object: entries[7].Object, Action: Configured})
	kept := slices.Delete(slices.Clone(entries), 100, 103)
	next, dirty, err := m.encodeInventory(prev.stored(), &Inventory{Entries: overlayInventory(kept, applied, "c2")})
	require.NoError(t, err)
	require.NotEmpty(t, dirty)
	require.LessOrEqual(t, len(dirty), 9)
	prev.takeKeys(next, dirty)
	want := map[objKey]entryPos{}
	for b, es := range next.buckets {
		for i, e := range es {
			want[e.Object.key()] = entryPos{bucket: int32(b), index: int32(i)}
		}
	}
	require.Equal(t, want, next.keys)
	require.False(t, keySetHas(next, entries[101].Object.key()))
	require.True(t, keySetHas(next, added[0].Object.key()))
	require.True(t, keySetHas(prev, entries[101].Object.key()), "the previous state builds its set again")
}

// updateState, step after step, stays equal to the state encoded from
// scratch of overlayInventory(withoutPruned(...)): the same buckets, blobs,
// count, entries and, carried over by takeKeys, key set. A step that fails
// (its state is made but not written) leaves the previous state, whose key
// set is built again, to the next step.
func TestUpdateStateMatchesRebuild(t *testing.T) {
	all := bigInventory(2_000, true)
	initial, rest := all[:1_500], all[1_500:]
	changes := func(es []InventoryEntry, a Action) []Change {
		var out []Change
		for _, e := range es {
			out = append(out, Change{Object: e.Object, Action: a})
		}
		return out
	}
	prunes := func(es []InventoryEntry, a Action) pruneResults {
		var out pruneResults
		for _, e := range es {
			out = append(out, &pruneResult{entry: e, action: a})
		}
		return out
	}
	moved := initial[3].Object
	moved.Version = "v2" // the same object at another version
	for _, steps := range [][]struct {
		name    string
		pruned  pruneResults
		applied []Change
		fail    bool
	}{{
		{name: "nothing"},
		{name: "change one", applied: changes(initial[10:11], Configured)},
		{name: "change thirty", applied: changes(initial[20:50], Configured)},
		{name: "unchanged keeps its commit", applied: changes(initial[60:70], Unchanged)},
		{name: "add", applied: changes(rest[:40], Created)},
		{name: "failed", applied: changes(rest[40:80], Created), fail: true},
		{name: "add after a failure", applied: changes(rest[80:90], Created)},
		{name: "prune", pruned: prunes(initial[100:130], Deleted)},
		{name: "prune skipped, delete failed", pruned: append(prunes(initial[200:205], Skipped), prunes(initial[300:305], "")...)},
		{name: "prune and add", pruned: prunes(initial[400:420], Deleted), applied: changes(rest[100:120], Created)},
		{name: "new version", applied: []Change{{Object: moved, Action: Configured}}},
		{name: "prune every entry of a bucket", pruned: prunes(initial[500:1_500], Deleted)},
		{name: "pruned and applied again", pruned: prunes(rest[:10], Deleted), applied: changes(rest[:10], Unchanged)},
	}} {
		m := &Manager{}
		state, _, err := m.encodeInventory(&storedInventory{}, &Inventory{Entries: initial})
		require.NoError(t, err)
		for i, st := range steps {
			commit := fmt.Sprintf("c%d", i)
			prev := state.stored()
			require.True(t, keySetHas(prev.state, initial[0].Object.key()), "the key set is built")
			want, _, err := m.encodeInventory(&storedInventory{}, &Inventory{Commit: commit,
				Entries: overlayInventory(withoutPruned(prev.entries(), st.pruned), st.applied, commit)})
			require.NoError(t, err, st.name)
			got, dirty, err := updateState(state, Inventory{Commit: commit}, st.pruned, st.applied, commit)
			require.NoError(t, err, st.name)
			if diff := cmp.Diff(want.buckets, got.buckets, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s: buckets (-rebuilt +updated):\n%s", st.name, diff)
			}
			require.Equal(t, want.blobs, got.blobs, st.name)
			require.Equal(t, want.count(), got.count(), st.name)
			require.Equal(t, want.inv.Entries, got.entries(), st.name)
			for b := range inventoryBuckets {
				require.Equal(t, slices.Contains(dirty, b), !slices.Equal(state.buckets[b], got.buckets[b]), "%s: bucket %d dirty", st.name, b)
			}
			if st.fail {
				continue
			}
			state.takeKeys(got, dirty)
			fresh := &inventoryState{buckets: got.buckets}
			fresh.withKeys(func(map[objKey]entryPos) {})
			got.withKeys(func(keys map[objKey]entryPos) {
				require.Equal(t, fresh.keys, keys, "%s: key set", st.name)
			})
			state = got
		}
	}
}

// keySetHas reports whether the key set of s has k.
func keySetHas(s *inventoryState, k objKey) bool {
	found := false
	s.withKeys(func(keys map[objKey]entryPos) { _, found = keys[k] })
	return found
}
