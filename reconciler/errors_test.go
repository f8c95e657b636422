package reconciler

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestImmutableFields(t *testing.T) {
	invalid := func(errs ...*field.Error) error {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", errs)
	}
	spec := field.NewPath("spec")
	for _, tc := range []struct {
		name   string
		err    error
		want   []string
		wantOK bool
	}{
		{
			name:   "ValidateImmutableField",
			err:    invalid(field.Invalid(spec.Child("selector"), "x", validation.FieldImmutableErrorMsg)),
			want:   []string{"spec.selector"},
			wantOK: true,
		},
		{
			name:   "Service clusterIP",
			err:    invalid(field.Invalid(spec.Child("clusterIPs").Index(0), []string{"10.0.0.2"}, "may not change once set")),
			want:   []string{"spec.clusterIPs[0]"},
			wantOK: true,
		},
		{
			name:   "PersistentVolumeClaim spec",
			err:    invalid(field.Forbidden(spec, "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims")),
			want:   []string{"spec"},
			wantOK: true,
		},
		{
			name:   "CEL transition rule",
			err:    invalid(field.Invalid(spec.Child("size"), 3, "Value is immutable")),
			want:   []string{"spec.size"},
			wantOK: true,
		},
		{
			name: "an immutable field and a plain invalid one: recreating would not help",
			err: invalid(
				field.Invalid(spec.Child("selector"), "x", validation.FieldImmutableErrorMsg),
				field.Invalid(spec.Child("replicas"), -1, "must be greater than or equal to 0"),
			),
		},
		{name: "plain invalid", err: invalid(field.Required(spec.Child("ports"), ""))},
		{name: "not invalid", err: apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "web", errors.New("field is immutable"))},
		{name: "not a status", err: errors.New("spec.selector: field is immutable")},
		{
			name:   "wrapped",
			err:    fmt.Errorf("apply: %w", invalid(field.Invalid(spec.Child("template"), "x", validation.FieldImmutableErrorMsg))),
			want:   []string{"spec.template"},
			wantOK: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := immutableFields(tc.err)
			if ok != tc.wantOK {
				t.Fatalf("immutableFields ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChangedUnder(t *testing.T) {
	desired := map[string]any{"spec": map[string]any{
		"storageClassName": "fast", "accessModes": []any{"ReadWriteOnce"},
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}}
	live := map[string]any{"spec": map[string]any{
		"storageClassName": "standard", "accessModes": []any{"ReadWriteOnce"}, "volumeMode": "Filesystem",
		"resources": map[string]any{"requests": map[string]any{"storage": "1Gi"}},
	}}
	if diff := cmp.Diff([]string{"spec.storageClassName"}, changedUnder(desired, live, []string{"spec"})); diff != "" {
		t.Errorf("changedUnder (-want +got):\n%s", diff)
	}
	if got := changedUnder(desired, live, []string{"metadata"}); got != nil {
		t.Errorf("changedUnder(metadata) = %v, want none", got)
	}
}

func TestObjectRefString(t *testing.T) {
	for _, tc := range []struct {
		ref  ObjectRef
		want string
	}{
		{ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "web"}, "ConfigMap/shop/web"},
		{ObjectRef{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"}, "Deployment.apps/shop/web"},
		{ObjectRef{Version: "v1", Kind: "Namespace", Name: "shop"}, "Namespace/shop"},
		{ObjectRef{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition", Name: "widgets.example.com"}, "CustomResourceDefinition.apiextensions.k8s.io/widgets.example.com"},
	} {
		if got := tc.ref.String(); got != tc.want {
			t.Errorf("%#v.String() = %q, want %q", tc.ref, got, tc.want)
		}
	}
}

func TestRefused(t *testing.T) {
	gr := schema.GroupResource{Resource: "configmaps"}
	unknown500 := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError,
		Message: "failed to create typed patch object (ns/c; /v1, Kind=ConfigMap): .data: expected map, got string"}}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "c", nil), true},
		{"bad request (strict field validation)", apierrors.NewBadRequest(`unknown field "spec.x"`), true},
		{"forbidden", apierrors.NewForbidden(gr, "c", errors.New("namespace is being terminated")), true},
		{"namespace not found", apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "shop"), true},
		{"a wrong type in a server-side apply", unknown500, true},
		{"kind not served", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Kind: "X"}}, true},
		{"wrapped", fmt.Errorf("dry run: %w", apierrors.NewBadRequest("x")), true},
		{"timeout", apierrors.NewTimeoutError("x", 1), false},
		{"server timeout", apierrors.NewServerTimeout(gr, "patch", 1), false},
		{"throttled", apierrors.NewTooManyRequests("x", 1), false},
		{"unavailable", apierrors.NewServiceUnavailable("x"), false},
		{"internal error (a webhook down)", apierrors.NewInternalError(errors.New("failed calling webhook")), false},
		{"unauthorized", apierrors.NewUnauthorized("x"), false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), false},
	} {
		if got := refused(tc.err); got != tc.want {
			t.Errorf("%s: refused(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestNewOptions(t *testing.T) {
	_, err := New(clusters.Target.Config, Options{})
	if err == nil {
		t.Error("New without InventoryName: want an error")
	}
	_, err = New(clusters.Target.Config, Options{InventoryName: "x", MassPruneRatio: 1.5})
	if err == nil {
		t.Error("New with MassPruneRatio 1.5: want an error")
	}
	m, err := New(clusters.Target.Config, Options{InventoryName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := Options{FieldManager: "dr-syncer", InventoryNamespace: "dr-syncer-system", InventoryName: "x", Workers: 32, MassPruneRatio: 0.25, WaitTimeout: 60 * time.Second}
	got := m.opts
	got.Recreate = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	for gk, want := range map[schema.GroupKind]bool{
		{Group: "batch", Kind: "Job"}:       true,
		{Kind: "Service"}:                   true,
		{Group: "apps", Kind: "Deployment"}: false,
		{Kind: "PersistentVolumeClaim"}:     false,
		{Kind: "Namespace"}:                 false,
		{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: false,
	} {
		if got := m.mayRecreate(gk); got != want {
			t.Errorf("mayRecreate(%s) = %v, want %v", gk, got, want)
		}
	}
}
