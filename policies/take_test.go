package policies

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// object builds an object from YAML, as it would be listed.
func object(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(y), &m); err != nil {
		t.Fatalf("%v in\n%s", err, y)
	}
	return &unstructured.Unstructured{Object: m}
}

func baseConfig() *SyncConfig {
	c := &SyncConfig{
		Metadata: Metadata{Name: "m"},
		Spec: Spec{
			Source: ClusterRef{Name: "prod"},
			Target: ClusterRef{Name: "dr"},
			Namespaces: []NamespaceMapping{
				{Source: "shop", Target: "shop-dr"},
				{Source: "billing"},
				{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"replicate": "yes"}}},
			},
			Secrets: Secrets{Recipients: []string{"age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"}},
		},
	}
	c.Default()
	return c
}

func TestTakesKind(t *testing.T) {
	includeSome := baseConfig()
	includeSome.Spec.Resources.Include = []KindRef{{Kind: "ConfigMap"}, {Group: "apps", Kind: "Deployment"}}
	excludeSome := baseConfig()
	excludeSome.Spec.Resources.Exclude = []KindRef{{Group: "batch", Kind: "CronJob"}, {Kind: "Namespace"}}
	excludeSome.Spec.Resources.DisableDefaultExclusions = []string{"leases"}
	noSecrets := baseConfig()
	noSecrets.Spec.Secrets = Secrets{Mode: SecretModeExclude}

	for _, tc := range []struct {
		name        string
		c           *SyncConfig
		group, kind string
		want        bool
	}{
		{"configmap by default", baseConfig(), "", "ConfigMap", true},
		{"custom kind by default", baseConfig(), "example.com", "Widget", true},
		{"core events", baseConfig(), "", "Event", false},
		{"events.k8s.io events", baseConfig(), "events.k8s.io", "Event", false},
		{"leases", baseConfig(), "coordination.k8s.io", "Lease", false},
		{"leases re-enabled", excludeSome, "coordination.k8s.io", "Lease", true},
		{"controller revisions", baseConfig(), "apps", "ControllerRevision", false},
		{"pod metrics", baseConfig(), "metrics.k8s.io", "PodMetrics", false},
		{"persistent volumes", baseConfig(), "", "PersistentVolume", false},
		{"pods: only some are left out", baseConfig(), "", "Pod", true},
		{"a Lease in another group is another kind", baseConfig(), "example.com", "Lease", true},
		{"included", includeSome, "apps", "Deployment", true},
		{"not included", includeSome, "apps", "StatefulSet", false},
		{"same kind, other group: not included", includeSome, "example.com", "ConfigMap", false},
		{"namespaces always included", includeSome, "", "Namespace", true},
		{"CRDs always included", includeSome, "apiextensions.k8s.io", "CustomResourceDefinition", true},
		{"excluded", excludeSome, "batch", "CronJob", false},
		{"namespaces excluded explicitly", excludeSome, "", "Namespace", false},
		{"jobs not excluded", excludeSome, "batch", "Job", true},
		{"secrets encrypted", baseConfig(), "", "Secret", true},
		{"secrets excluded by mode", noSecrets, "", "Secret", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.TakesKind(tc.group, tc.kind); got != tc.want {
				t.Errorf("TakesKind(%q, %q) = %v, want %v", tc.group, tc.kind, got, tc.want)
			}
		})
	}
}

