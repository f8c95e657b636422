package snapshot

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/dr-syncer/dr-syncer/internal/standin"
	"github.com/dr-syncer/dr-syncer/policies"
)

// Watcher keeps the objects a snapshot would take in informer caches and
// reports every change to them: the continuous mode of the controller.
//
// It watches the Namespaces and the CustomResourceDefinitions of the source
// (cluster-wide, as Take lists them), and each taken namespaced kind in each
// mapped namespace (one informer per kind and namespace, so that the RBAC it
// needs is the RBAC Take needs). A namespace that a selector maps later gets
// its informers when it appears, one that stops being mapped loses them; a
// kind that a new CRD brings is discovered again and watched.
//
// Every object goes through the same filter (policies.Takes), cleaning
// (policies.Clean) and sealing as in Take. The caches hold the cleaned
// objects, not the live ones (no managedFields, no status), and the
// namespaced ones encoded as JSON (see compact): what changes in the source
// and not in the snapshot costs a comparison, not memory, and 10,000
// objects cost about half what they would as maps.
type Watcher struct {
	cfg      *policies.SyncConfig
	dyn      dynamic.Interface
	disc     discovery.DiscoveryInterface
	onChange func(ID, time.Time)
	ctx      context.Context

	namespaces cache.SharedIndexInformer
	crds       cache.SharedIndexInformer
	rediscover chan struct{}

	mu        sync.Mutex
	synced    bool                      // the first sync is done: later informers report their initial lists
	kinds     map[schema.GroupKind]kind // taken namespaced kinds
	mapped    map[string]bool           // mapped source namespaces
	informers map[informerKey]*informer
	crdOf     map[schema.GroupKind]string // kind → name of the CRD that defines it
}

type informerKey struct {
	gk schema.GroupKind
	ns string
}

// informer is the cache of one kind in one namespace: a plain informer
// (cache.NewInformerWithOptions), not a shared one. A shared informer
// hands each event to its handlers through a listener with a buffer of its
// own (1,024 slots, 16 KiB, and two goroutines), and a watcher runs one
// informer per taken kind and mapped namespace: 5 MB of buffers held for
// good with 10 namespaces (the heap profile of the controller's lag
// benchmark). Here the one handler runs in the informer's own loop (it
// only reports the change: onChange must not block).
type informer struct {
	store   cache.Store
	ctl     cache.Controller
	cancel  context.CancelFunc
	initial bool // started before the first sync: its initial list is no change
}

// notTakenKey marks the stand-in kept in a cache for an object that is not
// taken (labelled dr-syncer.io/ignore, excluded...): its going from taken to
// not taken is a change like a removal.
const notTakenKey = "dr-syncer.io/not-taken"

// Watch starts watching the source for cfg. onChange is called, from the
// informers' goroutines, with the object that changed (or appeared, or went)
// and when its event arrived; it must not block. Objects present at start are
// not reported: take a full snapshot once WaitForSync returns. The watcher
// stops with ctx.
func Watch(ctx context.Context, cfg *policies.SyncConfig, source *rest.Config, onChange func(ID, time.Time)) (*Watcher, error) {
	disc, err := discovery.NewDiscoveryClientForConfig(source)
	if err != nil {
		return nil, fmt.Errorf("snapshot: watch: %w", err)
	}
	// Uncompressed: each watch stream held a gzip reader (its 32 KiB window
	// and decompressor) for the life of the process, and there is one per
	// taken kind and mapped namespace: 12 MiB of them with 10 mapped
	// namespaces (controller/run_bench_test.go), for streams that carry a
	// few events once their initial list is in.
	watchCfg := rest.CopyConfig(source)
	watchCfg.DisableCompression = true
	dyn, err := dynamic.NewForConfig(watchCfg)
	if err != nil {
		return nil, fmt.Errorf("snapshot: watch: %w", err)
	}
	w := &Watcher{
		cfg: cfg, dyn: dyn, disc: disc, onChange: onChange, ctx: ctx,
		rediscover: make(chan struct{}, 1),
		kinds:      map[schema.GroupKind]kind{},
		mapped:     map[string]bool{},
		informers:  map[informerKey]*informer{},
		crdOf:      map[schema.GroupKind]string{},
	}
	kinds, err := discoverKinds(disc)
	if err != nil {
		return nil, fmt.Errorf("snapshot: watch: %w", err)
	}
	w.setKinds(kinds)

	w.namespaces = dynamicinformer.NewFilteredDynamicInformer(dyn, namespaceGVR, "", 0, cache.Indexers{}, nil).Informer()
	_, _ = w.namespaces.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(o any, _ bool) { w.namespaceEvent(o, false) },
		UpdateFunc: func(_, o any) { w.namespaceEvent(o, false) },
		DeleteFunc: func(o any) { w.namespaceEvent(o, true) },
	})
	w.crds = dynamicinformer.NewFilteredDynamicInformer(dyn, crdGVR, "", 0, cache.Indexers{}, nil).Informer()
	_, _ = w.crds.AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(o any, initial bool) { w.crdEvent(o, initial) },
		UpdateFunc: func(_, o any) { w.crdEvent(o, false) },
		DeleteFunc: func(o any) { w.crdEvent(o, false) },
	})
	go w.namespaces.RunWithContext(ctx)
	go w.crds.RunWithContext(ctx)
	go w.rediscoverLoop()
	return w, nil
}

