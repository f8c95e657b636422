package render

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Compact objects.
//
// A Cache keeps the objects of the runs of its last builds, and the
// controller holds them between commits: as maps, an object costs several
// times its JSON. The cache keeps each object compact instead: an
// Unstructured whose map holds only its identity — apiVersion, kind,
// metadata.name and metadata.namespace — and, under compactKey, the whole
// object as JSON. Identity (sorting, keys, the place of an object in a
// set) reads the compact object as it is; content is read through Expand.
// Two compact objects hold the same content exactly when their maps are
// equal (the JSON of a map is canonical: keys sorted).

// compactKey holds, in a compact object, the whole object as JSON. No
// field of a Kubernetes object is named so.
const compactKey = "dr-syncer.io/rendered-json"

// compact returns the compact form of o, an object of a kustomize run, or
// o itself when it cannot be encoded (kept as maps: Expand returns it as
// is).
func compact(o *unstructured.Unstructured) *unstructured.Unstructured {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return o
	}
	s := &unstructured.Unstructured{Object: map[string]any{compactKey: string(data)}}
	for _, f := range []string{"apiVersion", "kind"} {
		if v, ok := o.Object[f].(string); ok {
			s.Object[f] = v
		}
	}
	if md, ok := o.Object["metadata"].(map[string]any); ok {
		m := map[string]any{}
		for _, f := range []string{"name", "namespace"} {
			if v, ok := md[f].(string); ok {
				m[f] = v
			}
		}
		s.Object["metadata"] = m
	}
	return s
}

// compactAll compacts the objects of objs in place, and returns objs.
func compactAll(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	for i, o := range objs {
		objs[i] = compact(o)
	}
	return objs
}

// Expand returns the object that o, an object of a Cache's build, holds:
// decoded afresh from its JSON when it is compact (the caller may modify
// the copy), or o itself when it is not (shared: not to be modified).
func Expand(o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	data, ok := CompactJSON(o)
	if !ok {
		return o, nil
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON([]byte(data)); err != nil {
		return nil, fmt.Errorf("%s/%s/%s: expanding the rendered object: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return u, nil
}

// CompactJSON returns the JSON of o when it is compact: an object of a
// Cache's build, whose map holds only its identity.
func CompactJSON(o *unstructured.Unstructured) (string, bool) {
	s, ok := o.Object[compactKey].(string)
	return s, ok
}
