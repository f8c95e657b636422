package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/policies"
)

// Options tune how the source is read.
type Options struct {
	// PageSize is the limit of each LIST page. Default 500.
	PageSize int64
	// Workers is how many LISTs run at once. Default 8.
	Workers int
	// Sealer encrypts Secrets when the mapping says encrypt. Required then.
	Sealer *Sealer
	// Previous returns the object as the last snapshot recorded it (nil when
	// it was not recorded), so that an unchanged Secret keeps its ciphertext.
	// It is called from several goroutines at once, and the object it
	// returns is only read.
	Previous func(ctx context.Context, id ID) (*unstructured.Unstructured, error)
}

// ID names an object of the source.
type ID struct {
	Group, Kind, Namespace, Name string
}

func idOf(o *unstructured.Unstructured) ID {
	gvk := o.GroupVersionKind()
	return ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}
}

// Compare orders IDs by group, kind, namespace and name: the order of
// Set.Objects and of the files of a snapshot.
func (id ID) Compare(o ID) int {
	return cmp.Or(cmp.Compare(id.Group, o.Group), cmp.Compare(id.Kind, o.Kind),
		cmp.Compare(id.Namespace, o.Namespace), cmp.Compare(id.Name, o.Name))
}

func (id ID) String() string {
	gk := id.Kind
	if id.Group != "" {
		gk += "." + id.Group
	}
	if id.Namespace == "" {
		return gk + "/" + id.Name
	}
	return gk + "/" + id.Namespace + "/" + id.Name
}

// Set is the object set of one snapshot: cleaned objects, ready to record.
type Set struct {
	// Objects, sorted by group, kind, namespace and name.
	Objects []*unstructured.Unstructured
	// Skipped counts the listed objects that were left out, by the ID of
	// the rule that left them out.
	Skipped map[string]int
	// Namespaces are the source namespaces taken, sorted.
	Namespaces []string
}

// kind is one listable resource found by discovery.
type kind struct {
	gvr        schema.GroupVersionResource
	gvk        schema.GroupVersionKind
	namespaced bool
}