// WaitForSync waits until every informer has its initial list.
func (w *Watcher) WaitForSync(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !w.HasSynced() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("snapshot: watch: wait for the informers: %w", ctx.Err())
		case <-t.C:
		}
	}
	w.mu.Lock()
	w.synced = true
	w.mu.Unlock()
	return nil
}

// HasSynced reports whether every informer has its initial list.
func (w *Watcher) HasSynced() bool {
	if !w.namespaces.HasSynced() || !w.crds.HasSynced() {
		return false
	}
	// Not under w.mu: a plain informer calls its handlers (report takes
	// w.mu) while its queue may hold the lock its HasSynced takes.
	w.mu.Lock()
	ctls := make([]cache.Controller, 0, len(w.informers))
	for _, i := range w.informers {
		ctls = append(ctls, i.ctl)
	}
	w.mu.Unlock()
	for _, c := range ctls {
		if !c.HasSynced() {
			return false
		}
	}
	return true
}

// Object returns the object id as a snapshot would record it now — taken,
// cleaned and, for a Secret, sealed (opts.Sealer, opts.Previous) — or nil
// when the source does not have it or the snapshot would not take it.
func (w *Watcher) Object(ctx context.Context, id ID, opts Options) (*unstructured.Unstructured, error) {
	o, err := w.object(id)
	if o == nil || err != nil {
		return nil, err
	}
	o.SetResourceVersion("")
	if id.Group == "" && id.Kind == "Secret" {
		if opts.Sealer == nil {
			return nil, fmt.Errorf("%s: secrets are to be encrypted but no sealer was given", id)
		}
		if err := sealOne(ctx, o, opts); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Objects returns every object the watcher holds, as Take would (sorted,
// CRDs only when one of their custom objects is taken), but cleaned and not
// sealed. They are meant for render.Generate, which reads no Secret value.
func (w *Watcher) Objects() ([]*unstructured.Unstructured, error) {
	out, err := w.objects(nil, true)
	if err != nil {
		return nil, err
	}
	sortObjects(out)
	return out, nil
}

// ObjectsIn returns, as Objects does, the objects of the given mapped
// namespaces and the cluster-scoped objects (Namespaces, used CRDs), and
// only one object of each other mapped namespace that holds any: every
// namespace of the set is seen, at the cost of the namespaces asked for.
// Unsorted. What render.Generate needs to produce the files of those
// namespaces as from Objects, at a fraction of the cost.
func (w *Watcher) ObjectsIn(namespaces ...string) ([]*unstructured.Unstructured, error) {
	in := make(map[string]bool, len(namespaces))
	for _, ns := range namespaces {
		in[ns] = true
	}
	return w.objects(in, false)
}

// objects returns the taken objects of the namespaces in (all of them when
// all), one of each other mapped namespace, and the cluster-scoped ones.
func (w *Watcher) objects(in map[string]bool, all bool) ([]*unstructured.Unstructured, error) {
	var out, stored []*unstructured.Unstructured
	used := map[schema.GroupKind]bool{}
	sampled := map[string]bool{}
	w.mu.Lock()
	for k, i := range w.informers {
		if !w.mapped[k.ns] {
			continue
		}
		every := all || in[k.ns]
		for _, item := range i.store.List() {
			u, ok := item.(*unstructured.Unstructured)
			if !ok || u.Object[notTakenKey] != nil {
				continue
			}
			used[k.gk] = true
			if every {
				stored = append(stored, u)
				continue
			}
			if !sampled[k.ns] {
				sampled[k.ns] = true
				stored = append(stored, u)
			}
			break // this kind is used: enough
		}
	}
	w.mu.Unlock()
	out = make([]*unstructured.Unstructured, 0, len(stored))
	for _, u := range stored {
		o, err := expand(u)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	for _, item := range w.namespaces.GetStore().List() {
		if u := w.takeCluster(item, true, nil); u != nil {
			out = append(out, u)
		}
	}
	for _, item := range w.crds.GetStore().List() {
		if u := w.takeCluster(item, false, used); u != nil {
			out = append(out, u)
		}
	}
	return out, nil
}

// sortObjects sorts as Take does: by group, kind, namespace and name.
func sortObjects(objs []*unstructured.Unstructured) {
	type keyed struct {
		id ID
		o  *unstructured.Unstructured
	}
	ks := make([]keyed, len(objs))
	for i, o := range objs {
		ks[i] = keyed{idOf(o), o}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return a.id.Compare(b.id) })
	for i := range ks {
		objs[i] = ks[i].o
	}
}

// object finds id in the caches: the cleaned object (a copy of the
// cache's), or nil.
func (w *Watcher) object(id ID) (*unstructured.Unstructured, error) {
	gk := schema.GroupKind{Group: id.Group, Kind: id.Kind}
	switch {
	case gk == namespaceGK:
		item, ok, _ := w.namespaces.GetStore().GetByKey(id.Name)
		if !ok {
			return nil, nil
		}
		return w.takeCluster(item, true, nil), nil
	case gk == crdGK:
		item, ok, _ := w.crds.GetStore().GetByKey(id.Name)
		if !ok {
			return nil, nil
		}
		u, _ := item.(*unstructured.Unstructured)
		if u == nil {
			return nil, nil
		}
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		if !w.used(schema.GroupKind{Group: group, Kind: kind}) {
			return nil, nil
		}
		return w.takeCluster(item, false, nil), nil
	}
	w.mu.Lock()
	i := w.informers[informerKey{gk, id.Namespace}]
	mapped := w.mapped[id.Namespace]
	w.mu.Unlock()
	if i == nil || !mapped {
		return nil, nil
	}
	item, ok, _ := i.store.GetByKey(id.Namespace + "/" + id.Name)
	if !ok {
		return nil, nil
	}
	u, _ := item.(*unstructured.Unstructured)
	if u == nil || u.Object[notTakenKey] != nil {
		return nil, nil
	}
	return expand(u)
}

var (
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	crdGK       = schema.GroupKind{Group: crdGVR.Group, Kind: "CustomResourceDefinition"}
)

// takeCluster takes a Namespace (namespace) or a CRD as Take does; used, when not nil,
// says which custom kinds have objects (a CRD whose kind has none is left
// out).
func (w *Watcher) takeCluster(item any, namespace bool, used map[schema.GroupKind]bool) *unstructured.Unstructured {
	u, ok := item.(*unstructured.Unstructured)
	if !ok {
		return nil
	}
	u = u.DeepCopy()
	if namespace {
		if _, ok := w.cfg.TargetNamespace(u.GetName(), u.GetLabels()); !ok {
			return nil
		}
		u.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
	} else {
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		if used != nil && !used[schema.GroupKind{Group: group, Kind: kind}] {
			return nil
		}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: crdGVR.Group, Version: "v1", Kind: "CustomResourceDefinition"})
	}
	if ok, _ := w.cfg.Takes(u); !ok {
		return nil
	}
	return policies.Clean(u)
}

// used reports whether a custom kind has a taken object in a mapped namespace.
func (w *Watcher) used(gk schema.GroupKind) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for k, i := range w.informers {
		if k.gk != gk || !w.mapped[k.ns] {
			continue
		}
		for _, item := range i.store.List() {
			if u, ok := item.(*unstructured.Unstructured); ok && u.Object[notTakenKey] == nil {
				return true
			}
		}
	}
	return false
}

