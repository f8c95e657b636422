package reconciler

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// ObjectDiff is what Apply would change in one object.
type ObjectDiff struct {
	Object ObjectRef
	Action Action
	// Diff is a unified diff, live ("---") to desired ("+++"), of the fields
	// dr-syncer manages, as YAML. Secret values are masked.
	Diff string
}

// Diff reports what Apply would change, without changing anything: one
// entry per object that Apply would create, configure, recreate, delete or
// skip, in apply order, then prune order; objects that already hold their
// desired state are left out.
//
// An existing object is compared as the target would store it: the fields
// dr-syncer manages (its field manager's entry in managedFields, before and
// after) of the live object and of the result of a server-side dry run of
// the desired one. An object to create is shown as the dry run would store
// it (or as desired, when its kind or namespace does not exist yet), an
// object to prune as it is. When the target refuses objects, Diff returns
// the diffs of the others with an *InvalidError.
func (m *Manager) Diff(ctx context.Context, objects []*unstructured.Unstructured) ([]ObjectDiff, error) {
	p, err := m.plan(ctx, objects, nil)
	if err != nil {
		return nil, err
	}
	prev, err := m.readInventory(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.classify(ctx, p.ready()); err != nil {
		return nil, err
	}
	p.markCRDChanges(false)
	invalid, err := m.validate(ctx, p.ready(), true)
	if err != nil {
		return nil, err
	}
	invalid = append(p.invalid, invalid...)

	var diffs []ObjectDiff
	for _, it := range p.items {
		var before, after map[string]any
		switch {
		case it.deferred:
			it.action = Created
			after = it.obj.Object
		case it.dry == nil && (it.action == Created || it.action == Configured):
			// Not validated: its CRD changes in the set (see markCRDChanges).
			if it.live != nil {
				before = managedPart(it.live.Object, appliedFieldsOf(it.live.Object, m.opts.FieldManager))
			}
			after = it.obj.Object
		case it.action == Created:
			after = managedPart(it.dry.Object, appliedFieldsOf(it.dry.Object, m.opts.FieldManager))
		case it.action == Configured:
			owned := unionFields(appliedFieldsOf(it.live.Object, m.opts.FieldManager), appliedFieldsOf(it.dry.Object, m.opts.FieldManager))
			before, after = managedPart(it.live.Object, owned), managedPart(it.dry.Object, owned)
		case it.action == Recreated:
			before = managedPart(it.live.Object, appliedFieldsOf(it.live.Object, m.opts.FieldManager))
			after = it.obj.Object
		default:
			continue
		}
		d, err := unifiedDiff(it.ref, before, after)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, ObjectDiff{Object: it.ref, Action: it.action, Diff: d})
	}

	pruned := m.prune(ctx, pruneCandidates(prev.entries(), p.keys()), true)
	for _, r := range pruned {
		if r.action == "" {
			continue
		}
		d := ""
		if r.action == Deleted && r.live != nil {
			if d, err = unifiedDiff(r.entry.Object, managedPart(r.live.Object, appliedFieldsOf(r.live.Object, m.opts.FieldManager)), nil); err != nil {
				return nil, err
			}
		}
		if r.action == Skipped {
			d = "# kept: " + r.reason + "\n"
		}
		diffs = append(diffs, ObjectDiff{Object: r.entry.Object, Action: r.action, Diff: d})
	}
	var errs []error
	if len(invalid) > 0 {
		errs = append(errs, &InvalidError{Errors: invalid})
	}
	if err := pruned.err(); err != nil {
		errs = append(errs, err)
	}
	switch len(errs) {
	case 0:
		return diffs, nil
	case 1:
		return diffs, errs[0]
	}
	return diffs, fmt.Errorf("%w\n%w", errs[0], errs[1])
}

// appliedFieldsOf returns manager's Apply field set in obj, whatever its
// apiVersion.
func appliedFieldsOf(obj map[string]any, manager string) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	entries, _ := md["managedFields"].([]any)
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		if entry["manager"] == manager && entry["operation"] == "Apply" {
			fields, _ := entry["fieldsV1"].(map[string]any)
			return fields
		}
	}
	return nil
}

