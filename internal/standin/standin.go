// Package standin keeps Kubernetes objects compact in memory: a stand-in
// is an Unstructured whose map holds only the object's identity —
// apiVersion, kind, metadata.name and metadata.namespace — and the whole
// object as JSON. As nested maps an object takes two to three times the
// bytes of its JSON; a process that holds thousands of objects for good
// (the snapshot watcher's caches, the render cache) keeps stand-ins, reads
// identity (sorting, keys, lookups) from them as they are and decodes the
// content of the few objects it needs.
//
// Two stand-ins of the same identity hold the same content exactly when
// their JSON is equal, given one encoder (the JSON of a map is canonical:
// keys sorted).
package standin

import (
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// key holds, in a stand-in, the object as JSON. No field of a Kubernetes
// object is named so.
const key = "dr-syncer.io/compact-json"

// New returns the stand-in of o, whose JSON is data: o's identity and
// data.
func New(o *unstructured.Unstructured, data []byte) *unstructured.Unstructured {
	s := &unstructured.Unstructured{Object: map[string]any{key: string(data)}}
	for _, f := range []string{"apiVersion", "kind"} {
		if v, ok := o.Object[f].(string); ok {
			s.Object[f] = v
		}
	}
	if md, ok := o.Object["metadata"].(map[string]any); ok {
		m := map[string]any{}
		for _, f := range []string{"name", "namespace"} {
			if v, ok := md[f].(string); ok && v != "" {
				m[f] = v
			}
		}
		s.Object["metadata"] = m
	}
	return s
}

// JSON returns the JSON that u holds when it is a stand-in.
func JSON(u *unstructured.Unstructured) (string, bool) {
	s, ok := u.Object[key].(string)
	return s, ok
}

// Expand returns the object that u, a stand-in, holds, decoded afresh (the
// caller may change it); ok is false when u is not a stand-in.
func Expand(u *unstructured.Unstructured) (o *unstructured.Unstructured, ok bool, err error) {
	data, ok := JSON(u)
	if !ok {
		return nil, false, nil
	}
	o = &unstructured.Unstructured{}
	if err := o.UnmarshalJSON([]byte(data)); err != nil {
		return nil, true, fmt.Errorf("%s/%s/%s: decode the stand-in: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return o, true, nil
}
