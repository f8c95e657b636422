package reconciler

import (
	"encoding/json"
	"testing"

	"sigs.k8s.io/yaml"
)

// liveWith returns the live object of the YAML liveYAML with an Apply entry
// of dr-syncer owning the field set fieldsJSON.
func liveWith(t *testing.T, liveYAML, fieldsJSON string) map[string]any {
	t.Helper()
	live := yamlMap(t, liveYAML)
	var fields map[string]any
	if err := json.Unmarshal([]byte(fieldsJSON), &fields); err != nil {
		t.Fatalf("fields: %v", err)
	}
	md, _ := live["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		live["metadata"] = md
	}
	md["managedFields"] = []any{
		map[string]any{"manager": "kubectl", "operation": "Update", "apiVersion": live["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": map[string]any{"f:data": map[string]any{"f:other": map[string]any{}}}},
		map[string]any{"manager": "dr-syncer", "operation": "Apply", "apiVersion": live["apiVersion"], "fieldsType": "FieldsV1", "fieldsV1": fields},
	}
	return live
}

func yamlMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	return m
}

const (
	cmDesired = `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: n, labels: {app: web}}, data: {a: "1", b: "2"}}`
	cmFields  = `{"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:data": {".": {}, "f:a": {}, "f:b": {}}}`

	svcDesired = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: n}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: dns, port: 53, protocol: UDP}]`
	svcLive = `
apiVersion: v1
kind: Service
metadata: {name: web, namespace: n, resourceVersion: "7", uid: x}
spec:
  clusterIP: 10.0.0.1
  type: ClusterIP
  selector: {app: web}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
