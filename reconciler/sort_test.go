package reconciler

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestStageOf(t *testing.T) {
	for _, tc := range []struct {
		gk         schema.GroupKind
		namespaced bool
		want       stage
	}{
		{schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}, false, stageCRDs},
		{schema.GroupKind{Kind: "Namespace"}, false, stageNamespaces},
		{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}, false, stageCluster},
		{schema.GroupKind{Group: "storage.k8s.io", Kind: "StorageClass"}, false, stageCluster},
		{schema.GroupKind{Group: "example.com", Kind: "ClusterWidget"}, false, stageCluster},
		{schema.GroupKind{Kind: "ConfigMap"}, true, stageConfig},
		{schema.GroupKind{Kind: "Secret"}, true, stageConfig},
		{schema.GroupKind{Kind: "ServiceAccount"}, true, stageConfig},
		{schema.GroupKind{Kind: "ResourceQuota"}, true, stageConfig},
		{schema.GroupKind{Kind: "LimitRange"}, true, stageConfig},
		{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "Role"}, true, stageRBAC},
		{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}, true, stageRBAC},
		{schema.GroupKind{Kind: "PersistentVolumeClaim"}, true, stageStorage},
		{schema.GroupKind{Kind: "Service"}, true, stageNetworking},
		{schema.GroupKind{Group: "networking.k8s.io", Kind: "Ingress"}, true, stageNetworking},
		{schema.GroupKind{Group: "networking.k8s.io", Kind: "NetworkPolicy"}, true, stageNetworking},
		{schema.GroupKind{Group: "apps", Kind: "Deployment"}, true, stageWorkloads},
		{schema.GroupKind{Group: "apps", Kind: "StatefulSet"}, true, stageWorkloads},
		{schema.GroupKind{Group: "apps", Kind: "DaemonSet"}, true, stageWorkloads},
		{schema.GroupKind{Group: "batch", Kind: "Job"}, true, stageWorkloads},
		{schema.GroupKind{Group: "batch", Kind: "CronJob"}, true, stageWorkloads},
		{schema.GroupKind{Kind: "Pod"}, true, stageWorkloads},
		{schema.GroupKind{Group: "example.com", Kind: "Widget"}, true, stageOther},
		{schema.GroupKind{Group: "example.com", Kind: "Deployment"}, true, stageOther}, // not apps: a custom kind
		{schema.GroupKind{Group: "autoscaling", Kind: "HorizontalPodAutoscaler"}, true, stageOther},
		{schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}, false, stageWebhooks},
		{schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}, false, stageWebhooks},
	} {
		if got := stageOf(tc.gk, tc.namespaced); got != tc.want {
			t.Errorf("stageOf(%s, namespaced=%v) = %s, want %s", tc.gk, tc.namespaced, got, tc.want)
		}
	}
}

func TestSortRefs(t *testing.T) {
	want := []ObjectRef{
		{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition", Name: "widgets.example.com"},
		{Version: "v1", Kind: "Namespace", Name: "a"},
		{Version: "v1", Kind: "Namespace", Name: "shop"},
		{Group: "example.com", Version: "v1", Kind: "ClusterWidget", Name: "big"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole", Name: "reader"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "a", Name: "z"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "a"},
		{Version: "v1", Kind: "ConfigMap", Namespace: "shop", Name: "b"},
		{Version: "v1", Kind: "Secret", Namespace: "shop", Name: "creds"},
		{Version: "v1", Kind: "ServiceAccount", Namespace: "shop", Name: "web"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role", Namespace: "shop", Name: "web"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding", Namespace: "shop", Name: "web"},
		{Version: "v1", Kind: "PersistentVolumeClaim", Namespace: "shop", Name: "data"},
		{Version: "v1", Kind: "Service", Namespace: "shop", Name: "web"},
		{Group: "networking.k8s.io", Version: "v1", Kind: "Ingress", Namespace: "shop", Name: "web"},
		{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
		{Group: "apps", Version: "v1", Kind: "StatefulSet", Namespace: "shop", Name: "db"},
		{Group: "batch", Version: "v1", Kind: "Job", Namespace: "shop", Name: "migrate"},
		{Group: "example.com", Version: "v1", Kind: "Widget", Namespace: "shop", Name: "blue"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration", Name: "check"},
	}
	for range 20 {
		got := slices.Clone(want)
		rand.Shuffle(len(got), func(i, j int) { got[i], got[j] = got[j], got[i] })
		sortRefs(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("sortRefs (-want +got):\n%s", diff)
		}
	}
}
