package render

import (
	"bytes"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Stream writes objects as one YAML stream, each document introduced by
// "---", keys sorted: the same objects give the same bytes. It keeps the
// order it is given (Build's order for `dr-syncer render`).
func Stream(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for _, o := range objs {
		var data []byte
		var err error
		if js, ok := CompactJSON(o); ok {
			// What yaml.Marshal of the expanded object does: JSON, then
			// YAML (the JSON of a map is canonical).
			data, err = yaml.JSONToYAML([]byte(js))
		} else {
			data, err = yaml.Marshal(o.Object)
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s/%s: %w", o.GroupVersionKind(), o.GetNamespace(), o.GetName(), err)
		}
		b.WriteString("---\n")
		b.Write(data)
	}
	return b.Bytes(), nil
}