// setKinds keeps the taken namespaced kinds of a discovery.
func (w *Watcher) setKinds(kinds []kind) map[schema.GroupKind]kind {
	taken := map[schema.GroupKind]kind{}
	for _, k := range kinds {
		if k.namespaced && w.cfg.TakesKind(k.gvk.Group, k.gvk.Kind) {
			taken[k.gvk.GroupKind()] = k
		}
	}
	w.mu.Lock()
	w.kinds = taken
	w.mu.Unlock()
	return taken
}

// namespaceEvent starts or stops the informers of a namespace whose mapping
// changed, and reports the Namespace object.
func (w *Watcher) namespaceEvent(o any, deleted bool) {
	now := time.Now()
	u := objectOf(o)
	if u == nil {
		return
	}
	name := u.GetName()
	_, mapped := w.cfg.TargetNamespace(name, u.GetLabels())
	mapped = mapped && !deleted
	w.mu.Lock()
	var gone []ID
	if mapped && !w.mapped[name] {
		w.mapped[name] = true
		for _, k := range w.kinds {
			w.startLocked(k, name)
		}
	} else if !mapped && w.mapped[name] {
		delete(w.mapped, name)
		for key, i := range w.informers {
			if key.ns == name {
				gone = append(gone, w.stopLocked(key, i)...)
			}
		}
	}
	synced := w.synced
	w.mu.Unlock()
	if synced {
		w.onChange(ID{Kind: "Namespace", Name: name}, now)
		for _, id := range gone {
			w.onChange(id, now)
		}
	}
}

