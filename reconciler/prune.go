package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
)

// pruneCandidates returns the entries of the inventory whose object is not
// in the desired set, in prune order: the reverse of the apply order
// (webhooks and workloads first, Namespaces and CRDs last).
func pruneCandidates(inventory []InventoryEntry, desired map[objKey]bool) []InventoryEntry {
	var out []InventoryEntry
	for _, e := range inventory {
		if !desired[e.Object.key()] {
			out = append(out, e)
		}
	}
	sortEntries(out)
	slices.Reverse(out)
	return out
}

// massPrune reports whether pruning n of the total objects of the inventory
// is more than ratio of it.
func massPrune(n, total int, ratio float64) bool {
	return total > 0 && float64(n) > ratio*float64(total)
}

// pruneResult is what happened to one prune candidate.
type pruneResult struct {
	entry  InventoryEntry
	action Action // Deleted or Skipped; empty when the delete failed
	reason string // why it was skipped
	live   *unstructured.Unstructured
	err    error
}

type pruneResults []*pruneResult

func (rs pruneResults) changes() []Change {
	var out []Change
	for _, r := range rs {
		if r.action != "" {
			out = append(out, Change{Object: r.entry.Object, Action: r.action})
		}
	}
	return out
}

// failed returns the objects whose delete failed: they stay in the
// inventory.
func (rs pruneResults) failed() []ObjectRef {
	var out []ObjectRef
	for _, r := range rs {
		if r.err != nil {
			out = append(out, r.entry.Object)
		}
	}
	return out
}

func (rs pruneResults) err() error {
	var errs []error
	for _, r := range rs {
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

// prune deletes the candidates (which are in prune order), stage after
// stage, the objects of a stage in parallel, with propagation Background.
// It never deletes an object that is not dr-syncer's any more (no Apply
// entry of its field manager, or replaced since: another UID), one whose
// prune is disabled, nor a Namespace or CRD that would take with it objects
// that are not being pruned. With dryRun the deletes are server-side dry
// runs.
func (m *Manager) prune(ctx context.Context, candidates []InventoryEntry, dryRun bool) pruneResults {
	results := make(pruneResults, len(candidates))
	for i, e := range candidates {
		results[i] = &pruneResult{entry: e}
	}
	g := &pruneGuard{deleted: map[objKey]bool{}}
	for _, e := range candidates {
		if gk := e.Object.GroupKind(); gk == namespaceGK || gk == crdGK {
			// A Manager may be long-lived: what a Namespace may hold is
			// asked of discovery afresh, kinds served since included.
			m.mapper.Reset()
			break
		}
	}
	for start := 0; start < len(results); {
		s := stageOfRef(results[start].entry.Object)
		end := start
		for end < len(results) && stageOfRef(results[end].entry.Object) == s {
			end++
		}
		batch := results[start:end]
		parallel(ctx, m.opts.Workers, len(batch), func(ctx context.Context, i int) {
			m.pruneOne(ctx, batch[i], g, dryRun)
		})
		for _, r := range batch {
			if r.action == "" && r.err == nil { // not reached: ctx done
				r.err = objectErr(r.entry.Object, "prune", ctx.Err())
			}
		}
		start = end
	}
	return results
}

func stageOfRef(r ObjectRef) stage { return stageOf(r.GroupKind(), r.Namespace != "") }

// pruneGuard remembers what this prune deleted, for the Namespaces and CRDs
// that come last.
type pruneGuard struct {
	mu      sync.Mutex
	deleted map[objKey]bool
}

func (g *pruneGuard) markDeleted(k objKey) {
	g.mu.Lock()
	g.deleted[k] = true
	g.mu.Unlock()
}

func (g *pruneGuard) isDeleted(k objKey) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.deleted[k]
}

func (m *Manager) pruneOne(ctx context.Context, r *pruneResult, g *pruneGuard, dryRun bool) {
	ref := r.entry.Object
	gone := func() {
		r.action = Deleted
		g.markDeleted(ref.key())
	}
	skip := func(reason string) {
		r.action, r.reason = Skipped, reason
		logr.FromContextOrDiscard(ctx).Info("kept, no longer in the set", "object", ref.String(), "reason", reason, "dryRun", dryRun)
	}
	mapping, err := m.mapper.RESTMapping(ref.GroupKind(), ref.Version)
	if meta.IsNoMatchError(err) {
		mapping, err = m.mapper.RESTMapping(ref.GroupKind())
	}
	if meta.IsNoMatchError(err) {
		gone() // the kind is not served: no object of it can exist
		return
	}
	if err != nil {
		r.err = objectErr(ref, "prune", err)
		return
	}
	ri := m.dyn.Resource(mapping.Resource).Namespace(ref.Namespace)
	live, err := ri.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		gone()
		return
	}
	if err != nil {
		r.err = objectErr(ref, "prune", err)
		return
	}
	r.live = live
	switch {
	case live.GetAnnotations()[PruneAnnotation] == PruneDisabled:
		skip("annotation " + PruneAnnotation + ": " + PruneDisabled)
		return
	case !ownedBy(live.Object, m.opts.FieldManager):
		skip("not applied by " + m.opts.FieldManager + " (replaced by someone else)")
		return
	}
	var holding string
	switch ref.GroupKind() {
	case namespaceGK:
		holding, err = m.foreignInNamespace(ctx, ref.Name, g)
	case crdGK:
		holding, err = m.foreignCustomObject(ctx, live, g)
	}
	if err != nil {
		r.err = objectErr(ref, "prune", err)
		return
	}
	if holding != "" {
		skip("it holds " + holding + ", which is not being pruned")
		return
	}
	uid := live.GetUID()
	policy := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	err = ri.Delete(ctx, ref.Name, opts)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		gone()
	case apierrors.IsConflict(err):
		skip("replaced by someone else during the prune")
	default:
		r.err = objectErr(ref, "delete", err)
	}
}

