package render

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/internal/standin"
)

// Compact objects.
//
// A Cache keeps the objects of the runs of its last builds, and the
// controller holds them between commits: as maps, an object costs several
// times its JSON. The cache keeps each object compact instead, as a
// stand-in (internal/standin): an Unstructured whose map holds only its
// identity and the whole object as JSON. Identity (sorting, keys, the
// place of an object in a set) reads the compact object as it is; content
// is read through Expand. Two compact objects hold the same content
// exactly when their maps are equal.

// compact returns the compact form of o, an object of a kustomize run, or
// o itself when it cannot be encoded (kept as maps: Expand returns it as
// is).
func compact(o *unstructured.Unstructured) *unstructured.Unstructured {
	data, err := json.Marshal(o.Object)
	if err != nil {
		return o
	}
	return standin.New(o, data)
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
	if u, ok, err := standin.Expand(o); ok {
		return u, err
	}
	return o, nil
}

// CompactJSON returns the JSON of o when it is compact: an object of a
// Cache's build, whose map holds only its identity.
func CompactJSON(o *unstructured.Unstructured) (string, bool) {
	return standin.JSON(o)
}
