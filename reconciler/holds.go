package reconciler

import (
	"encoding/json"
	"strconv"
	"strings"
)

// This file decides, without asking the server, whether applying a desired
// object would change its live copy. It must never say "unchanged" when a
// server-side apply would change something; when in doubt it says "changed"
// and the caller lets a server-side dry run decide.
//
// An apply changes nothing when
//
//   - every field of the desired object is present in the live object with
//     an equal value (a subset check; associative lists are matched by their
//     keys, sets by their values, atomic values compared whole), and
//   - the fields owned by our field manager's Apply entry (managedFields,
//     FieldsV1) are exactly the fields of the desired object: a field we own
//     that the desired object no longer sets would be removed, a field we do
//     not own yet would change ownership.
//
// The owned field set also tells the shape of each value without a schema:
// "f:name" is a map or struct field, "k:{...}" an item of an associative
// list with its keys, "v:..." an item of a set, and a field with no children
// is atomic (compared whole).

// Fields of metadata that the apiserver sets or strips from field sets: a
// desired object may carry them (name and namespace always) without owning
// them.
var unownedMetadata = []string{"name", "namespace", "creationTimestamp", "resourceVersion", "uid", "generation", "managedFields", "selfLink"}

// appliedFields returns the field set (FieldsV1) of the Apply entry of
// manager in live's managedFields, for apiVersion.
func appliedFields(live map[string]any, manager, apiVersion string) (map[string]any, bool) {
	md, _ := live["metadata"].(map[string]any)
	entries, _ := md["managedFields"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		if entry["manager"] != manager || entry["operation"] != "Apply" {
			continue
		}
		if sub, _ := entry["subresource"].(string); sub != "" {
			continue
		}
		if entry["apiVersion"] != apiVersion || entry["fieldsType"] != "FieldsV1" {
			return nil, false
		}
		fields, ok := entry["fieldsV1"].(map[string]any)
		return fields, ok
	}
	return nil, false
}

// ownedBy reports whether manager has an Apply entry in live's managedFields.
func ownedBy(live map[string]any, manager string) bool {
	md, _ := live["metadata"].(map[string]any)
	entries, _ := md["managedFields"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		if entry["manager"] == manager && entry["operation"] == "Apply" {
			return true
		}
	}
	return false
}

// holds reports whether a server-side apply of desired by manager would
// leave live as it is.
func holds(desired, live map[string]any, manager string) bool {
	apiVersion, _ := desired["apiVersion"].(string)
	owned, ok := appliedFields(live, manager, apiVersion)
	if !ok {
		return false
	}
	if md, _ := live["metadata"].(map[string]any); md["deletionTimestamp"] != nil {
		return false
	}
	// The top level is always a struct, even when the desired object sets
	// nothing but its name (a Namespace) and we own no field at all.
	return holdsMap(applied(desired), live, owned, nil)
}

// applied returns the part of desired that an apply takes ownership of: no
// apiVersion and kind, no metadata that the apiserver sets, and no empty
// status (which an apply ignores or sets to nothing).
func applied(desired map[string]any) map[string]any {
	out := make(map[string]any, len(desired))
	for k, v := range desired {
		switch k {
		case "apiVersion", "kind":
			continue
		case "status":
			if m, ok := v.(map[string]any); v == nil || ok && len(m) == 0 {
				continue
			}
		case "metadata":
			md, ok := v.(map[string]any)
			if !ok {
				break
			}
			trimmed := make(map[string]any, len(md))
			for mk, mv := range md {
				trimmed[mk] = mv
			}
			for _, mk := range unownedMetadata {
				delete(trimmed, mk)
			}
			if len(trimmed) == 0 {
				continue
			}
			v = trimmed
		}
		out[k] = v
	}
	return out
}

func holdsValue(desired, live any, owned map[string]any) bool {
	switch d := desired.(type) {
	case map[string]any:
		l, ok := live.(map[string]any)
		if !ok {
			return false
		}
		if !hasChildren(owned) {
			return equal(d, l) // atomic
		}
		return holdsMap(d, l, owned, nil)
	case []any:
		l, ok := live.([]any)
		if !ok {
			return false
		}
		if !hasChildren(owned) {
			return equal(d, l) // atomic
		}
		return holdsList(d, l, owned)
	case nil:
		return false // a null asks to remove a field: let the server decide
	default:
		return !hasChildren(owned) && equal(d, live)
	}
}

