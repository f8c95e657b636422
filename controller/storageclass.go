package controller

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/dr-syncer/dr-syncer/policies"
)

// legacyClassAnnotation is the storage class of a claim before
// spec.storageClassName existed; the render stage maps it too.
const legacyClassAnnotation = "volume.beta.kubernetes.io/storage-class"

// checkStorageClasses refuses a set in which a claim (or a StatefulSet's
// claim template) asks for a storage class that spec.storageClasses maps to
// and the target does not have. The apiserver accepts such a claim, and it
// then waits forever: no volume, no data copied into it, and workloads that
// cannot start at failover. That is a mistake of the mapping, which a person
// must fix before anything is written. Classes the mapping does not name
// are the target's business (it may create them later) and are not checked;
// nor is anything when the target does not let us read StorageClasses.
func checkStorageClasses(ctx context.Context, opts ApplyOptions, objs []*unstructured.Unstructured) error {
	mapped := map[string]int{} // class → its first entry in spec.storageClasses
	for i, m := range opts.Config.Spec.StorageClasses {
		if _, ok := mapped[m.Target]; !ok {
			mapped[m.Target] = i
		}
	}
	if len(mapped) == 0 {
		return nil
	}
	var client kubernetes.Interface
	exists := map[string]bool{}
	for _, o := range objs {
		for _, class := range requestedClasses(o) {
			i, ok := mapped[class]
			if !ok {
				continue
			}
			found, seen := exists[class]
			if !seen {
				if client == nil {
					c, err := kubernetes.NewForConfig(opts.Target)
					if err != nil {
						return err
					}
					client = c
				}
				_, err := client.StorageV1().StorageClasses().Get(ctx, class, metav1.GetOptions{})
				switch {
				case err == nil, apierrors.IsForbidden(err):
					found = true
				case apierrors.IsNotFound(err):
					found = false
				default:
					return fmt.Errorf("StorageClass %s: %w", class, err)
				}
				exists[class] = found
			}
			if !found {
				gvk := o.GroupVersionKind()
				kind := gvk.Kind
				if gvk.Group != "" {
					kind += "." + gvk.Group
				}
				return fmt.Errorf("%s/%s/%s: storage class %q does not exist in the target (%s: spec.storageClasses[%d] maps %q to it); create it there or fix the mapping; nothing was applied",
					kind, o.GetNamespace(), o.GetName(), class, policies.FileName, i, opts.Config.Spec.StorageClasses[i].Source)
			}
		}
	}
	return nil
}

// requestedClasses lists the storage classes o asks for: a claim's, or
// those of a StatefulSet's claim templates.
func requestedClasses(o *unstructured.Unstructured) []string {
	claim := func(obj map[string]any) []string {
		var classes []string
		if c, ok, _ := unstructured.NestedString(obj, "spec", "storageClassName"); ok && c != "" {
			classes = append(classes, c)
		}
		if c, ok, _ := unstructured.NestedString(obj, "metadata", "annotations", legacyClassAnnotation); ok && c != "" {
			classes = append(classes, c)
		}
		return classes
	}
	gvk := o.GroupVersionKind()
	switch {
	case gvk.Group == "" && gvk.Kind == "PersistentVolumeClaim":
		return claim(o.Object)
	case gvk.Group == "apps" && gvk.Kind == "StatefulSet":
		templates, _, _ := unstructured.NestedSlice(o.Object, "spec", "volumeClaimTemplates")
		var classes []string
		for _, t := range templates {
			if m, ok := t.(map[string]any); ok {
				classes = append(classes, claim(m)...)
			}
		}
		return classes
	}
	return nil
}