// Objects that the cluster itself puts in every namespace, or makes for
// other objects: they do not keep a Namespace from being pruned.
var (
	systemKinds = map[schema.GroupKind]bool{
		{Kind: "Event"}:                                    true,
		{Group: "events.k8s.io", Kind: "Event"}:            true,
		{Kind: "Endpoints"}:                                true,
		{Group: "discovery.k8s.io", Kind: "EndpointSlice"}: true,
	}
	systemObjects = map[schema.GroupKind]string{
		{Kind: "ServiceAccount"}: "default",
		{Kind: "ConfigMap"}:      "kube-root-ca.crt",
	}
)

// foreignInNamespace returns an object of the namespace that deleting it
// would take along and that is not being pruned (empty if there is none):
// anything not deleted by this prune, except what the cluster makes itself
// (objects with an owner, Events, Endpoints, the default ServiceAccount, ...).
func (m *Manager) foreignInNamespace(ctx context.Context, namespace string, g *pruneGuard) (string, error) {
	lists, err := discovery.ServerPreferredNamespacedResources(m.disc)
	if err != nil {
		return "", fmt.Errorf("discover the kinds a namespace may hold: %w", err)
	}
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, res := range list.APIResources {
			if !slices.Contains(res.Verbs, "list") || !slices.Contains(res.Verbs, "delete") {
				continue
			}
			gk := schema.GroupKind{Group: gv.Group, Kind: res.Kind}
			if systemKinds[gk] {
				continue
			}
			found, err := m.firstForeign(ctx, gv.WithResource(res.Name), namespace, func(md metav1.ObjectMeta) bool {
				return len(md.OwnerReferences) > 0 || md.DeletionTimestamp != nil || systemObjects[gk] == md.Name ||
					g.isDeleted(objKey{group: gk.Group, kind: gk.Kind, namespace: md.Namespace, name: md.Name})
			})
			if err != nil {
				return "", err
			}
			if found != "" {
				return ObjectRef{Group: gk.Group, Kind: gk.Kind, Namespace: namespace, Name: found}.String(), nil
			}
		}
	}
	return "", nil
}

// foreignCustomObject returns a custom object of the CRD that is not being
// pruned (empty if there is none).
func (m *Manager) foreignCustomObject(ctx context.Context, crd *unstructured.Unstructured, g *pruneGuard) (string, error) {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "kind")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	version := ""
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		if vm["served"] == true {
			version, _ = vm["name"].(string)
			break
		}
	}
	if version == "" {
		return "", nil // nothing served: nothing to lose
	}
	gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: plural}
	var ns string
	found, err := m.firstForeign(ctx, gvr, "", func(md metav1.ObjectMeta) bool {
		ns = md.Namespace
		return md.DeletionTimestamp != nil || g.isDeleted(objKey{group: group, kind: kind, namespace: md.Namespace, name: md.Name})
	})
	if err != nil || found == "" {
		return "", err
	}
	return ObjectRef{Group: group, Kind: kind, Namespace: ns, Name: found}.String(), nil
}

// firstForeign lists the metadata of gvr in namespace, page by page, and
// returns the name of the first object that ours does not accept.
func (m *Manager) firstForeign(ctx context.Context, gvr schema.GroupVersionResource, namespace string, ours func(metav1.ObjectMeta) bool) (string, error) {
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		list, err := m.meta.Resource(gvr).Namespace(namespace).List(ctx, opts)
		if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("list %s: %w", gvr, err)
		}
		for _, o := range list.Items {
			if !ours(o.ObjectMeta) {
				return o.Name, nil
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return "", nil
		}
	}
}
