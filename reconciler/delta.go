package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ErrNotIncremental is returned (errors.Is) by ApplyDelta when the target's
// inventory does not record the complete apply of Delta.Since: the changes
// cannot be applied on their own, and nothing was written. Apply the whole
// set instead.
var ErrNotIncremental = errors.New("the target's inventory does not hold the commit the changes start from")

// Delta says how a desired set differs from the set of the commit the
// target holds.
type Delta struct {
	// Since is the commit whose complete apply the inventory must record
	// (Inventory.Commit).
	Since string
	// Changed are the objects of the set that are new, or whose desired
	// content differs from the set of Since. The other objects of the set
	// are taken as in place on the target.
	Changed []*unstructured.Unstructured
}

// ApplyDelta is Apply for a set that differs from the set of commit d.Since
// — which the target's inventory must record, or it returns
// ErrNotIncremental — only by d.Changed. objects is the complete desired
// set; only the changed objects, and the objects of the set the inventory
// does not hold, are compared with their live copies, validated by a dry
// run (all of them before anything is written, as Apply does) and applied.
// Objects of the inventory that are not in the set are pruned as Apply
// prunes them, and the inventory is updated: entries of written objects
// get the new commit, pruned ones leave, the others stay as they were.
//
// Its cost follows the changes, not the set: no list of the live objects,
// no dry run of the objects that did not change. The price is that drift —
// a live object changed on the target behind dr-syncer's back — of an
// object the commit did not change is not seen: Apply of the whole set
// corrects it. The Result holds the changed objects and the prune.
func (m *Manager) ApplyDelta(ctx context.Context, objects []*unstructured.Unstructured, d Delta, opts ApplyOptions) (*Result, error) {
	log := logr.FromContextOrDiscard(ctx).WithValues("commit", opts.Commit, "since", d.Since)
	ctx = logr.NewContext(ctx, log)
	prev, err := m.readInventory(ctx)
	if err != nil {
		return nil, err
	}
	if d.Since == "" || prev.Commit != d.Since {
		return nil, fmt.Errorf("%w: it holds %q, the changes start from %q", ErrNotIncremental, prev.Commit, d.Since)
	}
	scan, err := m.scanSet(prev, objects, d.Changed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotIncremental, err)
	}
	changed := map[objKey]bool{}
	var todo []*unstructured.Unstructured
	for _, o := range d.Changed {
		if o == nil {
			continue
		}
		k := scan.changedKeys[o]
		if !changed[k] {
			changed[k] = true
			todo = append(todo, o)
		}
	}
	for i, o := range scan.new {
		// An object the inventory does not hold (an apply that stopped
		// half-way, an inventory edited by hand) is applied too.
		if k := scan.newKeys[i]; !changed[k] {
			changed[k] = true
			todo = append(todo, o)
		}
	}
	p, err := m.plan(ctx, todo, opts.Expand)
	if err != nil {
		return nil, err
	}
	log.V(1).Info("incremental apply", "objects", len(objects), "changed", len(todo))
	return m.apply(ctx, p, prev, scan.pruneCandidates(prev), opts, true)
}

// setScan is what ApplyDelta learns of the set from one pass over it.
type setScan struct {
	// changedKeys are the keys of the changed objects, by pointer; the
	// zero key for those that are not objects of the set.
	changedKeys map[*unstructured.Unstructured]objKey
	// new are the objects of the set the inventory does not hold, in the
	// order of the set, and newKeys their keys.
	new     []*unstructured.Unstructured
	newKeys []objKey
	// held marks the entries of the inventory that objects of the set
	// hold, numbered as inventoryState.positions numbers them, and
	// heldCount counts them.
	held      []uint64
	heldCount int
}