// holdsMap checks a map or struct field by field. keyFields are the key
// fields of an associative list item: the apiserver may default one that the
// desired item leaves out (a port's protocol) without our owning it.
func holdsMap(d, l, owned map[string]any, keyFields map[string]any) bool {
	for k, dv := range d {
		o, ok := owned["f:"+k].(map[string]any)
		if !ok {
			return false
		}
		lv, ok := l[k]
		if !ok || !holdsValue(dv, lv, o) {
			return false
		}
	}
	for name := range owned {
		if name == "." {
			continue
		}
		field, ok := strings.CutPrefix(name, "f:")
		if !ok {
			return false
		}
		if _, ok := d[field]; ok {
			continue
		}
		if _, isKey := keyFields[field]; isKey {
			continue
		}
		return false // owned and no longer desired: an apply would remove it
	}
	return true
}

type ownedItem struct {
	key      map[string]any // the keys of an associative list item
	value    any            // the value of a set item
	children map[string]any
	used     bool
}

func holdsList(d, l []any, owned map[string]any) bool {
	var items []*ownedItem
	kind := byte(0)
	for name, child := range owned {
		if name == "." {
			continue
		}
		if len(name) < 3 || name[1] != ':' || (kind != 0 && name[0] != kind) {
			return false
		}
		kind = name[0]
		children, _ := child.(map[string]any)
		it := &ownedItem{children: children}
		switch kind {
		case 'k':
			if decodeJSON(name[2:], &it.key) != nil || len(it.key) == 0 {
				return false
			}
		case 'v':
			if decodeJSON(name[2:], &it.value) != nil {
				return false
			}
		default:
			return false // "i:" (by index) and anything else: unsure
		}
		items = append(items, it)
	}
	if len(items) != len(d) {
		return false // we own items that are no longer desired, or the reverse
	}
	last := -1
	for _, dv := range d {
		var it *ownedItem
		var li int
		if kind == 'k' {
			di, ok := dv.(map[string]any)
			if !ok {
				return false
			}
			if it = matchKey(items, di); it == nil {
				return false
			}
			if li = findKeyed(l, it.key); li < 0 {
				return false
			}
			if !holdsMap(di, l[li].(map[string]any), it.children, it.key) {
				return false
			}
		} else {
			for _, c := range items {
				if !c.used && equal(c.value, dv) {
					it = c
					break
				}
			}
			if it == nil {
				return false
			}
			if li = findValue(l, dv); li < 0 {
				return false
			}
		}
		it.used = true
		// An apply may reorder items that are out of the desired order.
		if li <= last {
			return false
		}
		last = li
	}
	return true
}

// matchKey finds the one unused owned item whose keys agree with the desired
// item's: a key field that the desired item leaves out matches any value (the
// apiserver defaulted it).
func matchKey(items []*ownedItem, d map[string]any) *ownedItem {
	var found *ownedItem
	for _, it := range items {
		if it.used {
			continue
		}
		match, set := true, 0
		for k, kv := range it.key {
			dv, ok := d[k]
			if !ok {
				continue
			}
			set++
			if !equal(dv, kv) {
				match = false
				break
			}
		}
		if !match || set == 0 {
			continue
		}
		if found != nil {
			return nil // ambiguous
		}
		found = it
	}
	return found
}

// findKeyed returns the index of the one live item with these key values.
func findKeyed(l []any, key map[string]any) int {
	found := -1
	for i, lv := range l {
		li, ok := lv.(map[string]any)
		if !ok {
			return -1
		}
		match := true
		for k, kv := range key {
			if !equal(li[k], kv) {
				match = false
				break
			}
		}
		if match {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

func findValue(l []any, v any) int {
	found := -1
	for i, lv := range l {
		if equal(lv, v) {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}

func hasChildren(owned map[string]any) bool {
	for name := range owned {
		if name != "." {
			return true
		}
	}
	return false
}

func decodeJSON(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	return dec.Decode(v)
}

// equal compares two JSON values, numbers by value whatever their Go type
// (int64, float64, json.Number).
func equal(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equal(xv, yv) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case string:
		y, ok := b.(string)
		return ok && x == y
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case nil:
		return b == nil
	}
	xn, ok := number(a)
	if !ok {
		return false
	}
	yn, ok := number(b)
	return ok && xn == yn
}

// number returns a canonical text of a JSON number.
func number(v any) (string, bool) {
	switch n := v.(type) {
	case int64:
		return strconv.FormatInt(n, 10), true
	case int:
		return strconv.Itoa(n), true
	case int32:
		return strconv.FormatInt(int64(n), 10), true
	case float64:
		if n == float64(int64(n)) && n >= -1<<53 && n <= 1<<53 {
			return strconv.FormatInt(int64(n), 10), true
		}
		return strconv.FormatFloat(n, 'g', -1, 64), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return strconv.FormatInt(i, 10), true
		}
		if f, err := n.Float64(); err == nil {
			return number(f)
		}
		return string(n), true
	}
	return "", false
}
