package render

import (
	"strconv"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// toUnstructured converts a resource of kustomize's output into the object
// that resource.MarshalJSON and Unstructured.UnmarshalJSON would give,
// straight from its YAML nodes; false when the resource holds anything it
// does not know to give identically (a float, a timestamp, an alias, a
// non-string key, an integer not written in plain decimal…), which the
// caller then converts the long way.
//
// The long way writes the resource as YAML, parses it back, decodes it into
// maps, writes them as JSON and decodes that: four passes over every object
// of a build, whose garbage made most of the controller's peak heap in the
// first build of a large snapshot.
func toUnstructured(rn *yaml.RNode) (*unstructured.Unstructured, bool) {
	n := rn.YNode()
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, false
	}
	v, ok := nodeValue(n)
	if !ok {
		return nil, false
	}
	obj := v.(map[string]any)
	// UnmarshalJSON refuses an object without a kind: the long way says so.
	if kind, _ := obj["kind"].(string); kind == "" {
		return nil, false
	}
	return &unstructured.Unstructured{Object: obj}, true
}

// nodeValue is the value of n as the JSON decoding of the Unstructured
// scheme gives it: strings, int64, bool, nil, []any and map[string]any.
func nodeValue(n *yaml.Node) (any, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, false
		}
		return nodeValue(n.Content[0])
	case yaml.MappingNode:
		if n.ShortTag() != yaml.NodeTagMap || len(n.Content)%2 != 0 {
			return nil, false
		}
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || k.ShortTag() != yaml.NodeTagString || !utf8.ValidString(k.Value) {
				return nil, false
			}
			if _, dup := m[k.Value]; dup {
				return nil, false // the YAML decoder refuses it: say so the long way
			}
			v, ok := nodeValue(n.Content[i+1])
			if !ok {
				return nil, false
			}
			m[k.Value] = v
		}
		return m, true
	case yaml.SequenceNode:
		if n.ShortTag() != yaml.NodeTagSeq {
			return nil, false
		}
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, ok := nodeValue(c)
			if !ok {
				return nil, false
			}
			l[i] = v
		}
		return l, true
	case yaml.ScalarNode:
		return scalarValue(n)
	}
	return nil, false // an alias
}

func scalarValue(n *yaml.Node) (any, bool) {
	if n.Tag == "!" {
		return nil, false // a string to the decoder, whatever ShortTag says
	}
	switch n.ShortTag() {
	case yaml.NodeTagString:
		// JSON would replace invalid UTF-8.
		return n.Value, utf8.ValidString(n.Value)
	case yaml.NodeTagNull:
		return nil, true
	case yaml.NodeTagBool:
		switch n.Value {
		case "true", "True", "TRUE":
			return true, true
		case "false", "False", "FALSE":
			return false, true
		}
	case yaml.NodeTagInt:
		if plainDecimal(n.Value) {
			if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				return i, true
			}
		}
	}
	return nil, false
}

// plainDecimal reports whether s is an optionally signed decimal integer
// without leading zeros or underscores: one that YAML and Go read alike
// (YAML reads 010 as octal).
func plainDecimal(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	if s == "" || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