status: {loadBalancer: {}}`
	svcFields = `{"f:spec": {"f:selector": {}, "f:ports": {
		"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}},
		"k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}}}}}`
)

func TestHolds(t *testing.T) {
	for _, tc := range []struct {
		name          string
		desired, live string
		fields        string
		edit          func(live map[string]any)
		want          bool
	}{
		{name: "same", desired: cmDesired, live: cmDesired, fields: cmFields, want: true},
		{
			name:    "fields of other managers and of the server are ignored",
			desired: cmDesired,
			live:    `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: n, uid: u, resourceVersion: "3", labels: {app: web, extra: x}}, data: {a: "1", b: "2", other: o}}`,
			fields:  cmFields, want: true,
		},
		{name: "a value differs", desired: cmDesired, live: `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, labels: {app: web}}, data: {a: "1", b: "3"}}`, fields: cmFields},
		{name: "a field is missing", desired: cmDesired, live: `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, labels: {app: web}}, data: {a: "1"}}`, fields: cmFields},
		{
			name: "a desired field is not ours yet", desired: cmDesired, live: cmDesired,
			fields: `{"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}}}`,
		},
		{
			name: "a field we own is no longer desired: the apply would remove it", desired: cmDesired,
			live:   `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, labels: {app: web}}, data: {a: "1", b: "2", c: "3"}}`,
			fields: `{"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}, "f:b": {}, "f:c": {}}}`,
		},
		{
			name:    "no entry of our manager",
			desired: cmDesired, live: cmDesired, fields: cmFields,
			edit: func(live map[string]any) { live["metadata"].(map[string]any)["managedFields"] = nil },
		},
		{
			name:    "our entry is for another version",
			desired: cmDesired, live: cmDesired, fields: cmFields,
			edit: func(live map[string]any) {
				live["metadata"].(map[string]any)["managedFields"].([]any)[1].(map[string]any)["apiVersion"] = "v2"
			},
		},
		{
			name:    "being deleted",
			desired: cmDesired, live: cmDesired, fields: cmFields,
			edit: func(live map[string]any) {
				live["metadata"].(map[string]any)["deletionTimestamp"] = "2026-01-01T00:00:00Z"
			},
		},
		{
			name:    "associative list, keys defaulted by the server, atomic selector",
			desired: svcDesired, live: svcLive, fields: svcFields, want: true,
		},
		{
			name:    "associative list in another order",
			desired: svcDesired, fields: svcFields,
			live: `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}`,
		},
		{
			name:    "associative list item missing from live",
			desired: svcDesired, fields: svcFields,
			live: `{apiVersion: v1, kind: Service, metadata: {name: web}, spec: {selector: {app: web}, ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]}}`,
		},
		{
			name:    "atomic map with a key added by someone else",
			desired: svcDesired, fields: svcFields,
			live: `
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web, tier: x}
  ports:
  - {name: http, port: 80, protocol: TCP, targetPort: 8080}
  - {name: dns, port: 53, protocol: UDP, targetPort: 53}`,
		},
		{
			name:    "ambiguous key: a desired item without its protocol matches two owned items",
			desired: `{apiVersion: v1, kind: Service, metadata: {name: web}, spec: {ports: [{port: 53}, {port: 53, protocol: UDP}]}}`,
			live:    `{apiVersion: v1, kind: Service, metadata: {name: web}, spec: {ports: [{port: 53, protocol: TCP}, {port: 53, protocol: UDP}]}}`,
			fields:  `{"f:spec": {"f:ports": {"k:{\"port\":53,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}, "k:{\"port\":53,\"protocol\":\"UDP\"}": {".": {}, "f:port": {}, "f:protocol": {}}}}}`,
		},
		{
			name:    "set",
			desired: `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, finalizers: [a/b, c/d]}}`,
			live:    `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, finalizers: [a/b, x/y, c/d]}}`,
			fields:  `{"f:metadata": {"f:finalizers": {".": {}, "v:\"a/b\"": {}, "v:\"c/d\"": {}}}}`,
			want:    true,
		},
		{
			name:    "set value missing",
			desired: `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, finalizers: [a/b, c/d]}}`,
			live:    `{apiVersion: v1, kind: ConfigMap, metadata: {name: c, finalizers: [a/b]}}`,
			fields:  `{"f:metadata": {"f:finalizers": {".": {}, "v:\"a/b\"": {}, "v:\"c/d\"": {}}}}`,
		},
		{
			name:    "atomic list compared whole",
			desired: `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {template: {spec: {containers: [{name: a, args: [x, y]}]}}}}`,
			live:    `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {template: {spec: {containers: [{name: a, args: [x, y, z], image: i}]}}}}`,
			fields:  `{"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:name": {}, "f:args": {}}}}}}}`,
		},
		{
			name:    "numbers of different Go types",
			desired: `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {replicas: 2}}`,
			live:    `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {replicas: 2.0}}`,
			fields:  `{"f:spec": {"f:replicas": {}}}`,
			want:    true,
		},
		{
			name:    "a null asks the server",
			desired: `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {a: null}}`,
			live:    `{apiVersion: v1, kind: ConfigMap, metadata: {name: c}, data: {}}`,
			fields:  `{"f:data": {"f:a": {}}}`,
		},
		{
			name:    "list items by index: unsure",
			desired: `{apiVersion: x/v1, kind: X, metadata: {name: c}, spec: {l: [1]}}`,
			live:    `{apiVersion: x/v1, kind: X, metadata: {name: c}, spec: {l: [1]}}`,
			fields:  `{"f:spec": {"f:l": {"i:0": {}}}}`,
		},
		{
			name:    "a Namespace with nothing but its name, and empty status",
			desired: `{apiVersion: v1, kind: Namespace, metadata: {name: shop, creationTimestamp: null}, status: {}}`,
			live:    `{apiVersion: v1, kind: Namespace, metadata: {name: shop, labels: {kubernetes.io/metadata.name: shop}}, spec: {finalizers: [kubernetes]}, status: {phase: Active}}`,
			fields:  `{}`,
			want:    true,
		},
		{
			name:    "a status that an apply would not own",
			desired: `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {replicas: 2}, status: {replicas: 2}}`,
			live:    `{apiVersion: apps/v1, kind: Deployment, metadata: {name: d}, spec: {replicas: 2}, status: {replicas: 2}}`,
			fields:  `{"f:spec": {"f:replicas": {}}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := liveWith(t, tc.live, tc.fields)
			if tc.edit != nil {
				tc.edit(live)
			}
			if got := holds(yamlMap(t, tc.desired), live, "dr-syncer"); got != tc.want {
				t.Errorf("holds = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEqualNumbers(t *testing.T) {
	for _, tc := range []struct {
		a, b any
		want bool
	}{
		{int64(2), float64(2), true},
		{int64(2), json.Number("2"), true},
		{float64(2.5), json.Number("2.5"), true},
		{int64(2), float64(2.5), false},
		{int64(2), "2", false},
		{map[string]any{"a": int64(1)}, map[string]any{"a": float64(1)}, true},
		{[]any{int64(1)}, []any{int64(1), int64(2)}, false},
		{nil, nil, true},
		{nil, map[string]any{}, false},
	} {
		if got := equal(tc.a, tc.b); got != tc.want {
			t.Errorf("equal(%#v, %#v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