var (
	namespaceGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	crdGVR       = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// Take reads the source cluster and returns the object set that cfg asks
// for: the mapped Namespaces, every taken namespaced object in them, and the
// CRDs of the custom objects taken, each cleaned (policies.Clean) and, for
// Secrets, encrypted or left out as cfg says.
func Take(ctx context.Context, cfg *policies.SyncConfig, source *rest.Config, opts Options) (*Set, error) {
	if opts.PageSize <= 0 {
		opts.PageSize = 500
	}
	if opts.Workers <= 0 {
		opts.Workers = 8
	}
	encrypt := cfg.Spec.Secrets.Mode != policies.SecretModeExclude
	if encrypt && opts.Sealer == nil {
		return nil, errors.New("snapshot: secrets are to be encrypted but no sealer was given")
	}
	disc, err := discovery.NewDiscoveryClientForConfig(source)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	list, err := newLister(source, opts.PageSize)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	meta, err := metadata.NewForConfig(source)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	kinds, err := discoverKinds(disc)
	if err != nil {
		return nil, err
	}

	t := &taking{cfg: cfg, opts: opts, list: list, meta: meta, skipped: map[string]int{}}
	// The mapped namespaces, and the Namespace objects themselves.
	var namespaces []string
	err = t.list.each(ctx, namespaceGVR, "", func(o *unstructured.Unstructured) error {
		if _, ok := cfg.TargetNamespace(o.GetName(), o.GetLabels()); !ok {
			return nil
		}
		namespaces = append(namespaces, o.GetName())
		o.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
		if ok, reason := cfg.Takes(o); !ok {
			t.skip(reason)
			return nil
		}
		t.take(ID{Kind: "Namespace", Name: o.GetName()}, policies.CleanInPlace(o))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: list namespaces: %w", err)
	}
	slices.Sort(namespaces)

	if err := t.listNamespaced(ctx, kinds, namespaces, encrypt); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	if !encrypt {
		if err := countExcludedSecrets(ctx, meta, namespaces, t.skipped); err != nil {
			return nil, err
		}
	}
	if err := t.takeCRDs(ctx); err != nil {
		return nil, err
	}
	return t.result(namespaces), nil
}

var secretGVK = schema.GroupVersionKind{Version: "v1", Kind: "Secret"}

// taking is one Take in progress: the objects taken so far, with their IDs
// (read once, when the kind is known), and the first error.
type taking struct {
	cfg  *policies.SyncConfig
	opts Options
	list *lister
	meta metadata.Interface

	mu      sync.Mutex
	objects []taken
	skipped map[string]int
	err     error
}

type taken struct {
	id ID
	o  *unstructured.Unstructured
}

func (t *taking) take(id ID, o *unstructured.Unstructured) {
	t.mu.Lock()
	t.objects = append(t.objects, taken{id, o})
	t.mu.Unlock()
}

func (t *taking) skip(reason string) {
	t.mu.Lock()
	t.skipped[reason]++
	t.mu.Unlock()
}

// fail keeps the first error and stops the rest of the work through cancel.
func (t *taking) fail(err error, cancel context.CancelFunc) {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.mu.Unlock()
	cancel()
}

// listNamespaced lists every taken namespaced kind in every mapped namespace
// that may hold objects of it, opts.Workers LISTs at a time, and seals the
// Secrets as they come (see sealing), so that encryption overlaps the LISTs
// still running instead of following them all. Secrets are listed first for
// that reason.
//
// A kind is first probed, unless only one namespace is mapped (a probe would
// cost what it could save): see probe. The first probe goes alone, so that a
// source that grants rights in the mapped namespaces only denies one request
// per snapshot, after which every kind is listed in every mapped namespace.
func (t *taking) listNamespaced(ctx context.Context, kinds []kind, namespaces []string, encrypt bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var seal *sealing
	if encrypt {
		seal = startSealing(ctx, t.opts, func(err error) { t.fail(err, cancel) })
	}
	var taken []kind
	for _, k := range kinds {
		switch {
		case !k.namespaced || !t.cfg.TakesKind(k.gvk.Group, k.gvk.Kind):
		case k.gvk == secretGVK: // first: sealing runs while the rest is listed
			taken = slices.Insert(taken, 0, k)
		default:
			taken = append(taken, k)
		}
	}

	slots := make(chan struct{}, t.opts.Workers)
	acquire := func() bool {
		select {
		case slots <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	release := func() { <-slots }
	var wg sync.WaitGroup
	list := func(k kind, ns string) {
		wg.Go(func() {
			if !acquire() {
				return
			}
			defer release()
			err := t.list.each(ctx, k.gvr, ns, func(o *unstructured.Unstructured) error {
				o.SetGroupVersionKind(k.gvk)
				if ok, reason := t.cfg.Takes(o); !ok {
					t.skip(reason)
					return nil
				}
				policies.CleanInPlace(o)
				t.take(ID{Group: k.gvk.Group, Kind: k.gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}, o)
				if seal != nil && k.gvk == secretGVK {
					seal.add(o)
				}
				return nil
			})
			if err != nil {
				t.fail(fmt.Errorf("snapshot: list %s in namespace %s: %w", k.gvr.GroupResource(), ns, err), cancel)
			}
		})
	}
	// listWhere lists k in the mapped namespaces that hold objects of it,
	// as a probe found them; in all of them when the probe could not tell.
	var denied atomic.Bool
	listWhere := func(k kind, holding map[string]bool, err error) {
		if apierrors.IsForbidden(err) {
			denied.Store(true)
		}
		for _, ns := range namespaces {
			if holding == nil || holding[ns] {
				list(k, ns)
			}
		}
	}

	probing, first := len(namespaces) > 1, true
	for _, k := range taken {
		switch {
		case !probing || k.gvk == secretGVK || denied.Load():
			listWhere(k, nil, nil)
		case first:
			first = false
			holding, err := t.probe(ctx, k)
			listWhere(k, holding, err)
		default:
			wg.Go(func() {
				if denied.Load() {
					listWhere(k, nil, nil)
					return
				}
				if !acquire() {
					return
				}
				holding, err := t.probe(ctx, k)
				release()
				listWhere(k, holding, err)
			})
		}
	}
	wg.Wait()
	if seal != nil {
		seal.wait()
	}
	return t.err
}

// probeLimit is how many objects of a kind a probe reads the metadata of.
const probeLimit = 100

// probe returns the namespaces that hold objects of k, read from one
// cluster-wide LIST of the metadata of at most probeLimit objects; nil when
// it cannot tell: the kind has more objects than that, the source does not
// grant the LIST (with namespace-scoped rights only), or it failed (the
// LISTs that follow then report what is wrong).
//
// Most kinds are empty in most namespaces (about 30 kinds of a bare cluster
// against the few a namespace uses), and an empty LIST costs about what a
// small one does: a probe saves the LISTs that would find nothing. An object
// that exists when the probe is made is in its answer, so nothing that
// exists throughout the snapshot is missed; one created after its kind's
// probe may be left out, as one created after its namespace's LIST is.
//
// Secrets are never probed: their metadata can carry a value in plaintext
// (kubectl's last-applied-configuration), and the probe would read it from
// namespaces that are not mapped.
func (t *taking) probe(ctx context.Context, k kind) (map[string]bool, error) {
	list, err := t.meta.Resource(k.gvr).List(ctx, metav1.ListOptions{Limit: probeLimit})
	if err != nil {
		return nil, err
	}
	if list.Continue != "" {
		return nil, nil
	}
	holding := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		holding[list.Items[i].Namespace] = true
	}
	return holding, nil
}

// result sorts the objects taken by group, kind, namespace and name.
func (t *taking) result(namespaces []string) *Set {
	slices.SortFunc(t.objects, func(a, b taken) int { return a.id.Compare(b.id) })
	set := &Set{Objects: make([]*unstructured.Unstructured, len(t.objects)), Skipped: t.skipped, Namespaces: namespaces}
	for i := range t.objects {
		set.Objects[i] = t.objects[i].o
	}
	return set
}

// countExcludedSecrets counts the Secrets of the mapped namespaces that
// `secrets.mode: exclude` leaves out, so that the commit can say how many.
// It reads their metadata only: no value crosses the wire. Without the right
// to list Secrets, there is nothing to count and nothing to fail.
func countExcludedSecrets(ctx context.Context, mc metadata.Interface, namespaces []string, skipped map[string]int) error {
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	for _, ns := range namespaces {
		list, err := mc.Resource(secrets).Namespace(ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("snapshot: list secrets in namespace %s: %w", ns, err)
		}
		if n := len(list.Items); n > 0 {
			skipped["secrets-excluded"] += n
		}
	}
	return nil
}

// takeCRDs adds the CustomResourceDefinitions of the custom objects taken.
func (t *taking) takeCRDs(ctx context.Context) error {
	used := map[schema.GroupKind]bool{}
	for _, o := range t.objects {
		used[schema.GroupKind{Group: o.id.Group, Kind: o.id.Kind}] = true
	}
	err := t.list.each(ctx, crdGVR, "", func(o *unstructured.Unstructured) error {
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if !used[schema.GroupKind{Group: group, Kind: kind}] {
			return nil
		}
		o.SetGroupVersionKind(schema.GroupVersionKind{Group: crdGVR.Group, Version: "v1", Kind: "CustomResourceDefinition"})
		if ok, reason := t.cfg.Takes(o); !ok {
			t.skipped[reason]++
			return nil
		}
		t.take(ID{Group: crdGVR.Group, Kind: "CustomResourceDefinition", Name: o.GetName()}, policies.CleanInPlace(o))
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("snapshot: list customresourcedefinitions: %w", err)
	}
	return nil
}

// discoverKinds returns every listable resource at its preferred version.
// A group whose discovery fails is an error, not a silent gap in the DR copy.
func discoverKinds(disc discovery.DiscoveryInterface) ([]kind, error) {
	lists, err := disc.ServerPreferredResources()
	if err != nil {
		return nil, fmt.Errorf("snapshot: discovery: %w", err)
	}
	var kinds []kind
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, fmt.Errorf("snapshot: discovery: group version %q: %w", l.GroupVersion, err)
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue // a subresource, or a kind that cannot be listed
			}
			kinds = append(kinds, kind{
				gvr:        gv.WithResource(r.Name),
				gvk:        gv.WithKind(r.Kind),
				namespaced: r.Namespaced,
			})
		}
	}
	return kinds, nil
}

// lister lists resources page by page, decoding each page once.
//
// The dynamic client decodes a page of a LIST into maps twice (the whole
// list, whose items it then drops, and each item again), after two more
// passes over the JSON to find the kind and the items: decoding was most of
// the CPU a snapshot spent, and the machine that runs the apiserver is
// often the same. Here a page is read as bytes and decoded in one pass into
// the items, with the same decoder (integers as int64), so each item holds
// what the dynamic client would give.
type lister struct {
	rc       *rest.RESTClient
	pageSize int64
}

func newLister(source *rest.Config, pageSize int64) (*lister, error) {
	cfg := dynamic.ConfigFor(source)
	cfg.ContentType, cfg.AcceptContentTypes = "application/json", "application/json"
	cfg.GroupVersion = nil
	cfg.APIPath = "/" // every request names its absolute path
	rc, err := rest.UnversionedRESTClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &lister{rc: rc, pageSize: pageSize}, nil
}

// page is what lister reads of one page of a LIST.
type page struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []map[string]any `json:"items"`
}

// each lists gvr in namespace ns ("" for all, or a cluster-scoped kind)
// page by page and calls fn with each item.
func (l *lister) each(ctx context.Context, gvr schema.GroupVersionResource, ns string, fn func(*unstructured.Unstructured) error) error {
	path := []string{"api", gvr.Version}
	if gvr.Group != "" {
		path = []string{"apis", gvr.Group, gvr.Version}
	}
	if ns != "" {
		path = append(path, "namespaces", ns)
	}
	path = append(path, gvr.Resource)
	next := ""
	for {
		req := l.rc.Get().AbsPath(path...).Param("limit", strconv.FormatInt(l.pageSize, 10))
		if next != "" {
			req = req.Param("continue", next)
		}
		body, err := req.Do(ctx).Raw()
		if err != nil {
			return err
		}
		var p page
		if err := utiljson.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		for _, item := range p.Items {
			if item == nil {
				return errors.New("decode: null item")
			}
			if err := fn(&unstructured.Unstructured{Object: item}); err != nil {
				return err
			}
		}
		if next = p.Metadata.Continue; next == "" {
			return nil
		}
	}
}
