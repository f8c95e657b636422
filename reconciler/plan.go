package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// item is one object of the desired set on its way to the target.
type item struct {
	obj *unstructured.Unstructured // the desired object (a copy when it had to be changed)
	// expand, when set, gives the full object of obj, a stand-in holding
	// its identity only (ApplyOptions.Expand): read it through content.
	expand     func(*unstructured.Unstructured) (*unstructured.Unstructured, error)
	ref        ObjectRef
	gvr        schema.GroupVersionResource
	namespaced bool
	stage      stage
	// deferred: its kind is defined by a CRD of the set, or its namespace
	// by a Namespace of the set, and it does not exist yet: it can be
	// neither listed nor dry-run before those are applied.
	deferred bool
	// crdChanging: its kind is defined by a CRD of the set that the apply
	// creates or changes, so the target validates it against a schema
	// that is about to change.
	crdChanging bool
	definedBy   *item // the CRD item of the set defining its kind

	body []byte // the JSON of obj, as sent
	// validated: a strict dry run accepted body.
	validated bool
	state     itemState
	live      *unstructured.Unstructured // kept when state is stateCheck (and for CRDs)
	dry       *unstructured.Unstructured // the dry-run result, kept for Diff
	action    Action
	done      bool // in place on the target after this run: written or unchanged
}

type itemState int

const (
	stateUnknown   itemState = iota // not looked at yet
	stateCreate                     // no live object
	stateCheck                      // the live object may differ: a dry run decides
	stateUnchanged                  // the live object already holds the desired state
	stateApply                      // the dry run says the apply changes it
	stateRecreate                   // a field that cannot change does; the policy allows recreating
)

// content returns the desired object in full: obj, or what expand gives
// for a stand-in (a fresh object, which the caller drops when done).
func (it *item) content() (*unstructured.Unstructured, error) {
	if it.expand == nil {
		return it.obj, nil
	}
	o, err := it.expand(it.obj)
	if err != nil {
		return nil, objectErr(it.ref, "read the desired object", err)
	}
	return o, nil
}

// plan is a desired set, mapped to resources and put in stage order.
type plan struct {
	items   []*item
	byKey   map[objKey]*item
	invalid []error // objects refused before asking the server
}

// crdKind is a kind defined by a CRD of the set.
type crdKind struct {
	plural     string
	namespaced bool
	versions   map[string]bool // served
}

