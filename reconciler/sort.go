package reconciler

import (
	"cmp"
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// stage is one step of a staged apply. Objects of a stage are applied in
// parallel; a stage starts when the one before it is done. Prune runs the
// stages backwards.
type stage int

const (
	stageCRDs       stage = iota // CustomResourceDefinitions, then wait until Established
	stageNamespaces              // Namespaces
	stageCluster                 // every other cluster-scoped object (ClusterRoles, StorageClasses, cluster-scoped custom objects, ...)
	stageConfig                  // ConfigMaps, Secrets, ServiceAccounts, ResourceQuotas, LimitRanges
	stageRBAC                    // Roles, RoleBindings
	stageStorage                 // PersistentVolumeClaims
	stageNetworking              // Services, Endpoints, EndpointSlices, Ingresses, NetworkPolicies
	stageWorkloads               // Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs, Pods, ...
	stageOther                   // every other namespaced object (custom objects, HPAs, PDBs, ...)
	stageWebhooks                // admission webhook configurations: last, so that a webhook whose server is not up yet cannot block the rest
	numStages
)

var stageNames = [numStages]string{"crds", "namespaces", "cluster", "config", "rbac", "storage", "networking", "workloads", "other", "webhooks"}

func (s stage) String() string { return stageNames[s] }

// namespacedStages places the namespaced built-in kinds. A kind of another
// group with the same name (a custom "Deployment") is not matched.
var namespacedStages = map[schema.GroupKind]stage{
	{Kind: "ConfigMap"}:      stageConfig,
	{Kind: "Secret"}:         stageConfig,
	{Kind: "ServiceAccount"}: stageConfig,
	{Kind: "ResourceQuota"}:  stageConfig,
	{Kind: "LimitRange"}:     stageConfig,

	{Group: "rbac.authorization.k8s.io", Kind: "Role"}:        stageRBAC,
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}: stageRBAC,

	{Kind: "PersistentVolumeClaim"}: stageStorage,

	{Kind: "Service"}:   stageNetworking,
	{Kind: "Endpoints"}: stageNetworking,
	{Group: "discovery.k8s.io", Kind: "EndpointSlice"}:  stageNetworking,
	{Group: "networking.k8s.io", Kind: "Ingress"}:       stageNetworking,
	{Group: "networking.k8s.io", Kind: "NetworkPolicy"}: stageNetworking,
	{Group: "apps", Kind: "Deployment"}:                 stageWorkloads,
	{Group: "apps", Kind: "StatefulSet"}:                stageWorkloads,
	{Group: "apps", Kind: "DaemonSet"}:                  stageWorkloads,
	{Group: "apps", Kind: "ReplicaSet"}:                 stageWorkloads,
	{Group: "batch", Kind: "Job"}:                       stageWorkloads,
	{Group: "batch", Kind: "CronJob"}:                   stageWorkloads,
	{Kind: "Pod"}:                                       stageWorkloads,
	{Kind: "ReplicationController"}:                     stageWorkloads,
	{Kind: "PodTemplate"}:                               stageWorkloads,
}

var (
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	webhookGKs  = map[schema.GroupKind]bool{
		{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: true,
		{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   true,
	}
)

// stageOf returns the stage of objects of kind gk.
func stageOf(gk schema.GroupKind, namespaced bool) stage {
	switch {
	case gk == crdGK:
		return stageCRDs
	case gk == namespaceGK:
		return stageNamespaces
	case webhookGKs[gk]:
		return stageWebhooks
	case !namespaced:
		return stageCluster
	}
	if s, ok := namespacedStages[gk]; ok {
		return s
	}
	return stageOther
}

// sortRefs orders refs for applying: by stage, then by kind, namespace and
// name, so that the order does not depend on the order of the input.
func sortRefs(refs []ObjectRef) {
	slices.SortFunc(refs, func(a, b ObjectRef) int {
		return compareRefs(a, stageOf(a.GroupKind(), a.Namespace != ""), b, stageOf(b.GroupKind(), b.Namespace != ""))
	})
}

func compareRefs(a ObjectRef, sa stage, b ObjectRef, sb stage) int {
	return cmp.Or(
		cmp.Compare(sa, sb),
		cmp.Compare(a.Group, b.Group),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
	)
}
