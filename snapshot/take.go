package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"

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
	dyn, err := dynamic.NewForConfig(source)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	kinds, err := discoverKinds(disc)
	if err != nil {
		return nil, err
	}

	set := &Set{Skipped: map[string]int{}}
	var mu sync.Mutex
	skip := func(reason string) {
		mu.Lock()
		set.Skipped[reason]++
		mu.Unlock()
	}
	take := func(o *unstructured.Unstructured) {
		mu.Lock()
		set.Objects = append(set.Objects, o)
		mu.Unlock()
	}

	// The mapped namespaces, and the Namespace objects themselves.
	var namespaces []string
	err = eachItem(ctx, dyn.Resource(namespaceGVR), opts.PageSize, func(o *unstructured.Unstructured) error {
		if _, ok := cfg.TargetNamespace(o.GetName(), o.GetLabels()); !ok {
			return nil
		}
		namespaces = append(namespaces, o.GetName())
		o.SetGroupVersionKind(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"})
		if ok, reason := cfg.Takes(o); !ok {
			skip(reason)
			return nil
		}
		take(policies.Clean(o))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: list namespaces: %w", err)
	}
	slices.Sort(namespaces)
	set.Namespaces = namespaces

	// Every taken namespaced kind in every mapped namespace, in parallel.
	type job struct {
		k  kind
		ns string
	}
	jobs := make(chan job)
	errs := make([]error, opts.Workers)
	var wg sync.WaitGroup
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for w := range opts.Workers {
		wg.Go(func() {
			for j := range jobs {
				err := eachItem(lctx, dyn.Resource(j.k.gvr).Namespace(j.ns), opts.PageSize, func(o *unstructured.Unstructured) error {
					o.SetGroupVersionKind(j.k.gvk)
					if ok, reason := cfg.Takes(o); !ok {
						skip(reason)
						return nil
					}
					take(policies.Clean(o))
					return nil
				})
				if err != nil && errs[w] == nil {
					errs[w] = fmt.Errorf("snapshot: list %s in namespace %s: %w", j.k.gvr.GroupResource(), j.ns, err)
					cancel()
				}
			}
		})
	}
feed:
	for _, k := range kinds {
		if !k.namespaced || !cfg.TakesKind(k.gvk.Group, k.gvk.Kind) {
			continue
		}
		for _, ns := range namespaces {
			select {
			case jobs <- job{k, ns}:
			case <-lctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}

	if !encrypt {
		if err := countExcludedSecrets(ctx, source, namespaces, set); err != nil {
			return nil, err
		}
	}
	if err := takeCRDs(ctx, dyn, opts.PageSize, cfg, set); err != nil {
		return nil, err
	}
	if encrypt {
		if err := sealSecrets(ctx, set.Objects, opts); err != nil {
			return nil, err
		}
	}
	sortObjects(set.Objects)
	return set, nil
}

// sortObjects sorts objects by group, kind, namespace and name, reading
// each ID once: reading it in the comparison made sorting 10,000 objects
// cost about 0.1 s.
func sortObjects(objects []*unstructured.Unstructured) {
	type keyed struct {
		id ID
		o  *unstructured.Unstructured
	}
	ks := make([]keyed, len(objects))
	for i, o := range objects {
		ks[i] = keyed{idOf(o), o}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.id.Group, b.id.Group), cmp.Compare(a.id.Kind, b.id.Kind),
			cmp.Compare(a.id.Namespace, b.id.Namespace), cmp.Compare(a.id.Name, b.id.Name))
	})
	for i := range ks {
		objects[i] = ks[i].o
	}
}

// countExcludedSecrets counts the Secrets of the mapped namespaces that
// `secrets.mode: exclude` leaves out, so that the commit can say how many.
// It reads their metadata only: no value crosses the wire. Without the right
// to list Secrets, there is nothing to count and nothing to fail.
func countExcludedSecrets(ctx context.Context, source *rest.Config, namespaces []string, set *Set) error {
	mc, err := metadata.NewForConfig(source)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
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
			set.Skipped["secrets-excluded"] += n
		}
	}
	return nil
}

// takeCRDs adds the CustomResourceDefinitions of the custom objects taken.
func takeCRDs(ctx context.Context, dyn dynamic.Interface, pageSize int64, cfg *policies.SyncConfig, set *Set) error {
	used := map[schema.GroupKind]bool{}
	for _, o := range set.Objects {
		used[o.GroupVersionKind().GroupKind()] = true
	}
	err := eachItem(ctx, dyn.Resource(crdGVR), pageSize, func(o *unstructured.Unstructured) error {
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if !used[schema.GroupKind{Group: group, Kind: kind}] {
			return nil
		}
		o.SetGroupVersionKind(schema.GroupVersionKind{Group: crdGVR.Group, Version: "v1", Kind: "CustomResourceDefinition"})
		if ok, reason := cfg.Takes(o); !ok {
			set.Skipped[reason]++
			return nil
		}
		set.Objects = append(set.Objects, policies.Clean(o))
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

// eachItem lists a resource page by page and calls fn with each item.
func eachItem(ctx context.Context, ri dynamic.ResourceInterface, pageSize int64, fn func(*unstructured.Unstructured) error) error {
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return ri.List(ctx, opts)
	})
	p.PageSize = pageSize
	return p.EachListItem(ctx, metav1.ListOptions{}, func(obj runtime.Object) error {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return fmt.Errorf("unexpected list item %T", obj)
		}
		return fn(u)
	})
}
