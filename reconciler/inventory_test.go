package reconciler

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// bigInventory returns n entries over 100 namespaces and five kinds, from
// 50 commits; names are random when random is set.
func bigInventory(n int, random bool) []InventoryEntry {
	kinds := []ObjectRef{
		{Version: "v1", Kind: "ConfigMap"}, {Version: "v1", Kind: "Secret"}, {Version: "v1", Kind: "Service"},
		{Group: "apps", Version: "v1", Kind: "Deployment"}, {Group: "networking.k8s.io", Version: "v1", Kind: "Ingress"},
	}
	commits := make([]string, 50)
	for i := range commits {
		b := make([]byte, 20)
		_, _ = rand.Read(b)
		commits[i] = hex.EncodeToString(b)
	}
	entries := make([]InventoryEntry, n)
	for i := range entries {
		r := kinds[i%len(kinds)]
		r.Namespace = fmt.Sprintf("team-%02d-production", i%100)
		r.Name = fmt.Sprintf("application-component-%06d", i)
		if random {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			r.Name = hex.EncodeToString(b)
		}
		entries[i] = InventoryEntry{Object: r, Commit: commits[i%len(commits)]}
	}
	sortEntries(entries)
	return entries
}

func TestInventoryEncoding(t *testing.T) {
	for _, random := range []bool{false, true} {
		entries := bigInventory(100_000, random)
		blob, err := encodeEntries(entries)
		require.NoError(t, err)
		got, err := decodeEntries(blob)
		require.NoError(t, err)
		if diff := cmp.Diff(entries, got); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
		t.Logf("100,000 entries (random names: %v): %d KiB compressed; %d shard(s) of at most %d KiB",
			random, len(blob)>>10, (len(blob)+maxInlineBlob-1)/maxInlineBlob, maxInlineBlob>>10)
		if !random {
			require.Less(t, len(blob), maxInlineBlob, "100,000 ordinary entries fit in the head ConfigMap")
		}
	}
}

// TestInventoryShards writes an inventory too large for one ConfigMap (the
// limit lowered for the test), reads it back, and replaces it.
func TestInventoryShards(t *testing.T) {
	withShardedInventory(t)
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{InventoryNamespace: ns})

	prev, err := m.readInventory(t.Context())
	require.NoError(t, err)
	require.Empty(t, prev.entries())
	at := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, random := range []bool{true, true, false} {
		inv := &Inventory{Commit: fmt.Sprintf("c%d", i), AppliedAt: at, Entries: bigInventory(5_000, random)}
		require.NoError(t, m.writeInventory(t.Context(), prev, inv))
		got, err := m.readInventory(t.Context())
		require.NoError(t, err)
		if diff := cmp.Diff(*inv, wholeInventory(got)); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
		shards, err := clusters.Target.Clientset().CoreV1().ConfigMaps(ns).List(t.Context(), metav1.ListOptions{LabelSelector: labelGeneration})
		require.NoError(t, err)
		generations := map[string]bool{}
		for _, cm := range shards.Items {
			generations[cm.Labels[labelGeneration]] = true
		}
		require.LessOrEqual(t, len(generations), 1, "old shards are removed")
		t.Logf("write %d: %d shards", i, len(shards.Items))
		prev = got
	}

	// A write from a stale read is refused.
	stale := *prev
	stale.resourceVersion = "1"
	err = m.writeInventory(t.Context(), &stale, &Inventory{Commit: "x"})
	require.ErrorContains(t, err, "replaced by someone else")
}

// withShardedInventory lowers the size of the inventory held inline to
// 16 KiB for the test, so that a few thousand entries spill into shards.
func withShardedInventory(t *testing.T) {
	old := maxInlineBlob
	maxInlineBlob = 16 << 10
	t.Cleanup(func() { maxInlineBlob = old })
}

// wholeInventory is the inventory read as s, with its entries.
func wholeInventory(s *storedInventory) Inventory {
	inv := s.Inventory
	inv.Entries = s.entries()
	return inv
}
