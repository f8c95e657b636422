package reconciler

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ErrMassPrune is returned (wrapped) when an apply would prune more than
// Options.MassPruneRatio of the inventory and ApplyOptions.AllowMassPrune is
// not set. Nothing has been applied: a person must confirm the prune.
var ErrMassPrune = errors.New("mass prune refused")

// ObjectError is an error about one object: Op is what was being done
// (dry run, apply, delete, ...). Its message starts with the object.
type ObjectError struct {
	Object ObjectRef
	Op     string
	Err    error
}

func (e *ObjectError) Error() string { return e.Object.String() + ": " + e.Op + ": " + e.Err.Error() }

func (e *ObjectError) Unwrap() error { return e.Err }

func objectErr(ref ObjectRef, op string, err error) error {
	return &ObjectError{Object: ref, Op: op, Err: err}
}

// InvalidError lists every object of a set that the target refused in the
// server-side dry run (invalid, forbidden, a field that cannot change, a
// kind or namespace that does not exist, ...), one error per object
// (*ObjectError or *ImmutableError). Nothing of the set was written, except
// when Partial is set. A person must fix the set.
type InvalidError struct {
	Errors []error
	// Partial is set when the refused objects could only be validated after
	// the set's CustomResourceDefinitions and Namespaces were applied (their
	// kind or namespace is defined by the set itself): those were applied,
	// nothing else was.
	Partial bool
}

func (e *InvalidError) Error() string {
	outcome := "nothing was applied"
	if e.Partial {
		outcome = "only the set's CustomResourceDefinitions and Namespaces were applied"
	}
	// One refused object: one line that starts with it, as every error
	// about one object does.
	if len(e.Errors) == 1 {
		return e.Errors[0].Error() + " (" + outcome + ")"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "the target refused %d objects of the set; %s", len(e.Errors), outcome)
	for _, err := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

// Unwrap returns the errors of each object, for errors.As and errors.Is.
func (e *InvalidError) Unwrap() []error { return e.Errors }

// ImmutableError says that the set changes a field of an object that the
// target does not allow to change, and that Options.Recreate does not allow
// deleting and recreating objects of its kind. A person must act (recreate
// the object by hand, or revert the change).
type ImmutableError struct {
	Object ObjectRef
	// Fields are the fields the target names, e.g. spec.clusterIPs[0], or
	// spec for a PersistentVolumeClaim.
	Fields []string
	// Changed are the paths under Fields where the desired object differs
	// from the live one, e.g. spec.storageClassName, when they can be told.
	Changed []string
	// Err is the target's error.
	Err error
}

func (e *ImmutableError) Error() string {
	var b strings.Builder
	b.WriteString(e.Object.String())
	b.WriteString(": apply: field")
	if len(e.Fields) > 1 {
		b.WriteString("s")
	}
	b.WriteString(" " + strings.Join(e.Fields, ", ") + " cannot change")
	if len(e.Changed) > 0 {
		b.WriteString(" (changed: " + strings.Join(e.Changed, ", ") + ")")
	}
	fmt.Fprintf(&b, "; recreating %s is not allowed", e.Object.GroupKind())
	return b.String()
}

func (e *ImmutableError) Unwrap() error { return e.Err }

// immutableFields returns the fields named by an error of the target that
// is about fields that cannot change, and false for any other error. The
// check is typed: an Invalid status whose every cause is of type
// FieldValueInvalid or FieldValueForbidden and says, in the wording of the
// apiserver's validation (validation.FieldImmutableErrorMsg, "... is
// immutable ...", the Service's "may not change once set"), that the field
// cannot change. An error with any other cause is not one: recreating would
// not make the object valid.
func immutableFields(err error) ([]string, bool) {
	if !apierrors.IsInvalid(err) {
		return nil, false
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return nil, false
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		return nil, false
	}
	var fields []string
	for _, c := range details.Causes {
		if !immutableCause(c) {
			return nil, false
		}
		fields = append(fields, c.Field)
	}
	return fields, true
}

func immutableCause(c metav1.StatusCause) bool {
	if c.Type != metav1.CauseType(field.ErrorTypeInvalid) && c.Type != metav1.CauseType(field.ErrorTypeForbidden) {
		return false
	}
	return strings.Contains(c.Message, validation.FieldImmutableErrorMsg) ||
		strings.Contains(c.Message, " is immutable") || strings.Contains(c.Message, "Value is immutable") ||
		strings.Contains(c.Message, "may not change once set")
}

// refused reports whether an error of a dry run (or apply) is the target
// refusing this object, as opposed to a failure to reach it or a transient
// condition (timeouts, throttling, an unavailable webhook, ...), which the
// caller retries. Any other answer of the target is about the object: its
// 4xx statuses, and the 500 without a reason that the apiserver sends for an
// error it has no type for, such as a value of the wrong type in a
// server-side apply ("failed to create typed patch object").
func refused(err error) bool {
	if meta.IsNoMatchError(err) {
		return true
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	if s.Code == http.StatusInternalServerError && s.Reason == metav1.StatusReasonUnknown {
		return true // checked first: IsInternalError says yes to it too
	}
	switch {
	case apierrors.IsUnauthorized(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err):
		return false
	}
	return s.Code >= 400 && s.Code < 500
}
