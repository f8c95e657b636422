package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads the mapping file at path and decodes it with Decode; errors
// name the path.
func Load(path string) (*SyncConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mapping: %w", err)
	}
	return Decode(path, data)
}

// Decode parses a mapping file strictly, fills in defaults and validates it.
// file names the data in errors only. Every problem is reported, not only the
// first: the error joins one *FieldError per problem (errors.Join), sorted by
// line, each naming the file, line, column and field path, e.g.
//
//	dr-syncer.yaml:9:7: spec.namespaces[0].sourc: unknown field (did you mean "source"?)
//	dr-syncer.yaml:11:11: spec.secrets.mode: want a string, got a list
func Decode(file string, data []byte) (*SyncConfig, error) {
	root, errs := parseDocument(data)
	if len(errs) == 0 {
		errs = checkIdentity(root)
	}
	if len(errs) > 0 {
		return nil, errs.inFile(file).join()
	}

	d := &decoder{pos: map[string]position{}}
	var c SyncConfig
	d.decode(root, reflect.ValueOf(&c).Elem(), "", nil)
	if d.aliases > maxAliases {
		// What was read is cut off: every other error would be noise (a
		// thousand "already mapped" for one alias repeated).
		return nil, fieldErrors{d.aliasErr}.inFile(file).join()
	}
	c.Default()
	errs = d.errs
	for _, e := range c.validate() {
		if d.explained(e.Field) || slices.ContainsFunc(e.dependsOn, d.explained) {
			continue
		}
		p := d.position(e.Field)
		e.Line, e.Column = p.line, p.column
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errs.inFile(file).join()
	}
	return &c, nil
}

func (l fieldErrors) inFile(file string) fieldErrors {
	for _, e := range l {
		e.File = file
	}
	return l
}

var wantDocument = fmt.Sprintf("want a %s document (apiVersion: %s)", Kind, APIVersion)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseDocument reads exactly one YAML document whose root is a mapping.
func parseDocument(data []byte) (*yaml.Node, fieldErrors) {
	var errs fieldErrors
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) || err == nil && isEmptyDocument(&doc) {
		errs.addf("", "empty file: "+wantDocument)
		return nil, errs
	}
	if err != nil {
		return nil, append(errs, syntaxError(err))
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, append(errs, syntaxError(err))
	default:
		errs = append(errs, &FieldError{Line: next.Line, Column: next.Column,
			Err: errors.New("more than one YAML document: want a single " + Kind)})
		return nil, errs
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		errs = append(errs, &FieldError{Line: root.Line, Column: root.Column,
			Err: fmt.Errorf("%s, got %s", wantDocument, describe(root))})
		return nil, errs
	}
	return root, nil
}

func isEmptyDocument(doc *yaml.Node) bool {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return true
	}
	n := doc.Content[0]
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func syntaxError(err error) *FieldError {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &FieldError{Line: line, Err: fmt.Errorf("invalid YAML: %s", m[2])}
	}
	return &FieldError{Err: fmt.Errorf("invalid YAML: %s", strings.TrimPrefix(msg, "yaml: "))}
}

// checkIdentity checks apiVersion and kind before anything else: a document
// of another kind or version would only give a list of misleading errors.
func checkIdentity(root *yaml.Node) fieldErrors {
	var errs fieldErrors
	check := func(key, want string) {
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value != key {
				continue
			}
			v := resolve(root.Content[i+1])
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str" && v.Value == want {
				return
			}
			got := describe(v)
			if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
				got = strconv.Quote(v.Value)
			}
			errs = append(errs, &FieldError{Line: v.Line, Column: v.Column, Field: key,
				Err: fmt.Errorf("is %s, want %q", got, want)})
			return
		}
		errs = append(errs, &FieldError{Line: root.Line, Column: root.Column, Field: key,
			Err: fmt.Errorf("is required, want %q", want)})
	}
	check("apiVersion", APIVersion)
	check("kind", Kind)
	return errs
}

type position struct{ line, column int }

// decoder walks a yaml.Node against Go types by their json tags, so that the
// file is read with the same field names as the Kubernetes-style JSON of the
// types, and every unknown field, wrong type or duplicate key is reported with
// its position (which sigs.k8s.io/yaml loses, and which yaml.v3's KnownFields
// reports against yaml tags, not json tags).
type decoder struct {
	errs fieldErrors
	// pos maps every field path seen to where it is written: the value for
	// scalars and flow collections, the key for block collections.
	pos map[string]position
	// aliases counts alias nodes followed: a few are fine, but nested
	// aliases could make a small file expand without bound.
	aliases  int
	aliasErr *FieldError // the error when there are too many
	// misread are the paths of fields that could not be read (wrong type) or
	// were probably meant (a misspelt field's suggestion): a validation error
	// about them would only repeat the decoding error.
	misread []string
}

func (d *decoder) fail(n *yaml.Node, path string, format string, args ...any) {
	d.errs = append(d.errs, &FieldError{Line: n.Line, Column: n.Column, Field: path,
		Err: fmt.Errorf(format, args...)})
}

