package reconciler

import (
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ObjectRef names one object of the target.
type ObjectRef struct {
	Group     string `json:"group,omitempty"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String returns Kind/namespace/name, or Kind/name for a cluster-scoped
// object; the kind is group-qualified (Deployment.apps) unless it is core.
func (r ObjectRef) String() string {
	k := r.Kind
	if r.Group != "" {
		k += "." + r.Group
	}
	if r.Namespace == "" {
		return k + "/" + r.Name
	}
	return k + "/" + r.Namespace + "/" + r.Name
}

// GroupKind is the object's group and kind.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// key is an object's identity: the version is left out, so that an object
// served at a new version is still the same object.
func (r ObjectRef) key() objKey {
	return objKey{group: r.Group, kind: r.Kind, namespace: r.Namespace, name: r.Name}
}

type objKey struct{ group, kind, namespace, name string }

// refOf is the object's reference, as u.GroupVersionKind(), u.GetNamespace()
// and u.GetName() say, read from the maps directly: ApplyDelta takes the
// reference of every object of the set, and the accessors cost a third of
// its CPU at 10,000 objects.
func refOf(u *unstructured.Unstructured) ObjectRef {
	var ref ObjectRef
	apiVersion, _ := u.Object["apiVersion"].(string)
	if gv, err := schema.ParseGroupVersion(apiVersion); err == nil {
		kind, _ := u.Object["kind"].(string)
		ref.Group, ref.Version, ref.Kind = gv.Group, gv.Version, kind
	}
	md, _ := u.Object["metadata"].(map[string]any)
	ref.Namespace, _ = md["namespace"].(string)
	ref.Name, _ = md["name"].(string)
	return ref
}

// Action is what Apply did (or, in a dry run or Diff, would do) to one object.
type Action string

// The actions, one per object.
const (
	// Created: the object did not exist and was applied.
	Created Action = "Created"
	// Configured: the object existed and the apply changed it.
	Configured Action = "Configured"
	// Unchanged: the object already held the desired state; nothing was sent.
	Unchanged Action = "Unchanged"
	// Recreated: a field that cannot change did, and the policy allowed
	// deleting the object and applying it again.
	Recreated Action = "Recreated"
	// Deleted: the object was in the inventory, no longer in the set, and was
	// pruned (or was already gone).
	Deleted Action = "Deleted"
	// Skipped: the object was in the inventory and no longer in the set, but
	// was kept: prune disabled by annotation, no longer dr-syncer's, or a
	// Namespace or CRD that still holds objects that are not being pruned.
	// It is dropped from the inventory.
	Skipped Action = "Skipped"
)

// Change is the action taken on one object.
type Change struct {
	Object ObjectRef
	Action Action
}

// Result is what one Apply did: one Change per object of the set, in apply
// order, then one per pruned object, in prune order.
type Result struct {
	Changes []Change
	// Commit is the commit that was applied (ApplyOptions.Commit).
	Commit string
}

// Counts returns how many objects got each action.
func (r *Result) Counts() map[Action]int {
	counts := make(map[Action]int)
	for _, c := range r.Changes {
		counts[c.Action]++
	}
	return counts
}
