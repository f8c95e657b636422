package render

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// A YAML file of the commit may use anchors and aliases, and kustomize
// expands them: nine levels of nine aliases (the "billion laughs") make a
// file of a few hundred bytes hundreds of millions of nodes, and the build
// runs out of time and memory. checkAliases counts what each YAML file
// expands to before kustomize sees it, without expanding anything, and
// refuses a file that grows more than any hand-written one does.
const (
	maxExpandedBase  = 100_000 // nodes any file may expand to
	maxExpandedRatio = 10      // and, beyond that, this many per node written
)

// checkYAML returns an error naming file when it is YAML by its name and
// is not UTF-8 (kustomize's own message names neither the file nor the
// place), or when its aliases expand beyond the limits above. Files that
// are not YAML by name (generator sources) are not looked at, and those
// that do not parse are left to kustomize, which reports them.
func checkYAML(file string, data []byte) error {
	if !isYAMLName(file) {
		return nil
	}
	if !utf8.Valid(data) && !bytes.HasPrefix(data, []byte{0xfe, 0xff}) && !bytes.HasPrefix(data, []byte{0xff, 0xfe}) {
		line, col := invalidUTF8At(data)
		return fmt.Errorf("%s:%d:%d: not valid UTF-8: YAML files must be UTF-8", file, line, col)
	}
	if !bytes.Contains(data, []byte("*")) {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var written, expanded int
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // kustomize says what is wrong with it
		}
		w := countNodes(&doc)
		e := expandedNodes(&doc, map[*yaml.Node]int{}, 0)
		written, expanded = written+w, expanded+e
		if e < 0 || expanded > maxExpandedBase+maxExpandedRatio*written {
			return fmt.Errorf("%s: YAML aliases expand the file beyond %d nodes (an alias bomb?): refused", file, maxExpandedBase+maxExpandedRatio*written)
		}
	}
}

// invalidUTF8At is the line and column (in bytes, from 1) of the first
// byte of data that is not UTF-8.
func invalidUTF8At(data []byte) (line, col int) {
	line, start := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return line, i - start + 1
		}
		if r == '\n' {
			line, start = line+1, i+1
		}
		i += size
	}
	return line, len(data) - start + 1
}

func isYAMLName(file string) bool {
	return slices.Contains(kustomizationNames, path.Base(file)) || path.Ext(file) == ".yaml" || path.Ext(file) == ".yml"
}

func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

// expandedNodes is the number of nodes n stands for once every alias is
// replaced by what it names; -1 when that is more than the base limit
// times the ratio (counting stops there) or aliases form a cycle.
func expandedNodes(n *yaml.Node, memo map[*yaml.Node]int, depth int) int {
	const limit = maxExpandedBase * maxExpandedRatio * 10
	if depth > 10_000 {
		return -1
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		n = n.Alias
	}
	if c, ok := memo[n]; ok {
		return c
	}
	memo[n] = -1 // an alias back into n while it is counted is a cycle
	c := 1
	for _, k := range n.Content {
		kc := expandedNodes(k, memo, depth+1)
		if kc < 0 || c+kc > limit {
			return -1
		}
		c += kc
	}
	memo[n] = c
	return c
}