// plan maps each object to its resource, finds what is deferred and puts
// the set in stage order. Objects that cannot be applied at all (no name, a
// kind the target does not serve, a namespace that does not exist, twice in
// the set) go to plan.invalid. With expand, objects may be stand-ins
// (ApplyOptions.Expand): the items keep them, but for the few objects plan
// reads or changes (CustomResourceDefinitions, a cluster-scoped object
// given a namespace), which it keeps in full.
func (m *Manager) plan(ctx context.Context, objects []*unstructured.Unstructured, expand func(*unstructured.Unstructured) (*unstructured.Unstructured, error)) (*plan, error) {
	p := &plan{byKey: make(map[objKey]*item, len(objects))}
	crdKinds := map[schema.GroupKind]crdKind{}
	setNamespaces := map[string]bool{}
	expanded := map[*unstructured.Unstructured]*unstructured.Unstructured{} // the stand-ins plan reads, in full
	for _, o := range objects {
		if o == nil {
			continue
		}
		gk := o.GroupVersionKind().GroupKind()
		switch gk {
		case crdGK:
			if expand != nil {
				full, err := expand(o)
				if err != nil {
					return nil, objectErr(refOf(o), "read the desired object", err)
				}
				expanded[o], o = full, full
			}
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			plural, _, _ := unstructured.NestedString(o.Object, "spec", "names", "plural")
			scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
			ck := crdKind{plural: plural, namespaced: scope != "Cluster", versions: map[string]bool{}}
			versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
			for _, v := range versions {
				vm, _ := v.(map[string]any)
				if name, _ := vm["name"].(string); name != "" && vm["served"] != false {
					ck.versions[name] = true
				}
			}
			crdKinds[schema.GroupKind{Group: group, Kind: kind}] = ck
		case namespaceGK:
			setNamespaces[o.GetName()] = true
		}
	}

	type mapping struct {
		gvr        schema.GroupVersionResource
		namespaced bool
		deferred   bool
		err        error
	}
	crdItems := map[schema.GroupKind]*item{}
	mappings := map[schema.GroupVersionKind]mapping{}
	reset := false
	mapKind := func(gvk schema.GroupVersionKind) (mapping, error) {
		if mp, ok := mappings[gvk]; ok {
			return mp, nil
		}
		rm, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if meta.IsNoMatchError(err) && !reset {
			// The Manager may be long-lived: a kind served since the last
			// discovery is found after a reset.
			m.mapper.Reset()
			reset = true
			rm, err = m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		}
		var mp mapping
		switch {
		case err == nil:
			mp = mapping{gvr: rm.Resource, namespaced: rm.Scope.Name() == meta.RESTScopeNameNamespace}
		case meta.IsNoMatchError(err):
			if ck, ok := crdKinds[gvk.GroupKind()]; ok && ck.versions[gvk.Version] {
				gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: ck.plural}
				mp = mapping{gvr: gvr, namespaced: ck.namespaced, deferred: true}
			} else {
				mp = mapping{err: fmt.Errorf("kind %s is not served by the target, nor defined by a CustomResourceDefinition of the set", gvk.GroupKind())}
				if ok {
					mp.err = fmt.Errorf("version %s of kind %s is not served by the CustomResourceDefinition of the set", gvk.Version, gvk.GroupKind())
				}
			}
		default:
			return mapping{}, fmt.Errorf("%s: discovery: %w", gvk, err)
		}
		mappings[gvk] = mp
		return mp, nil
	}

	for _, o := range objects {
		if o == nil {
			continue
		}
		ref := refOf(o)
		if ref.Kind == "" || ref.Version == "" || ref.Name == "" {
			p.invalid = append(p.invalid, objectErr(ref, "plan", errors.New("apiVersion, kind and metadata.name are required")))
			continue
		}
		mp, err := mapKind(o.GroupVersionKind())
		if err != nil {
			return nil, err
		}
		if mp.err != nil {
			p.invalid = append(p.invalid, objectErr(ref, "plan", mp.err))
			continue
		}
		obj, objExpand := o, expand
		if expand != nil && (ref.GroupKind() == crdGK || !mp.namespaced && ref.Namespace != "") {
			// Read (a CRD's kind) or changed below: kept in full.
			full := expanded[o]
			if full == nil {
				var err error
				if full, err = expand(o); err != nil {
					return nil, objectErr(ref, "read the desired object", err)
				}
			}
			obj, objExpand = full, nil
		}
		switch {
		case mp.namespaced && ref.Namespace == "":
			p.invalid = append(p.invalid, objectErr(ref, "plan", errors.New("metadata.namespace is required for a namespaced kind")))
			continue
		case !mp.namespaced && ref.Namespace != "":
			// As kubectl does: a namespace means nothing to a
			// cluster-scoped object, and the apiserver would refuse it.
			if obj == o {
				obj = o.DeepCopy()
			}
			obj.SetNamespace("")
			ref.Namespace = ""
		}
		k := ref.key()
		if _, dup := p.byKey[k]; dup {
			p.invalid = append(p.invalid, objectErr(ref, "plan", errors.New("appears more than once in the set")))
			continue
		}
		it := &item{obj: obj, expand: objExpand, ref: ref, gvr: mp.gvr, namespaced: mp.namespaced, deferred: mp.deferred}
		it.stage = stageOf(ref.GroupKind(), mp.namespaced)
		p.byKey[k] = it
		p.items = append(p.items, it)
		if ref.GroupKind() == crdGK {
			group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "kind")
			crdItems[schema.GroupKind{Group: group, Kind: kind}] = it
		}
	}
	for _, it := range p.items {
		it.definedBy = crdItems[it.ref.GroupKind()]
	}

	if err := m.deferNewNamespaces(ctx, p, setNamespaces); err != nil {
		return nil, err
	}
	slices.SortFunc(p.items, func(a, b *item) int { return compareRefs(a.ref, a.stage, b.ref, b.stage) })
	return p, nil
}

