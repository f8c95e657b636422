package policies

import (
	"cmp"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// FieldError is one problem with a mapping: a field that is unknown, of the
// wrong type or invalid. Decode and Validate return every FieldError they
// find, joined with errors.Join; get them back with errors.As or by
// unwrapping the joined error.
type FieldError struct {
	// File, Line and Column locate the problem; they are empty when the
	// mapping was not read from a file (Validate) or the place is unknown.
	File         string
	Line, Column int
	// Field is the path of the field, e.g. spec.namespaces[1].target;
	// empty for a problem with the document as a whole.
	Field string
	Err   error

	// dependsOn are paths of other fields the problem follows from (a
	// missing recipient follows from the mode): when one of them could not
	// be decoded, the problem is not reported.
	dependsOn []string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
			if e.Column > 0 {
				b.WriteString(":" + strconv.Itoa(e.Column))
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// fieldErrors collects FieldErrors.
type fieldErrors []*FieldError

func (l *fieldErrors) add(field string, err error) {
	*l = append(*l, &FieldError{Field: field, Err: err})
}

// addDep adds a problem that follows from the values of other fields.
func (l *fieldErrors) addDep(field string, err error, dependsOn ...string) {
	*l = append(*l, &FieldError{Field: field, Err: err, dependsOn: dependsOn})
}

func (l *fieldErrors) addf(field, msg string) {
	l.add(field, errors.New(msg))
}

// join sorts by position (then field) and joins; nil when empty.
func (l fieldErrors) join() error {
	if len(l) == 0 {
		return nil
	}
	sorted := slices.Clone(l)
	slices.SortStableFunc(sorted, func(a, b *FieldError) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	errs := make([]error, len(sorted))
	for i, e := range sorted {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// fieldPath builds paths in the form spec.namespaces[0].selector.matchLabels[app].
func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

func keyPath(parent, key string) string {
	return parent + "[" + key + "]"
}

// parentPath strips the last element of a path: a[1].b → a[1] → a → "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndex(p, "["); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndex(p, "."); i >= 0 {
		return p[:i]
	}
	return ""
}

// within reports whether path p is q or lies under it.
func within(p, q string) bool {
	if q == "" || p == q {
		return true
	}
	return strings.HasPrefix(p, q) && (p[len(q)] == '.' || p[len(q)] == '[')
}