func TestTakes(t *testing.T) {
	filters := baseConfig()
	filters.Spec.Resources.ExcludeObjects = []ObjectFilter{
		{Kind: &KindRef{Kind: "ConfigMap"}, Name: "*-cache"},
		{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"scratch": "true"}}},
		{Namespace: "billing", Name: "debug-*"},
	}
	enabled := baseConfig()
	enabled.Spec.Resources.DisableDefaultExclusions = []string{"owned-pods", "default-service-account"}
	includeSome := baseConfig()
	includeSome.Spec.Resources.Include = []KindRef{{Kind: "ConfigMap"}}
	noSecrets := baseConfig()
	noSecrets.Spec.Secrets = Secrets{Mode: SecretModeExclude}

	const controlled = `
  ownerReferences:
  - apiVersion: %s
    kind: %s
    name: owner
    uid: 6a1e51e4-5b8e-4a55-9c0f-1d2e3f4a5b6c
    controller: true
    blockOwnerDeletion: true`
	owned := func(apiVersion, kind string) string {
		return fmt.Sprintf(controlled, apiVersion, kind)
	}

	for _, tc := range []struct {
		name   string
		c      *SyncConfig
		obj    string
		want   bool
		reason string
	}{
		{"plain configmap", baseConfig(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop}", true, ""},
		{"ignore label", baseConfig(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop, labels: {dr-syncer.io/ignore: \"true\"}}", false, "ignore-label"},
		{"ignore label false", baseConfig(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: shop, labels: {dr-syncer.io/ignore: \"false\"}}", true, ""},
		{"event", baseConfig(), "apiVersion: v1\nkind: Event\nmetadata: {name: e.1, namespace: shop}", false, "events"},
		{"events.k8s.io event", baseConfig(), "apiVersion: events.k8s.io/v1\nkind: Event\nmetadata: {name: e.1, namespace: shop}", false, "events-k8s-io"},
		{"lease", baseConfig(), "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: leader, namespace: shop}", false, "leases"},
		{"bare pod", baseConfig(), "apiVersion: v1\nkind: Pod\nmetadata: {name: debug, namespace: shop}", true, ""},
		{"pod of a replicaset", baseConfig(), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: shop" + owned("apps/v1", "ReplicaSet"), false, "owned-pods"},
		{"pod of a replicaset, row disabled", enabled, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: shop" + owned("apps/v1", "ReplicaSet"), true, ""},
		{"pod with a non-controller owner", baseConfig(), "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n  ownerReferences: [{apiVersion: v1, kind: ConfigMap, name: c, uid: u}]", true, ""},
		{"replicaset of a deployment", baseConfig(), "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-5d4f\n  namespace: shop" + owned("apps/v1", "Deployment"), false, "deployment-replicasets"},
		{"replicaset of something else", baseConfig(), "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: web-5d4f\n  namespace: shop" + owned("example.com/v1", "Deployment"), true, ""},
		{"bare replicaset", baseConfig(), "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs, namespace: shop}", true, ""},
		{"job of a cronjob", baseConfig(), "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: nightly-2901\n  namespace: shop" + owned("batch/v1", "CronJob"), false, "cronjob-jobs"},
		{"bare job", baseConfig(), "apiVersion: batch/v1\nkind: Job\nmetadata: {name: migrate, namespace: shop}", true, ""},
		{"ephemeral claim", baseConfig(), "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: web-1-scratch\n  namespace: shop" + owned("v1", "Pod"), false, "ephemeral-volume-claims"},
		{"statefulset claim", baseConfig(), "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: data-db-0, namespace: shop}", true, ""},
		{"pod resource claim", baseConfig(), "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata:\n  name: web-1-gpu\n  namespace: shop" + owned("v1", "Pod"), false, "pod-resource-claims"},
		{"controller endpoints", baseConfig(), "apiVersion: v1\nkind: Endpoints\nmetadata: {name: web, namespace: shop, labels: {endpointslice.kubernetes.io/skip-mirror: \"true\"}}", false, "controller-endpoints"},
		{"hand-written endpoints", baseConfig(), "apiVersion: v1\nkind: Endpoints\nmetadata: {name: external-db, namespace: shop}", true, ""},
		{"controller endpointslice", baseConfig(), "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-abcde, namespace: shop, labels: {endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}}", false, "controller-endpointslices"},
		{"mirrored endpointslice", baseConfig(), "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db-abcde, namespace: shop, labels: {endpointslice.kubernetes.io/managed-by: endpointslicemirroring-controller.k8s.io}}", false, "controller-endpointslices"},
		{"hand-written endpointslice", baseConfig(), "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: db, namespace: shop, labels: {endpointslice.kubernetes.io/managed-by: staff}}", true, ""},
		{"kubernetes service", baseConfig(), "apiVersion: v1\nkind: Service\nmetadata: {name: kubernetes, namespace: default}", false, "kubernetes-service"},
		{"a service named kubernetes elsewhere", baseConfig(), "apiVersion: v1\nkind: Service\nmetadata: {name: kubernetes, namespace: shop}", true, ""},
		{"service account token", baseConfig(), "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata: {name: build-token, namespace: shop}", false, "service-account-tokens"},
		{"opaque secret", baseConfig(), "apiVersion: v1\nkind: Secret\ntype: Opaque\nmetadata: {name: db, namespace: shop}", true, ""},
		{"secret under mode exclude", noSecrets, "apiVersion: v1\nkind: Secret\ntype: Opaque\nmetadata: {name: db, namespace: shop}", false, "secrets-excluded"},
		{"kube-root-ca.crt", baseConfig(), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kube-root-ca.crt, namespace: shop}", false, "kube-root-ca"},
		{"default service account", baseConfig(), "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}", false, "default-service-account"},
		{"default service account, row disabled", enabled, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: default, namespace: shop}", true, ""},
		{"other service account", baseConfig(), "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: builder, namespace: shop}", true, ""},
		{"csi storage capacity", baseConfig(), "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata: {name: csisc-x, namespace: shop}", false, "csi-storage-capacities"},
		{"persistent volume", baseConfig(), "apiVersion: v1\nkind: PersistentVolume\nmetadata: {name: pvc-1234}", false, "persistent-volumes"},
		{"not included", includeSome, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}", false, "kind-not-included"},
		{"excluded kind", func() *SyncConfig {
			c := baseConfig()
			c.Spec.Resources.Exclude = []KindRef{{Group: "apps", Kind: "Deployment"}}
			return c
		}(), "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}", false, "kind-excluded"},
		{"cluster-scoped kind", baseConfig(), "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admin}", false, "cluster-scoped"},
		{"crd", baseConfig(), "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}", true, ""},
		{"mapped namespace", baseConfig(), "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}", true, ""},
		{"selected namespace", baseConfig(), "apiVersion: v1\nkind: Namespace\nmetadata: {name: web, labels: {replicate: \"yes\"}}", true, ""},
		{"unmapped namespace", baseConfig(), "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}", false, "namespace-not-mapped"},
		{"namespace with ignore label", baseConfig(), "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {dr-syncer.io/ignore: \"true\"}}", false, "ignore-label"},
		{"filter by kind and name glob", filters, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-cache, namespace: shop}", false, "exclude-objects[0]"},
		{"filter kind differs", filters, "apiVersion: v1\nkind: Secret\nmetadata: {name: web-cache, namespace: shop}", true, ""},
		{"filter by selector", filters, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, labels: {scratch: \"true\"}}", false, "exclude-objects[1]"},
		{"filter by namespace and name", filters, "apiVersion: v1\nkind: Pod\nmetadata: {name: debug-1, namespace: billing}", false, "exclude-objects[2]"},
		{"filter namespace differs", filters, "apiVersion: v1\nkind: Pod\nmetadata: {name: debug-1, namespace: shop}", true, ""},
		{"filter matches a namespace by its name", filters, "apiVersion: v1\nkind: Namespace\nmetadata: {name: billing, labels: {scratch: \"true\"}}", false, "exclude-objects[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.c.Validate(); err != nil {
				t.Fatalf("config: %v", err)
			}
			got, reason := tc.c.Takes(object(t, tc.obj))
			if got != tc.want || reason != tc.reason {
				t.Errorf("Takes = %v, %q; want %v, %q", got, reason, tc.want, tc.reason)
			}
		})
	}
}

func TestTargetNamespace(t *testing.T) {
	c := baseConfig()
	c.Spec.Namespaces = append(c.Spec.Namespaces,
		NamespaceMapping{Source: "legacy", Target: "web"}, // web is taken by name
		NamespaceMapping{Selector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: "tier", Operator: metav1.LabelSelectorOpIn, Values: []string{"gold", "silver"}},
		}}},
	)
	c.Spec.Resources.ExcludeObjects = []ObjectFilter{
		{Kind: &KindRef{Kind: "Namespace"}, Name: "tmp-*"},
		{Kind: &KindRef{Kind: "ConfigMap"}, Name: "*"}, // not about namespaces
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
		target string
		ok     bool
	}{
		{"shop", nil, "shop-dr", true},
		{"billing", nil, "billing", true},
		{"billing", map[string]string{"dr-syncer.io/ignore": "true"}, "", false},
		{"other", nil, "", false},
		{"other", map[string]string{"replicate": "yes"}, "other", true},
		{"other", map[string]string{"replicate": "no"}, "", false},
		{"gold", map[string]string{"tier": "gold"}, "gold", true},
		{"web", map[string]string{"replicate": "yes"}, "", false},           // target of legacy
		{"kube-system", map[string]string{"replicate": "yes"}, "", false},   // never by selector
		{"kube-node-lease", map[string]string{"tier": "silver"}, "", false}, // never by selector
		{"tmp-1", map[string]string{"replicate": "yes"}, "", false},         // excluded Namespace
		{"legacy", nil, "web", true},                                        // by name
		{"shop", map[string]string{"replicate": "yes"}, "shop-dr", true},    // name wins
		{"configs", map[string]string{"replicate": "yes"}, "configs", true}, // ConfigMap filter
		{"billing", map[string]string{"dr-syncer.io/ignore": "false"}, "billing", true},
	} {
		target, ok := c.TargetNamespace(tc.name, tc.labels)
		if target != tc.target || ok != tc.ok {
			t.Errorf("TargetNamespace(%q, %v) = %q, %v; want %q, %v", tc.name, tc.labels, target, ok, tc.target, tc.ok)
		}
	}
}

// TestExclusionTableDocumented checks that doc.go shows every row of the
// default table, in order, with its group and kind.
func TestExclusionTableDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^//\\s*\\|\\s*`([a-z0-9-]+)`\\s*\\|\\s*([^|]*?)\\s*\\|\\s*([^|]*?)\\s*\\|")
	var documented [][3]string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, [3]string{m[1], m[2], m[3]})
	}
	var table [][3]string
	ids := map[string]bool{}
	for _, x := range DefaultExclusions() {
		group := x.Group
		if group == "" {
			group = "core"
		}
		table = append(table, [3]string{x.ID, group, x.Kind})
		if ids[x.ID] {
			t.Errorf("ID %q twice", x.ID)
		}
		ids[x.ID] = true
		if x.Reason == "" || x.Objects == "" {
			t.Errorf("%s: no reason or objects", x.ID)
		}
		if (x.Objects == all) != (x.match == nil) {
			t.Errorf("%s: Objects %q does not say whether the whole kind is left out", x.ID, x.Objects)
		}
	}
	if !slices.Equal(documented, table) {
		t.Errorf("doc.go's exclusion table differs from DefaultExclusions:\n doc: %v\ncode: %v", documented, table)
	}
}