// deferNewNamespaces defers the objects whose namespace is created by the
// set, and refuses those whose namespace exists nowhere.
func (m *Manager) deferNewNamespaces(ctx context.Context, p *plan, setNamespaces map[string]bool) error {
	needed := map[string]bool{}
	for _, it := range p.items {
		if it.namespaced {
			needed[it.ref.Namespace] = true
		}
	}
	if len(needed) == 0 {
		return nil
	}
	existing, err := m.existingNamespaces(ctx, needed)
	if err != nil {
		return err
	}
	kept := p.items[:0]
	for _, it := range p.items {
		switch ns := it.ref.Namespace; {
		case !it.namespaced || existing[ns]:
		case setNamespaces[ns]:
			it.deferred = true
		default:
			p.invalid = append(p.invalid, objectErr(it.ref, "plan", fmt.Errorf("namespace %s does not exist and is not in the set", ns)))
			delete(p.byKey, it.ref.key())
			continue
		}
		kept = append(kept, it)
	}
	p.items = kept
	return nil
}

// namespaceGetLimit: up to this many namespaces are read one by one (an
// incremental apply needs a few); more are listed. A list of the
// Namespaces of a target with thousands of them took 80 ms, most of the
// time of an incremental apply of one object.
const namespaceGetLimit = 16

// existingNamespaces returns which of the needed namespaces exist.
func (m *Manager) existingNamespaces(ctx context.Context, needed map[string]bool) (map[string]bool, error) {
	nsGVR := schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	existing := map[string]bool{}
	if len(needed) <= namespaceGetLimit {
		names := slices.Sorted(maps.Keys(needed))
		found := make([]bool, len(names))
		errs := make([]error, len(names))
		parallel(ctx, m.opts.Workers, len(names), func(ctx context.Context, i int) {
			_, err := m.meta.Resource(nsGVR).Get(ctx, names[i], metav1.GetOptions{})
			switch {
			case err == nil:
				found[i] = true
			case !apierrors.IsNotFound(err):
				errs[i] = fmt.Errorf("Namespace/%s: get: %w", names[i], err)
			}
		})
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for i, name := range names {
			existing[name] = found[i]
		}
		return existing, nil
	}
	opts := metav1.ListOptions{Limit: listPageSize}
	for {
		list, err := m.meta.Resource(nsGVR).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("list Namespaces: %w", err)
		}
		for _, ns := range list.Items {
			existing[ns.Name] = true
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			return existing, nil
		}
	}
}

func (p *plan) ready() []*item {
	var out []*item
	for _, it := range p.items {
		if !it.deferred {
			out = append(out, it)
		}
	}
	return out
}

func (p *plan) deferred() []*item {
	var out []*item
	for _, it := range p.items {
		if it.deferred {
			out = append(out, it)
		}
	}
	return out
}

// markCRDChanges marks the objects whose kind is defined by a CRD of the
// set that is not unchanged. Call it after classify. With deferChanging,
// they are deferred too: validated after the CRD stage, against the new
// schema (a commit that adds a field to a CRD and uses it must not be
// refused for it).
func (p *plan) markCRDChanges(deferChanging bool) {
	for _, it := range p.items {
		if it.definedBy == nil || it.definedBy.state == stateUnchanged || it.deferred {
			continue
		}
		it.crdChanging = true
		if deferChanging {
			it.deferred, it.state, it.live = true, stateUnknown, nil
		}
	}
}

func (p *plan) keys() map[objKey]bool {
	keys := make(map[objKey]bool, len(p.byKey))
	for k := range p.byKey {
		keys[k] = true
	}
	return keys
}

// listPageSize is the page size of every list.
const listPageSize = 500

// clusterWideListNamespaces: a kind wanted in at least this many namespaces
// is listed once across all namespaces rather than once per namespace.
const clusterWideListNamespaces = 16