// crdEvent asks for a new discovery (a kind may have come or gone) and
// reports the CRD.
func (w *Watcher) crdEvent(o any, initial bool) {
	now := time.Now()
	u := objectOf(o)
	if u == nil {
		return
	}
	group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
	w.mu.Lock()
	w.crdOf[schema.GroupKind{Group: group, Kind: kind}] = u.GetName()
	synced := w.synced
	w.mu.Unlock()
	if initial {
		return
	}
	select {
	case w.rediscover <- struct{}{}:
	default:
	}
	if synced {
		w.onChange(ID{Group: crdGK.Group, Kind: crdGK.Kind, Name: u.GetName()}, now)
	}
}

// rediscoverLoop runs discovery again after CRD events, until every
// established CRD's kind is served (the apiserver serves a new kind a moment
// after the CRD is established), and watches the kinds that came.
func (w *Watcher) rediscoverLoop() {
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.rediscover:
		}
		for attempt := 0; attempt < 50; attempt++ {
			if w.rediscoverOnce() {
				break
			}
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// rediscoverOnce reports whether discovery serves every kind of the
// established CRDs.
func (w *Watcher) rediscoverOnce() bool {
	kinds, err := discoverKinds(w.disc)
	if err != nil {
		return false
	}
	served := map[schema.GroupKind]bool{}
	for _, k := range kinds {
		served[k.gvk.GroupKind()] = true
	}
	taken := w.setKinds(kinds)
	now := time.Now()
	var gone []ID
	w.mu.Lock()
	for ns := range w.mapped {
		for _, k := range taken {
			w.startLocked(k, ns)
		}
	}
	for key, i := range w.informers {
		if _, ok := taken[key.gk]; !ok {
			gone = append(gone, w.stopLocked(key, i)...)
		}
	}
	w.mu.Unlock()
	for _, id := range gone {
		w.onChange(id, now)
	}
	for _, item := range w.crds.GetStore().List() {
		u, _ := item.(*unstructured.Unstructured)
		if u == nil || !established(u) {
			continue
		}
		group, _, _ := unstructured.NestedString(u.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "names", "kind")
		if !served[schema.GroupKind{Group: group, Kind: kind}] {
			return false
		}
	}
	return true
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// startLocked starts the informer of kind k in namespace ns, unless it runs.
func (w *Watcher) startLocked(k kind, ns string) {
	key := informerKey{k.gvk.GroupKind(), ns}
	if w.informers[key] != nil {
		return
	}
	gvk := k.gvk
	res := w.dyn.Resource(k.gvr).Namespace(ns)
	lw := cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}, w.dyn)
	i := &informer{initial: !w.synced}
	report := func(o any) {
		now := time.Now()
		u := objectOf(o)
		if u == nil {
			return
		}
		w.onChange(ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}, now)
		w.mu.Lock()
		crd := w.crdOf[gvk.GroupKind()]
		w.mu.Unlock()
		if crd != "" {
			// The first object of a custom kind brings its CRD into the
			// snapshot, the last one takes it out.
			w.onChange(ID{Group: crdGK.Group, Kind: crdGK.Kind, Name: crd}, now)
		}
	}
	handler := cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initialList bool) {
			if !(initialList && i.initial) {
				report(o)
			}
		},
		UpdateFunc: func(old, o any) {
			if !sameTaken(old, o) {
				report(o)
			}
		},
		DeleteFunc: report,
	}
	i.store, i.ctl = cache.NewInformerWithOptions(cache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &unstructured.Unstructured{},
		Handler:       handler,
		Transform: func(o any) (any, error) {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				return o, nil
			}
			u.SetGroupVersionKind(gvk)
			return w.take(u), nil
		},
	})
	ctx, cancel := context.WithCancel(w.ctx)
	i.cancel = cancel
	w.informers[key] = i
	go i.ctl.RunWithContext(ctx)
}