func TestApplyPolicy(t *testing.T) {
	var c SyncConfig
	for _, tc := range []struct {
		group, kind string
		want        bool
	}{
		{"batch", "Job", true}, {"", "Service", true}, {"apps", "Deployment", false},
		{"", "PersistentVolumeClaim", false}, {"", "Namespace", false}, {"apiextensions.k8s.io", "CustomResourceDefinition", false},
	} {
		if got := c.MayRecreate(tc.group, tc.kind); got != tc.want {
			t.Errorf("default MayRecreate(%q, %q) = %v", tc.group, tc.kind, got)
		}
	}
	c.Spec.Apply.Recreate = []KindRef{{Group: "apps", Kind: "Deployment"}, {Kind: "PersistentVolumeClaim"}}
	if !c.MayRecreate("apps", "Deployment") || c.MayRecreate("batch", "Job") || c.MayRecreate("", "PersistentVolumeClaim") {
		t.Error("an explicit list replaces the default, and never allows a PVC")
	}
	if c.MaxPruneRatio() != 0.25 {
		t.Errorf("default MaxPruneRatio = %v", c.MaxPruneRatio())
	}
	ten := 10
	c.Spec.Apply.MaxPrunePercent = &ten
	if c.MaxPruneRatio() != 0.10 {
		t.Errorf("MaxPruneRatio = %v", c.MaxPruneRatio())
	}
}