// classify finds the live copy of each item with a few paginated lists (one
// per kind and namespace) rather than one request per object — but reads
// the items of a small group one by one — and decides
// locally which items already hold (see holds.go). Only the live copies of
// the items that may differ are kept.
func (m *Manager) classify(ctx context.Context, items []*item) error {
	type listKey struct {
		gvr       schema.GroupVersionResource
		namespace string // "" for all namespaces, or a cluster-scoped kind
	}
	nsPerKind := map[schema.GroupVersionResource]map[string]bool{}
	for _, it := range items {
		if nsPerKind[it.gvr] == nil {
			nsPerKind[it.gvr] = map[string]bool{}
		}
		nsPerKind[it.gvr][it.ref.Namespace] = true
	}
	groups := map[listKey]map[string]*item{} // by namespace/name
	for _, it := range items {
		lk := listKey{gvr: it.gvr}
		if it.namespaced && len(nsPerKind[it.gvr]) < clusterWideListNamespaces {
			lk.namespace = it.ref.Namespace
		}
		if groups[lk] == nil {
			groups[lk] = map[string]*item{}
		}
		groups[lk][it.ref.Namespace+"/"+it.ref.Name] = it
		it.state = stateCreate // until found
	}
	// A few objects of a kind are read one by one: a list would read all
	// the others of their namespace too (an incremental apply of one
	// ConfigMap beside thousands).
	var keys []listKey
	var singles []*item
	for lk, byName := range groups {
		if len(byName) <= classifyGetMax {
			for _, it := range byName {
				singles = append(singles, it)
			}
			continue
		}
		keys = append(keys, lk)
	}
	found := func(it *item, live *unstructured.Unstructured) error {
		obj, err := it.content()
		if err != nil {
			return err
		}
		if holds(obj.Object, live.Object, m.opts.FieldManager) {
			it.state = stateUnchanged
		} else {
			it.state = stateCheck
		}
		if it.state == stateCheck || it.stage == stageCRDs {
			it.live = live
		}
		return nil
	}
	errs := make([]error, len(keys)+len(singles))
	parallel(ctx, m.opts.Workers, len(keys)+len(singles), func(ctx context.Context, i int) {
		if i >= len(keys) {
			it := singles[i-len(keys)]
			live, err := m.dyn.Resource(it.gvr).Namespace(it.ref.Namespace).Get(ctx, it.ref.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				errs[i] = objectErr(it.ref, "read the live object", err)
			default:
				errs[i] = found(it, live)
			}
			return
		}
		lk := keys[i]
		byName := groups[lk]
		opts := metav1.ListOptions{Limit: listPageSize}
		for {
			list, err := m.dyn.Resource(lk.gvr).Namespace(lk.namespace).List(ctx, opts)
			if err != nil {
				errs[i] = fmt.Errorf("list %s in %q: %w", lk.gvr, lk.namespace, err)
				return
			}
			for j := range list.Items {
				live := &list.Items[j]
				it, ok := byName[live.GetNamespace()+"/"+live.GetName()]
				if !ok {
					continue
				}
				kept := *live // the object, not the page, stays referenced
				if errs[i] = found(it, &kept); errs[i] != nil {
					return
				}
			}
			if opts.Continue = list.GetContinue(); opts.Continue == "" {
				return
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// classifyGetMax: the objects of a list group (kind and namespace, or kind)
// are read one by one up to this many, listed beyond.
const classifyGetMax = 32

// parallel calls fn(i) for i in [0, n) with at most workers calls at once.
// It stops handing out work when ctx is done.
func parallel(ctx context.Context, workers, n int, fn func(ctx context.Context, i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(ctx, i)
			}
		})
	}
	wg.Wait()
}

// resourcePath is the URL path of one object.
func resourcePath(gvr schema.GroupVersionResource, namespace, name string) string {
	var b strings.Builder
	if gvr.Group == "" {
		b.WriteString("/api/" + gvr.Version)
	} else {
		b.WriteString("/apis/" + gvr.Group + "/" + gvr.Version)
	}
	if namespace != "" {
		b.WriteString("/namespaces/" + namespace)
	}
	b.WriteString("/" + gvr.Resource + "/" + name)
	return b.String()
}