// stopLocked stops an informer and returns the objects it held.
func (w *Watcher) stopLocked(key informerKey, i *informer) []ID {
	i.cancel()
	delete(w.informers, key)
	var ids []ID
	for _, item := range i.store.List() {
		if u := objectOf(item); u != nil {
			ids = append(ids, ID{Group: key.gk.Group, Kind: key.gk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()})
		}
	}
	return ids
}

// take is what the cache keeps of a live object: the object as the snapshot
// takes it, or a small stand-in when the snapshot leaves it out.
func (w *Watcher) take(u *unstructured.Unstructured) *unstructured.Unstructured {
	if _, compact := standin.JSON(u); compact || u.Object[notTakenKey] != nil {
		// Taken already: the informer may transform an object twice (the
		// items of a list through a temporary store).
		return u
	}
	rv := u.GetResourceVersion()
	if ok, reason := w.cfg.Takes(u); !ok {
		s := &unstructured.Unstructured{Object: map[string]any{notTakenKey: reason}}
		s.SetGroupVersionKind(u.GroupVersionKind())
		s.SetNamespace(u.GetNamespace())
		s.SetName(u.GetName())
		s.SetResourceVersion(rv)
		return s
	}
	c := policies.Clean(u)
	c.SetResourceVersion("")
	data, err := c.MarshalJSON()
	if err != nil {
		// Not JSON (cannot be, coming from the apiserver): kept as maps.
		c.SetResourceVersion(rv)
		return c
	}
	return compact(c, rv, data)
}

// compact is the cache's copy of the cleaned object c: a stand-in
// (internal/standin: its identity, and data, c encoded as JSON) with the
// resourceVersion rv, which the informer compares after a relist to tell
// real updates from replays. As nested maps, a cleaned object takes two to
// three times the bytes of its JSON, and the caches hold every object of
// the mapped namespaces for the life of the process; the few read at each
// commit are decoded then.
func compact(c *unstructured.Unstructured, rv string, data []byte) *unstructured.Unstructured {
	s := standin.New(c, data)
	s.SetResourceVersion(rv)
	return s
}

// expand returns the cleaned object that u, a cache's copy, holds: decoded
// from its JSON, or a copy of u when it is kept as maps.
func expand(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if o, ok, err := standin.Expand(u); ok {
		return o, err
	}
	return u.DeepCopy(), nil
}

// sameTaken reports whether an update leaves the taken object as it was
// (only status, managedFields or other cleaned fields changed).
func sameTaken(old, cur any) bool {
	a, b := objectOf(old), objectOf(cur)
	if a == nil || b == nil {
		return false
	}
	da, oka := standin.JSON(a)
	db, okb := standin.JSON(b)
	if oka && okb {
		return da == db
	}
	ac, bc := a.DeepCopy(), b.DeepCopy()
	ac.SetResourceVersion("")
	bc.SetResourceVersion("")
	return reflect.DeepEqual(ac.Object, bc.Object)
}

func objectOf(o any) *unstructured.Unstructured {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	u, _ := o.(*unstructured.Unstructured)
	return u
}
