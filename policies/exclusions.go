package policies

import (
	"slices"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Exclusion is one row of the default table: objects that are never taken
// unless the mapping disables the row by ID (spec.resources.disableDefaultExclusions).
type Exclusion struct {
	ID          string
	Group, Kind string
	// Objects says which objects of the kind the row leaves out: "all", or
	// the condition in words.
	Objects string
	Reason  string
	// match picks the objects left out; nil means the whole kind.
	match func(*unstructured.Unstructured) bool
}

// DefaultExclusions returns the table of objects that are never taken by
// default, in a stable order. The package documentation shows the same table.
func DefaultExclusions() []Exclusion {
	return slices.Clone(defaultExclusions)
}

const all = "all"

var defaultExclusions = []Exclusion{
	{ID: "owned-pods", Kind: "Pod",
		Objects: "controlled by another object (an ownerReference with controller: true)",
		Reason:  "the controller (ReplicaSet, StatefulSet, DaemonSet, Job, …) makes them again on the target",
		match:   controlledBy("", "")},
	{ID: "deployment-replicasets", Group: "apps", Kind: "ReplicaSet",
		Objects: "controlled by a Deployment",
		Reason:  "the Deployment makes its ReplicaSets again on the target; old ones are only rollout history",
		match:   controlledBy("apps", "Deployment")},
	{ID: "cronjob-jobs", Group: "batch", Kind: "Job",
		Objects: "controlled by a CronJob",
		Reason:  "runs of the source's schedule; the CronJob on the target starts its own",
		match:   controlledBy("batch", "CronJob")},
	{ID: "ephemeral-volume-claims", Kind: "PersistentVolumeClaim",
		Objects: "controlled by a Pod (generic ephemeral volumes)",
		Reason:  "made and deleted with their Pod; the Pod's volume template makes them again",
		match:   controlledBy("", "Pod")},
	{ID: "pod-resource-claims", Group: "resource.k8s.io", Kind: "ResourceClaim",
		Objects: "controlled by a Pod (made from a ResourceClaimTemplate)",
		Reason:  "made and deleted with their Pod, and allocated to source devices",
		match:   controlledBy("", "Pod")},
	{ID: "controller-endpoints", Kind: "Endpoints",
		Objects: "labelled endpointslice.kubernetes.io/skip-mirror=true (kept by the endpoints controller)",
		Reason:  "derived from a Service's selector and the source's Pod IPs; Endpoints written by hand for a Service without selector are taken",
		match:   hasLabel("endpointslice.kubernetes.io/skip-mirror", "true")},
	{ID: "controller-endpointslices", Group: "discovery.k8s.io", Kind: "EndpointSlice",
		Objects: "managed by endpointslice-controller.k8s.io or endpointslicemirroring-controller.k8s.io",
		Reason:  "derived from Services and Endpoints on the target; slices written by hand are taken",
		match: func(u *unstructured.Unstructured) bool {
			switch u.GetLabels()["endpointslice.kubernetes.io/managed-by"] {
			case "endpointslice-controller.k8s.io", "endpointslicemirroring-controller.k8s.io":
				return true
			}
			return false
		}},
	{ID: "kubernetes-service", Kind: "Service",
		Objects: "default/kubernetes",
		Reason:  "the target's apiserver publishes its own; under a mapped namespace it would point nowhere",
		match:   named("default", "kubernetes")},
	{ID: "events", Kind: "Event", Objects: all,
		Reason: "a record of what happened on the source, not state"},
	{ID: "events-k8s-io", Group: "events.k8s.io", Kind: "Event", Objects: all,
		Reason: "the same events through the events.k8s.io API"},
	{ID: "leases", Group: "coordination.k8s.io", Kind: "Lease", Objects: all,
		Reason: "leader election and heartbeats of source processes; a copy would make the target's controllers wait for a holder that is not there"},
	{ID: "lease-candidates", Group: "coordination.k8s.io", Kind: "LeaseCandidate", Objects: all,
		Reason: "coordinated leader election of source processes"},
	{ID: "controller-revisions", Group: "apps", Kind: "ControllerRevision", Objects: all,
		Reason: "StatefulSet and DaemonSet history; the target's controllers write their own"},
	{ID: "service-account-tokens", Kind: "Secret",
		Objects: "of type kubernetes.io/service-account-token",
		Reason:  "signed by the source's keys for source ServiceAccount UIDs: useless on the target and a credential in the repository",
		match: func(u *unstructured.Unstructured) bool {
			t, _, _ := unstructured.NestedString(u.Object, "type")
			return t == "kubernetes.io/service-account-token"
		}},
	{ID: "kube-root-ca", Kind: "ConfigMap",
		Objects: "named kube-root-ca.crt",
		Reason:  "published in every namespace with the cluster's own CA; the target's differs",
		match:   named("", "kube-root-ca.crt")},
	{ID: "default-service-account", Kind: "ServiceAccount",
		Objects: "named default",
		Reason:  "made in every namespace by the target's ServiceAccount controller (disable the row to carry imagePullSecrets added to it)",
		match:   named("", "default")},
	{ID: "csi-storage-capacities", Group: "storage.k8s.io", Kind: "CSIStorageCapacity", Objects: all,
		Reason: "published by CSI drivers about the source's storage topology"},
	{ID: "pod-metrics", Group: "metrics.k8s.io", Kind: "PodMetrics", Objects: all,
		Reason: "read-only measurements served by metrics-server, not stored objects"},
	{ID: "persistent-volumes", Kind: "PersistentVolume", Objects: all,
		Reason: "bound to the source's disks; the target provisions its own volumes for the claims, and the PVC stage copies the data"},
}

func defaultExclusionByID(id string) (Exclusion, bool) {
	for _, x := range defaultExclusions {
		if x.ID == id {
			return x, true
		}
	}
	return Exclusion{}, false
}

func exclusionIDs() []string {
	ids := make([]string, len(defaultExclusions))
	for i, x := range defaultExclusions {
		ids[i] = x.ID
	}
	return ids
}

// controlledBy matches objects with a controller ownerReference to the
// given group and kind; kind "" matches any controller.
func controlledBy(group, kind string) func(*unstructured.Unstructured) bool {
	return func(u *unstructured.Unstructured) bool {
		for _, ref := range u.GetOwnerReferences() {
			if ref.Controller == nil || !*ref.Controller {
				continue
			}
			if kind == "" {
				return true
			}
			gv, err := schema.ParseGroupVersion(ref.APIVersion)
			if err == nil && gv.Group == group && ref.Kind == kind {
				return true
			}
		}
		return false
	}
}

func hasLabel(key, value string) func(*unstructured.Unstructured) bool {
	return func(u *unstructured.Unstructured) bool {
		v, ok := u.GetLabels()[key]
		return ok && v == value
	}
}

// named matches one object by name, in one namespace or ("") in any.
func named(namespace, name string) func(*unstructured.Unstructured) bool {
	return func(u *unstructured.Unstructured) bool {
		return u.GetName() == name && (namespace == "" || u.GetNamespace() == namespace)
	}
}
