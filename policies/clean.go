package policies

import (
	"encoding/json"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Clean returns a copy of obj made fit for server-side apply to another
// cluster: what the source's apiserver and controllers wrote about this
// particular copy (status, identity, allocations, bindings to source nodes
// and volumes) is removed, what people wrote is kept. obj is not modified.
// The rules are the table cleanRules below.
func Clean(obj *unstructured.Unstructured) *unstructured.Unstructured {
	return CleanInPlace(obj.DeepCopy())
}

// CleanInPlace is Clean without the copy: it cleans obj itself and returns
// it. It is for a caller that owns obj, such as an item of a LIST it made:
// copying was most of what cleaning a listed object cost.
func CleanInPlace(obj *unstructured.Unstructured) *unstructured.Unstructured {
	c := &cleaning{
		obj:     obj.Object,
		gk:      obj.GroupVersionKind().GroupKind(),
		managed: parseManagedFields(obj.Object),
	}
	for _, r := range cleanRules {
		if r.kind.Empty() || r.kind == c.gk {
			r.clean(c)
		}
	}
	return obj
}

// cleanRule is one cleaning rule; kind limits it to one kind (empty: all).
type cleanRule struct {
	name  string
	kind  schema.GroupKind
	clean func(*cleaning)
}

// The kinds some rules are limited to; allKinds is the zero GroupKind.
var (
	allKinds         = schema.GroupKind{}
	serviceGK        = schema.GroupKind{Kind: "Service"}
	pvcGK            = schema.GroupKind{Kind: "PersistentVolumeClaim"}
	podGK            = schema.GroupKind{Kind: "Pod"}
	jobGK            = schema.GroupKind{Group: "batch", Kind: "Job"}
	serviceAccountGK = schema.GroupKind{Kind: "ServiceAccount"}
	namespaceGK      = schema.GroupKind{Kind: "Namespace"}
	daemonSetGK      = schema.GroupKind{Group: "apps", Kind: "DaemonSet"}
)

// cleanRules is every cleaning rule, in the order applied. Each has a golden
// test case testdata/clean/<name>.before.yaml → <name>.after.yaml.
var cleanRules = []cleanRule{
	{"status", allKinds, dropStatus},
	{"server-metadata", allKinds, dropServerMetadata},
	{"owner-references", allKinds, dropOwnerReferences},
	{"finalizers", allKinds, dropFinalizers},
	{"applied-annotations", allKinds, dropAppliedAnnotations},
	{"namespace-name-label", namespaceGK, dropNamespaceNameLabel},
	{"service-cluster-ip", serviceGK, dropClusterIP},
	{"service-node-ports", serviceGK, dropAllocatedNodePorts},
	{"service-ip-families", serviceGK, dropDefaultedIPFamilies},
	{"pvc-binding", pvcGK, dropVolumeBinding},
	{"pvc-data-source", pvcGK, dropDataSource},
	{"pod-node", podGK, dropNodeName},
	{"pod-priority", podGK, dropComputedPriority},
	{"pod-ephemeral-containers", podGK, dropEphemeralContainers},
	{"job-generated-selector", jobGK, dropGeneratedJobSelector},
	{"service-account-token-refs", serviceAccountGK, dropTokenSecretRefs},
	{"daemonset-template-generation", daemonSetGK, dropTemplateGeneration},
	{"empty-metadata-maps", allKinds, dropEmptyMetadataMaps},
}

type cleaning struct {
	obj     map[string]any
	gk      schema.GroupKind
	managed managedFields
}

func (c *cleaning) metadata() map[string]any {
	m, _ := c.obj["metadata"].(map[string]any)
	return m
}

func (c *cleaning) spec() map[string]any {
	m, _ := c.obj["spec"].(map[string]any)
	return m
}

// annotations and labels return the object's maps (nil when absent); delete
// from them in place.
func (c *cleaning) annotations() map[string]any {
	m, _ := c.metadata()["annotations"].(map[string]any)
	return m
}

func (c *cleaning) labels() map[string]any {
	m, _ := c.metadata()["labels"].(map[string]any)
	return m
}

// dropStatus: status is what controllers observed on the source. For kinds
// without a status subresource it would even be applied as desired state.
func dropStatus(c *cleaning) {
	delete(c.obj, "status")
}

// dropServerMetadata: identity and bookkeeping of the source's copy. A
// resourceVersion or uid from another cluster makes an apply fail or, worse,
// match by accident; managedFields are the source's field ownership.
func dropServerMetadata(c *cleaning) {
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp",
		"managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		delete(c.metadata(), f)
	}
}

// dropOwnerReferences: owners are named by source UIDs, which do not exist on
// the target, and the target's garbage collector deletes objects whose owner
// is gone.
func dropOwnerReferences(c *cleaning) {
	delete(c.metadata(), "ownerReferences")
}

