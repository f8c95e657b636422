package policies

import (
	"path"
	"slices"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// Reasons Takes gives besides default exclusion IDs and "exclude-objects[i]".
const (
	reasonIgnoreLabel        = "ignore-label"
	reasonKindExcluded       = "kind-excluded"
	reasonKindNotIncluded    = "kind-not-included"
	reasonSecretsExcluded    = "secrets-excluded"
	reasonClusterScoped      = "cluster-scoped"
	reasonNamespaceNotMapped = "namespace-not-mapped"
)

// structuralKinds are taken even when spec.resources.include does not list
// them: without them nothing else of the snapshot can be applied. An explicit
// exclude still leaves them out (when the target's namespaces and CRDs are
// managed some other way).
var structuralKinds = []KindRef{namespaceKind, crdKind}

var (
	namespaceKind = KindRef{Kind: "Namespace"}
	crdKind       = KindRef{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
)

// TakesKind reports whether objects of a kind are listed at all: the kind is
// not excluded, is included (when spec.resources.include lists kinds), is
// not a Secret under secrets mode exclude, and no enabled whole-kind default
// exclusion names it. Group "" is the core group.
func (c *SyncConfig) TakesKind(group, kind string) bool {
	ok, _ := c.takesKind(group, kind)
	return ok
}

func (c *SyncConfig) takesKind(group, kind string) (bool, string) {
	k := KindRef{Group: group, Kind: kind}
	r := c.Spec.Resources
	if slices.Contains(r.Exclude, k) {
		return false, reasonKindExcluded
	}
	if len(r.Include) > 0 && !slices.Contains(r.Include, k) && !slices.Contains(structuralKinds, k) {
		return false, reasonKindNotIncluded
	}
	if group == "" && kind == "Secret" && c.secretMode() == SecretModeExclude {
		return false, reasonSecretsExcluded
	}
	for _, x := range defaultExclusions {
		if x.match == nil && x.Group == group && x.Kind == kind && c.enabled(x) {
			return false, x.ID
		}
	}
	return true, ""
}

func (c *SyncConfig) enabled(x Exclusion) bool {
	return !slices.Contains(c.Spec.Resources.DisableDefaultExclusions, x.ID)
}

// Takes reports whether one object, as listed from the source (not yet
// cleaned), is taken into the snapshot; when it is not, why: "ignore-label",
// "kind-excluded", "kind-not-included", "secrets-excluded", the ID of a
// default exclusion, "cluster-scoped" (only Namespaces and
// CustomResourceDefinitions are taken of the cluster-scoped kinds),
// "namespace-not-mapped" (a Namespace no mapping names or selects), or
// "exclude-objects[i]" (the filter spec.resources.excludeObjects[i]).
//
// Takes does not look at the namespace of a namespaced object: the snapshot
// lists only the namespaces TargetNamespace maps.
func (c *SyncConfig) Takes(obj *unstructured.Unstructured) (bool, string) {
	if obj.GetLabels()[IgnoreLabel] == "true" {
		return false, reasonIgnoreLabel
	}
	gvk := obj.GroupVersionKind()
	if ok, why := c.takesKind(gvk.Group, gvk.Kind); !ok {
		return false, why
	}
	switch k := (KindRef{Group: gvk.Group, Kind: gvk.Kind}); {
	case k == namespaceKind:
		if _, ok := c.mapNamespace(obj.GetName(), obj.GetLabels()); !ok {
			return false, reasonNamespaceNotMapped
		}
	case k == crdKind:
	case obj.GetNamespace() == "":
		return false, reasonClusterScoped
	}
	for _, x := range defaultExclusions {
		if x.match != nil && x.Group == gvk.Group && x.Kind == gvk.Kind && c.enabled(x) && x.match(obj) {
			return false, x.ID
		}
	}
	if i := c.excludedObject(gvk.Group, gvk.Kind, obj.GetNamespace(), obj.GetName(), obj.GetLabels()); i >= 0 {
		return false, "exclude-objects[" + strconv.Itoa(i) + "]"
	}
	return true, ""
}

// TargetNamespace maps a source namespace, given its labels, to the name it
// has on the target. ok is false when the namespace is not replicated: no
// mapping names or selects it, it carries the ignore label, or an
// excludeObjects filter matches its Namespace object (so that Takes on the
// Namespace and TargetNamespace always agree).
//
// A mapping by name wins over selectors. A selector never matches
// kube-system, kube-public or kube-node-lease, and does not map a namespace
// whose name is the target of a mapping by name (two source namespaces would
// be merged into one).
func (c *SyncConfig) TargetNamespace(name string, nsLabels map[string]string) (target string, ok bool) {
	if nsLabels[IgnoreLabel] == "true" {
		return "", false
	}
	target, ok = c.mapNamespace(name, nsLabels)
	if !ok || c.excludedObject("", "Namespace", "", name, nsLabels) >= 0 {
		return "", false
	}
	return target, true
}

func (c *SyncConfig) mapNamespace(name string, nsLabels map[string]string) (string, bool) {
	for _, m := range c.Spec.Namespaces {
		if m.Selector == nil && m.Source == name {
			if m.Target == "" {
				return name, true
			}
			return m.Target, true
		}
	}
	if slices.Contains(reservedNamespaces, name) {
		return "", false
	}
	for _, m := range c.Spec.Namespaces {
		if m.Selector == nil || !selects(m.Selector, nsLabels) {
			continue
		}
		for _, other := range c.Spec.Namespaces {
			if other.Selector == nil && (other.Target == name || other.Target == "" && other.Source == name) {
				return "", false
			}
		}
		return name, true
	}
	return "", false
}

// excludedObject returns the index of the first excludeObjects filter that
// matches, or -1. For a Namespace, namespace is its own name.
func (c *SyncConfig) excludedObject(group, kind, namespace, name string, objLabels map[string]string) int {
	if group == "" && kind == "Namespace" {
		namespace = name
	}
	for i, f := range c.Spec.Resources.ExcludeObjects {
		if f.Kind != nil && (f.Kind.Group != group || f.Kind.Kind != kind) {
			continue
		}
		if !globMatch(f.Namespace, namespace) || !globMatch(f.Name, name) {
			continue
		}
		if f.Selector != nil && !selects(f.Selector, objLabels) {
			continue
		}
		if f.Kind == nil && f.Namespace == "" && f.Name == "" && f.Selector == nil {
			continue // matches nothing: Validate rejects it
		}
		return i
	}
	return -1
}

func globMatch(glob, s string) bool {
	if glob == "" {
		return true
	}
	ok, err := path.Match(glob, s)
	return err == nil && ok
}

// selects matches labels against a selector; an invalid selector (which
// Validate rejects) selects nothing.
func selects(s *metav1.LabelSelector, set map[string]string) bool {
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && sel.Matches(labels.Set(set))
}
