package reconciler

import (
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
)

// BenchmarkApplyDelta measures ApplyDelta of 1 and 30 changed ConfigMaps
// over an applied set of BenchmarkApply's 10,000 objects (or
// DR_SYNCER_BENCH_OBJECTS), with the Manager's inventory cache and without
// it (every call reads, decodes and encodes the whole inventory, as before
// the cache). Besides ns/op it reports cpu-ms/op, the CPU time of this
// process (the client: the apiservers run in processes of their own) per
// ApplyDelta.
//
//	flock /tmp/dr-syncer-bench.lock go test -run '^$' -bench BenchmarkApplyDelta -count 5 ./reconciler/
func BenchmarkApplyDelta(b *testing.B) {
	benchServiceCIDR(b)
	set := benchSet(b)
	m := newManager(b, Options{InventoryName: "bench-" + set.id})
	if _, err := m.Apply(b.Context(), set.objects, ApplyOptions{Commit: "c0"}); err != nil {
		b.Fatal(err)
	}
	var configMaps []*unstructured.Unstructured
	for _, o := range set.objects {
		if o.GetKind() == "ConfigMap" {
			configMaps = append(configMaps, o)
		}
	}
	since, seq := "c0", 0
	for _, bc := range []struct {
		n     int
		cache bool
	}{{1, true}, {1, false}, {30, true}, {30, false}} {
		n := bc.n
		b.Run(fmt.Sprintf("changed=%d/cache=%v", n, bc.cache), func(b *testing.B) {
			m.invCache.mu.Lock()
			m.invCache.off = !bc.cache
			m.invCache.mu.Unlock()
			var cpu time.Duration
			for b.Loop() {
				seq++
				changed := make([]*unstructured.Unstructured, n)
				for i := range changed {
					o := configMaps[(seq*n+i)%len(configMaps)]
					if err := unstructured.SetNestedField(o.Object, fmt.Sprint(seq), "data", "version"); err != nil {
						b.Fatal(err)
					}
					changed[i] = o
				}
				commit := fmt.Sprintf("c%d", seq)
				before := benchfixture.CPUTime()
				res, err := m.ApplyDelta(b.Context(), set.objects, Delta{Since: since, Changed: changed}, ApplyOptions{Commit: commit})
				cpu += benchfixture.CPUTime() - before
				if err != nil {
					b.Fatal(err)
				}
				if got := res.Counts()[Configured]; got != n {
					b.Fatalf("%d objects configured, want %d: %v", got, n, res.Counts())
				}
				since = commit
			}
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
		})
	}
}

// BenchmarkInventoryUpdate measures the inventory work of an ApplyDelta
// without the requests: the entries of n changed objects of 10,000 get a
// new commit and the inventory is encoded for the write, updating the
// buckets of the changed objects of the previous state (reuse=true,
// updateState), or decoded and encoded whole (reuse=false, as before the
// cache).
func BenchmarkInventoryUpdate(b *testing.B) {
	entries := bigInventory(10_000, false)
	for _, n := range []int{1, 30} {
		for _, reuse := range []bool{true, false} {
			b.Run(fmt.Sprintf("changed=%d/reuse=%v", n, reuse), func(b *testing.B) {
				m := &Manager{}
				m.invCache.off = !reuse
				state, _, err := m.encodeInventory(&storedInventory{}, &Inventory{Entries: entries})
				if err != nil {
					b.Fatal(err)
				}
				seq := 0
				for b.Loop() {
					seq++
					prev := state.stored()
					if !reuse {
						// What a read did: decode every bucket, sort.
						var all []InventoryEntry
						for _, blob := range state.blobs {
							es, err := decodeBucket(blob)
							if err != nil {
								b.Fatal(err)
							}
							all = append(all, es...)
						}
						sortEntries(all)
						prev = &storedInventory{Inventory: Inventory{Entries: all}}
					}
					applied := make([]Change, n)
					for i := range applied {
						applied[i] = Change{Object: entries[(seq*n+i)%len(entries)].Object, Action: Configured}
					}
					commit := fmt.Sprint(seq)
					if reuse {
						if state, _, err = updateState(state, Inventory{Commit: commit}, nil, applied, commit); err != nil {
							b.Fatal(err)
						}
						continue
					}
					next := &Inventory{Commit: commit, Entries: overlayInventory(prev.entries(), applied, commit)}
					if state, _, err = m.encodeInventory(prev, next); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