// dropFinalizers: finalizers are the bookkeeping of controllers on the
// source (pvc-protection, operators' cleanup). The target's controllers add
// their own; one whose controller does not run on the target would block
// every delete (prune, rollback) forever.
func dropFinalizers(c *cleaning) {
	delete(c.metadata(), "finalizers")
}

// dropAppliedAnnotations: kubectl's last-applied-configuration is the
// source's client-side apply history (and holds a Secret's data in
// plaintext); a Deployment's revision is its controller's rollout counter.
func dropAppliedAnnotations(c *cleaning) {
	delete(c.annotations(), "kubectl.kubernetes.io/last-applied-configuration")
	delete(c.annotations(), "deployment.kubernetes.io/revision")
}

// dropNamespaceNameLabel: the apiserver sets kubernetes.io/metadata.name to a
// Namespace's name. After namespace mapping the source's value is wrong, and
// the target would always differ from what is applied.
func dropNamespaceNameLabel(c *cleaning) {
	delete(c.labels(), "kubernetes.io/metadata.name")
}

// dropClusterIP: cluster IPs are allocated from the source's service CIDR.
// "None" (headless) is meaning, not allocation, and stays.
func dropClusterIP(c *cleaning) {
	spec := c.spec()
	if ip, _ := spec["clusterIP"].(string); ip != "None" {
		delete(spec, "clusterIP")
	}
	ips, _ := spec["clusterIPs"].([]any)
	if len(ips) != 1 || ips[0] != "None" {
		delete(spec, "clusterIPs")
	}
}

// dropAllocatedNodePorts: a nodePort or healthCheckNodePort the apiserver
// allocated may be taken on the target; one a person chose is meaning. The
// apiserver allocates after field ownership is recorded, so an allocated
// port is owned by no manager, and a chosen one is. An object without
// managedFields (an export, or one already cleaned) keeps its ports: a
// port in use fails the apply loudly, where dropping a chosen one would
// change the Service silently; and Clean stays idempotent.
func dropAllocatedNodePorts(c *cleaning) {
	spec := c.spec()
	ports, _ := spec["ports"].([]any)
	for _, p := range ports {
		port, _ := p.(map[string]any)
		if _, ok := port["nodePort"]; ok && !c.managed.ownsServicePortField(port, "nodePort") {
			delete(port, "nodePort")
		}
	}
	if _, ok := spec["healthCheckNodePort"]; ok && !c.managed.owns("f:spec", "f:healthCheckNodePort") {
		delete(spec, "healthCheckNodePort")
	}
}

// dropDefaultedIPFamilies: the apiserver fills ipFamilies and ipFamilyPolicy
// from the source cluster's networks (after ownership is recorded, like
// allocated ports); on a target with other families they fail or mislead.
// Families a person set are kept, and so are all without managedFields.
func dropDefaultedIPFamilies(c *cleaning) {
	spec := c.spec()
	for _, f := range []string{"ipFamilies", "ipFamilyPolicy"} {
		if _, ok := spec[f]; ok && !c.managed.owns("f:spec", "f:"+f) {
			delete(spec, f)
		}
	}
}

// dropVolumeBinding: a claim's volumeName binds it to a source
// PersistentVolume (the claim would wait for it forever), and the PV
// controller's annotations name the source's binding, provisioner and node.
// The target provisions a new volume, which the PVC stage fills.
func dropVolumeBinding(c *cleaning) {
	delete(c.spec(), "volumeName")
	ann := c.annotations()
	for k := range ann {
		switch {
		case strings.HasPrefix(k, "pv.kubernetes.io/"),
			k == "volume.kubernetes.io/selected-node",
			k == "volume.beta.kubernetes.io/storage-provisioner",
			k == "volume.kubernetes.io/storage-provisioner":
			delete(ann, k)
		}
	}
}

// dropDataSource: a claim populated from a source-side VolumeSnapshot or
// claim would wait on the target for a snapshot that does not exist there;
// its data comes from the PVC stage instead.
func dropDataSource(c *cleaning) {
	delete(c.spec(), "dataSource")
	delete(c.spec(), "dataSourceRef")
}

// dropNodeName: the node the source's scheduler chose; it does not exist on
// the target.
func dropNodeName(c *cleaning) {
	delete(c.spec(), "nodeName")
}

// dropComputedPriority: priority admission computes priority and
// preemptionPolicy from priorityClassName and refuses a Pod whose values
// differ from the target's PriorityClass.
func dropComputedPriority(c *cleaning) {
	delete(c.spec(), "priority")
	delete(c.spec(), "preemptionPolicy")
}

// dropEphemeralContainers: debugging sessions on the source, and the
// apiserver refuses them on create.
func dropEphemeralContainers(c *cleaning) {
	delete(c.spec(), "ephemeralContainers")
}

var jobUIDLabels = []string{"controller-uid", "batch.kubernetes.io/controller-uid"}

