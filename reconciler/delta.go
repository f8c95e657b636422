package reconciler

import (
	"context"
	"errors"
	"fmt"

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
	keys, err := m.setKeys(objects)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotIncremental, err)
	}
	changed := map[objKey]bool{}
	var todo []*unstructured.Unstructured
	for _, o := range d.Changed {
		if o == nil {
			continue
		}
		k := keys[o]
		if !changed[k] {
			changed[k] = true
			todo = append(todo, o)
		}
	}
	for _, o := range objects {
		// An object the inventory does not hold (an apply that stopped
		// half-way, an inventory edited by hand) is applied too.
		if o == nil || changed[keys[o]] || prev.holds(keys[o]) {
			continue
		}
		changed[keys[o]] = true
		todo = append(todo, o)
	}
	set := make(map[objKey]bool, len(keys))
	for _, k := range keys {
		set[k] = true
	}
	p, err := m.plan(ctx, todo, opts.Expand)
	if err != nil {
		return nil, err
	}
	log.V(1).Info("incremental apply", "objects", len(objects), "changed", len(todo))
	return m.apply(ctx, p, prev, pruneCandidates(prev.Entries, set), opts, true)
}

// setKeys returns the identity of each object of the set as the inventory
// records it: cluster-scoped objects without a namespace.
func (m *Manager) setKeys(objects []*unstructured.Unstructured) (map[*unstructured.Unstructured]objKey, error) {
	scope := map[schema.GroupVersionKind]bool{} // namespaced
	keys := make(map[*unstructured.Unstructured]objKey, len(objects))
	for _, o := range objects {
		if o == nil {
			continue
		}
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
					return nil, fmt.Errorf("%s: discovery: %w", gvk, err)
				default:
					namespaced = rm.Scope.Name() == meta.RESTScopeNameNamespace
				}
				scope[gvk] = namespaced
			}
			if !namespaced {
				ref.Namespace = ""
			}
		}
		keys[o] = ref.key()
	}
	return keys, nil
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