// managedPart returns the part of obj in the field set owned, with the
// object's identity (apiVersion, kind, name, namespace).
func managedPart(obj, owned map[string]any) map[string]any {
	out, _ := project(obj, owned).(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	out["apiVersion"], out["kind"] = obj["apiVersion"], obj["kind"]
	md, _ := obj["metadata"].(map[string]any)
	outMD, _ := out["metadata"].(map[string]any)
	if outMD == nil {
		outMD = map[string]any{}
	}
	for _, k := range []string{"name", "namespace"} {
		if v, ok := md[k]; ok {
			outMD[k] = v
		}
	}
	out["metadata"] = outMD
	return out
}

// project returns the part of v that the field set owned covers; a field
// with no children is taken whole.
func project(v any, owned map[string]any) any {
	if !hasChildren(owned) {
		return v
	}
	switch x := v.(type) {
	case map[string]any:
		out := map[string]any{}
		for name, child := range owned {
			field, ok := strings.CutPrefix(name, "f:")
			if !ok {
				continue
			}
			if fv, ok := x[field]; ok {
				c, _ := child.(map[string]any)
				out[field] = project(fv, c)
			}
		}
		return out
	case []any:
		var out []any
		for _, e := range x {
			for name, child := range owned {
				c, _ := child.(map[string]any)
				if listItemIs(name, e) {
					out = append(out, project(e, c))
					break
				}
			}
		}
		return out
	}
	return v
}

// listItemIs reports whether the list item e is the one a field-set path
// element (k:{...} or v:...) names.
func listItemIs(name string, e any) bool {
	switch {
	case strings.HasPrefix(name, "k:"):
		var key map[string]any
		em, ok := e.(map[string]any)
		if !ok || decodeJSON(name[2:], &key) != nil {
			return false
		}
		for k, kv := range key {
			if !equal(em[k], kv) {
				return false
			}
		}
		return true
	case strings.HasPrefix(name, "v:"):
		var val any
		return decodeJSON(name[2:], &val) == nil && equal(val, e)
	}
	return false
}

// unionFields merges two field sets.
func unionFields(a, b map[string]any) map[string]any {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		av, _ := out[k].(map[string]any)
		bv, _ := v.(map[string]any)
		out[k] = unionFields(av, bv)
		if out[k] == nil {
			out[k] = map[string]any{}
		}
	}
	return out
}

// unifiedDiff renders before and after (nil: absent) as YAML and diffs
// them. Secret values are masked first.
func unifiedDiff(ref ObjectRef, before, after map[string]any) (string, error) {
	if ref.Group == "" && ref.Kind == "Secret" {
		before, after = maskSecret(before, after)
	}
	render := func(obj map[string]any) (string, error) {
		if obj == nil {
			return "", nil
		}
		b, err := yaml.Marshal(obj)
		if err != nil {
			return "", fmt.Errorf("%s: diff: %w", ref, err)
		}
		return string(b), nil
	}
	a, err := render(before)
	if err != nil {
		return "", err
	}
	b, err := render(after)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: lines(a), B: lines(b),
		FromFile: "live/" + ref.String(), ToFile: "desired/" + ref.String(),
		Context: 3,
	})
}

// maskSecret replaces the values of a Secret's data and stringData, so
// that a diff tells which keys change and never what they hold.
func maskSecret(before, after map[string]any) (map[string]any, map[string]any) {
	mask := func(obj, other map[string]any, label string) map[string]any {
		if obj == nil {
			return nil
		}
		out := make(map[string]any, len(obj))
		for k, v := range obj {
			out[k] = v
		}
		for _, field := range []string{"data", "stringData"} {
			values, ok := obj[field].(map[string]any)
			if !ok {
				continue
			}
			otherValues, _ := other[field].(map[string]any)
			masked := make(map[string]any, len(values))
			for k, v := range values {
				ov, ok := otherValues[k]
				if !ok || equal(v, ov) || other == nil {
					masked[k] = "***"
				} else {
					masked[k] = "*** (" + label + ")"
				}
			}
			out[field] = masked
		}
		return out
	}
	return mask(before, after, "before"), mask(after, before, "after")
}

// changedUnder returns the paths under fields (as the apiserver names them:
// spec.clusterIPs[0]) where a value of desired differs from live. A field
// the desired object does not set (the Service's clusterIPs, derived from
// clusterIP) is looked for under its parent.
func changedUnder(desired, live map[string]any, fields []string) []string {
	var out []string
	for _, f := range fields {
		path := f
		if i := strings.IndexByte(path, '['); i >= 0 {
			path = path[:i]
		}
		var parts []string
		if path != "" {
			parts = strings.Split(path, ".")
		}
		dv, ok := lookup(desired, parts)
		for !ok && len(parts) > 1 {
			parts = parts[:len(parts)-1]
			dv, ok = lookup(desired, parts)
		}
		if !ok {
			continue
		}
		lv, _ := lookup(live, parts)
		for _, c := range appendChanged(nil, strings.Join(parts, "."), dv, lv) {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

func lookup(obj map[string]any, parts []string) (any, bool) {
	var v any = obj
	for _, p := range parts {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[p]; !ok {
			return nil, false
		}
	}
	return v, true
}

// appendChanged appends the paths of the values of desired that live does
// not hold: maps are compared key by key and lists of the same length item
// by item, so that what the server defaults does not count.
func appendChanged(out []string, path string, desired, live any) []string {
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	switch d := desired.(type) {
	case map[string]any:
		if l, ok := live.(map[string]any); ok {
			for k, dv := range d {
				out = appendChanged(out, join(k), dv, l[k])
			}
			return out
		}
	case []any:
		if l, ok := live.([]any); ok && len(l) == len(d) {
			before := len(out)
			for i := range d {
				if len(appendChanged(nil, path, d[i], l[i])) > 0 {
					return append(out[:before], path)
				}
			}
			return out
		}
	default:
		if equal(desired, live) {
			return out
		}
	}
	return append(out, path)
}

func lines(s string) []string {
	if s == "" {
		return nil // an absent object has no lines, not one empty line
	}
	return difflib.SplitLines(s)
}