// dropGeneratedJobSelector: unless manualSelector is true, the apiserver
// generates a Job's selector from the Job's UID and refuses a Job that
// brings its own; the UID labels in the template and on the Job would select
// nothing on the target.
func dropGeneratedJobSelector(c *cleaning) {
	spec := c.spec()
	if manual, _ := spec["manualSelector"].(bool); manual {
		return
	}
	delete(spec, "selector")
	tmplLabels, _, _ := unstructured.NestedFieldNoCopy(spec, "template", "metadata", "labels")
	for _, m := range []any{tmplLabels, c.metadata()["labels"]} {
		if m, ok := m.(map[string]any); ok {
			for _, k := range jobUIDLabels {
				delete(m, k)
			}
		}
	}
	dropEmptyMap(spec, "template", "metadata", "labels")
}

// tokenSuffix is the name suffix of the token Secrets the legacy token
// controller made for a ServiceAccount: "-token-" and five characters of the
// apiserver's random-name alphabet.
var tokenSuffix = regexp.MustCompile(`^-token-[bcdfghjklmnpqrstvwxz2456789]{5}$`)

// dropTokenSecretRefs: a ServiceAccount's secrets list names the token
// Secrets made for it on the source; they are not taken
// (service-account-tokens), so the references would dangle.
func dropTokenSecretRefs(c *cleaning) {
	name, _ := c.metadata()["name"].(string)
	refs, _ := c.obj["secrets"].([]any)
	kept := refs[:0:0]
	for _, r := range refs {
		ref, _ := r.(map[string]any)
		n, _ := ref["name"].(string)
		if rest, ok := strings.CutPrefix(n, name); ok && tokenSuffix.MatchString(rest) {
			continue
		}
		kept = append(kept, r)
	}
	switch {
	case len(kept) == 0:
		delete(c.obj, "secrets")
	case len(kept) < len(refs):
		c.obj["secrets"] = kept
	}
}

// dropTemplateGeneration: the apiserver sets this annotation to the
// DaemonSet's generation on the source; the target's would always differ.
func dropTemplateGeneration(c *cleaning) {
	delete(c.annotations(), "deprecated.daemonset.template.generation")
}

// dropEmptyMetadataMaps: rules above may leave empty annotations or labels;
// an empty map in a file is noise in every diff.
func dropEmptyMetadataMaps(c *cleaning) {
	dropEmptyMap(c.obj, "metadata", "annotations")
	dropEmptyMap(c.obj, "metadata", "labels")
}

func dropEmptyMap(obj map[string]any, fields ...string) {
	v, ok, _ := unstructured.NestedFieldNoCopy(obj, fields...)
	if m, isMap := v.(map[string]any); ok && (v == nil || isMap && len(m) == 0) {
		unstructured.RemoveNestedField(obj, fields...)
	}
}

// managedFields are the FieldsV1 sets of every manager of an object; nil when
// the object has none, and then ownership is unknown and every field counts
// as owned.
type managedFields []map[string]any

func parseManagedFields(obj map[string]any) managedFields {
	list, _, _ := unstructured.NestedFieldNoCopy(obj, "metadata", "managedFields")
	entries, _ := list.([]any)
	var sets managedFields
	for _, e := range entries {
		entry, _ := e.(map[string]any)
		if t, _ := entry["fieldsType"].(string); t != "FieldsV1" {
			continue
		}
		if set, ok := entry["fieldsV1"].(map[string]any); ok {
			sets = append(sets, set)
		}
	}
	return sets
}

// owns reports whether some manager owns the field at path, e.g.
// owns("f:spec", "f:healthCheckNodePort").
func (m managedFields) owns(path ...string) bool {
	if m == nil {
		return true
	}
	for _, set := range m {
		if _, ok, _ := unstructured.NestedFieldNoCopy(set, path...); ok {
			return true
		}
	}
	return false
}

// ownsServicePortField reports whether some manager owns field of one
// Service port. Ports are a map list keyed by port and protocol:
// f:spec → f:ports → k:{"port":80,"protocol":"TCP"} → f:nodePort.
func (m managedFields) ownsServicePortField(port map[string]any, field string) bool {
	if m == nil {
		return true
	}
	number, ok := asInt(port["port"])
	if !ok {
		return false
	}
	protocol, _ := port["protocol"].(string)
	if protocol == "" {
		protocol = "TCP"
	}
	for _, set := range m {
		ports, _, _ := unstructured.NestedFieldNoCopy(set, "f:spec", "f:ports")
		entries, _ := ports.(map[string]any)
		for key, fields := range entries {
			raw, ok := strings.CutPrefix(key, "k:")
			if !ok {
				continue
			}
			var k struct {
				Port     int64  `json:"port"`
				Protocol string `json:"protocol"`
			}
			if json.Unmarshal([]byte(raw), &k) != nil || k.Port != number || k.Protocol != protocol {
				continue
			}
			if f, ok := fields.(map[string]any); ok {
				if _, owned := f["f:"+field]; owned {
					return true
				}
			}
		}
	}
	return false
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case int32:
		return int64(n), true
	case float64:
		return int64(n), float64(int64(n)) == n
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}