// maxAliases bounds the aliases one file may follow.
const maxAliases = 1000

// decode reads n into v. key is the mapping key n is the value of, if any.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, key *yaml.Node) {
	if n.Kind == yaml.AliasNode {
		if d.aliases++; d.aliases > maxAliases {
			if d.aliases == maxAliases+1 {
				d.fail(n, path, "more than %d aliases: the file expands too much", maxAliases)
				d.aliasErr = d.errs[len(d.errs)-1]
			}
			return
		}
	}
	n = resolve(n)
	at := n
	if key != nil && n.Kind != yaml.ScalarNode && n.Style&yaml.FlowStyle == 0 {
		at = key
	}
	d.pos[path] = position{at.Line, at.Column}

	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // null leaves the zero value, as in JSON
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path, key)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if !d.wantScalar(n, path, "!!str", "a string") {
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		if !d.wantScalar(n, path, "!!bool", "a boolean") {
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.fail(n, path, "want a boolean")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !d.wantScalar(n, path, "!!int", "an integer") {
			return
		}
		var i int64
		if err := n.Decode(&i); err != nil || v.OverflowInt(i) {
			d.fail(n, path, "want an integer that fits %s", v.Type())
			d.misread = append(d.misread, path)
			return
		}
		v.SetInt(i)
	default:
		panic(fmt.Sprintf("policies: decoding into %s is not supported", v.Type()))
	}
}

func (d *decoder) wantScalar(n *yaml.Node, path, tag, want string) bool {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == tag {
		return true
	}
	got := describe(n)
	if n.Kind == yaml.ScalarNode && tag == "!!str" {
		got += " (quote it to make it a string)"
	}
	d.fail(n, path, "want %s, got %s", want, got)
	d.misread = append(d.misread, path)
	return false
}

func (d *decoder) wantKind(n *yaml.Node, path string, kind yaml.Kind, want string) bool {
	if n.Kind == kind {
		return true
	}
	d.fail(n, path, "want %s, got %s", want, describe(n))
	d.misread = append(d.misread, path)
	return false
}

// mappingKeys yields the keys and values of a mapping, reporting merge keys,
// keys that are not strings, and duplicates.
func (d *decoder) mappingKeys(n *yaml.Node, path string, child func(string, string) string, each func(k, v *yaml.Node)) {
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.ShortTag() == "!!merge":
			d.fail(k, path, "merge keys (<<) are not supported")
			continue
		case k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str":
			d.fail(k, path, "want a string key, got %s", describe(k))
			continue
		}
		if f, ok := first[k.Value]; ok {
			d.fail(k, child(path, k.Value), "duplicate key (first at line %d)", f.Line)
			continue
		}
		first[k.Value] = k
		each(k, v)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if !d.wantKind(n, path, yaml.MappingNode, "a mapping") {
		return
	}
	names, index := jsonFields(v.Type())
	d.mappingKeys(n, path, fieldPath, func(k, val *yaml.Node) {
		p := fieldPath(path, k.Value)
		i, ok := index[k.Value]
		if !ok {
			msg := "unknown field"
			meant := p
			if s := suggest(k.Value, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
				meant = fieldPath(path, s)
			}
			d.fail(k, p, "%s", msg)
			d.misread = append(d.misread, meant)
			return
		}
		d.decode(val, v.Field(i), p, k)
	})
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if !d.wantKind(n, path, yaml.SequenceNode, "a list") {
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.decode(item, s.Index(i), indexPath(path, i), nil)
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if !d.wantKind(n, path, yaml.MappingNode, "a mapping") {
		return
	}
	if v.Type().Key().Kind() != reflect.String {
		panic(fmt.Sprintf("policies: decoding into %s is not supported", v.Type()))
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	d.mappingKeys(n, path, keyPath, func(k, val *yaml.Node) {
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(val, e, keyPath(path, k.Value), k)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	})
	v.Set(m)
}

// position is where the field at path (or, when it is not written, its
// nearest written parent) is in the file.
func (d *decoder) position(path string) position {
	for {
		if p, ok := d.pos[path]; ok {
			return p
		}
		if path == "" {
			return position{}
		}
		path = parentPath(path)
	}
}

// explained reports whether a validation error at path is already explained
// by a decoding error: it concerns a field that could not be read, or an
// object one of whose fields could not be read.
func (d *decoder) explained(path string) bool {
	for _, m := range d.misread {
		if within(path, m) || within(m, path) {
			return true
		}
	}
	return false
}

// jsonFields lists a struct's fields by their JSON names, in order.
func jsonFields(t reflect.Type) ([]string, map[string]int) {
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
		index[name] = i
	}
	return names, index
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// describe names what a node holds, for "want X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		case "!!timestamp":
			return "a timestamp"
		default:
			return "a value tagged " + n.ShortTag()
		}
	default:
		return "nothing"
	}
}

// suggest returns the known name closest to a misspelt one, or "".
func suggest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		dist := editDistance(strings.ToLower(name), strings.ToLower(k))
		if dist < bestDist && dist <= (len(k)+1)/2 {
			best, bestDist = k, dist
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