// scanSet finds the keys of the changed objects, the objects of the set the
// inventory does not hold, and the entries it holds. Its allocations follow
// the changed and new objects (and one bit per entry), not the set: it
// looks the keys up in the inventory's key set and builds no map of them.
func (m *Manager) scanSet(prev *storedInventory, objects, changed []*unstructured.Unstructured) (*setScan, error) {
	sc := &setScan{changedKeys: make(map[*unstructured.Unstructured]objKey, len(changed))}
	for _, o := range changed {
		if o != nil {
			sc.changedKeys[o] = objKey{}
		}
	}
	scope := map[schema.GroupVersionKind]bool{} // namespaced
	visit := func(lookup func(objKey) (int, bool)) error {
		for _, o := range objects {
			if o == nil {
				continue
			}
			k, err := m.keyOf(o, scope)
			if err != nil {
				return err
			}
			if _, ok := sc.changedKeys[o]; ok {
				sc.changedKeys[o] = k
			}
			i, ok := lookup(k)
			if !ok {
				sc.new = append(sc.new, o)
				sc.newKeys = append(sc.newKeys, k)
				continue
			}
			if w, bit := i/64, uint64(1)<<(i%64); sc.held[w]&bit == 0 {
				sc.held[w] |= bit
				sc.heldCount++
			}
		}
		return nil
	}
	var err error
	if s := prev.state; s != nil {
		s.withKeys(func(keys map[objKey]entryPos) {
			start, total := s.positions()
			sc.held = make([]uint64, (total+63)/64)
			err = visit(func(k objKey) (int, bool) {
				p, ok := keys[k]
				return start[p.bucket] + int(p.index), ok
			})
		})
		return sc, err
	}
	// No state (the inventory is empty, or a test made it): the entries.
	index := make(map[objKey]int, len(prev.Entries))
	for i, e := range prev.Entries {
		index[e.Object.key()] = i
	}
	sc.held = make([]uint64, (len(prev.Entries)+63)/64)
	err = visit(func(k objKey) (int, bool) {
		i, ok := index[k]
		return i, ok
	})
	return sc, err
}

// pruneCandidates is pruneCandidates of prev's entries and the set: the
// entries no object of the set holds, in prune order. It looks at the
// entries only when there are some.
func (sc *setScan) pruneCandidates(prev *storedInventory) []InventoryEntry {
	if sc.heldCount == prev.count() {
		return nil
	}
	var out []InventoryEntry
	add := func(i int, e InventoryEntry) {
		if sc.held[i/64]&(uint64(1)<<(i%64)) == 0 {
			out = append(out, e)
		}
	}
	if prev.state != nil {
		prev.state.each(add)
	} else {
		for i, e := range prev.Entries {
			add(i, e)
		}
	}
	sortEntries(out)
	slices.Reverse(out)
	return out
}

// keyOf returns the identity of an object of the set as the inventory
// records it: cluster-scoped objects without a namespace. scope caches
// whether each kind is namespaced.
func (m *Manager) keyOf(o *unstructured.Unstructured, scope map[schema.GroupVersionKind]bool) (objKey, error) {
	ref := refOf(o)
	if ref.Namespace != "" {
		gvk := o.GroupVersionKind()
		namespaced, ok := scope[gvk]
		if !ok {
			rm, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if meta.IsNoMatchError(err) {
				// The Manager may be long-lived: a kind served since
				// the last discovery is found after a reset.
				m.mapper.Reset()
				rm, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			}
			switch {
			case meta.IsNoMatchError(err):
				// A kind that a CRD of the set defines: as the object
				// says until it is served.
				namespaced = true
			case err != nil:
				return objKey{}, fmt.Errorf("%s: discovery: %w", gvk, err)
			default:
				namespaced = rm.Scope.Name() == meta.RESTScopeNameNamespace
			}
			scope[gvk] = namespaced
		}
		if !namespaced {
			ref.Namespace = ""
		}
	}
	return ref.key(), nil
}

// withoutPruned returns the entries but those the prune deleted or
// dropped (Skipped); entries whose delete failed stay.
func withoutPruned(entries []InventoryEntry, pruned pruneResults) []InventoryEntry {
	gone := map[objKey]bool{}
	for _, r := range pruned {
		if r.action != "" {
			gone[r.entry.Object.key()] = true
		}
	}
	if len(gone) == 0 {
		return entries
	}
	out := make([]InventoryEntry, 0, len(entries))
	for _, e := range entries {
		if !gone[e.Object.key()] {
			out = append(out, e)
		}
	}
	return out
}
