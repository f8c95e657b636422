package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// TestToUnstructured holds the direct conversion of kustomize's output to
// what the long way (MarshalJSON, then UnmarshalJSON) gives, and checks
// that it declines what it does not know to give identically.
func TestToUnstructured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		yaml   string
		direct bool // converted directly, not declined
	}{
		{"deployment", `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web, "n": "1", empty: ""}
  annotations:
    dr-syncer.io/original-replicas: "3"
    quoted-int: '42'
    yes-is-a-string: yes
    null-word: "null"
spec:
  replicas: 0
  paused: false
  progressDeadlineSeconds: +600
  minReadySeconds: -1
  revisionHistoryLimit: 9223372036854775807
  strategy: ~
  selector:
    matchLabels: {app: web}
  template:
    spec:
      containers:
      - name: web
        image: web:1.0
        args: ["--a", "", "0"]
        env:
        - {name: A, value: "true"}
        - name: B
          value: |
            line 1
            line 2
        resources: {}
        ports: []
      nodeSelector:
`, true},
		{"explicit tags", "apiVersion: v1\nkind: ConfigMap\ndata:\n  a: !!str 12\n  b: !!str true\nbinaryData: null\nx: !!int 7\n", true},
		{"float", "apiVersion: v1\nkind: X\nspec: {f: 1.5}\n", false},
		{"integral float", "apiVersion: v1\nkind: X\nspec: {f: 1.0}\n", false},
		{"octal", "apiVersion: v1\nkind: X\nspec: {mode: 0644}\n", false},
		{"hex", "apiVersion: v1\nkind: X\nspec: {mode: 0x1F}\n", false},
		{"underscore", "apiVersion: v1\nkind: X\nspec: {n: 1_000}\n", false},
		{"too large", "apiVersion: v1\nkind: X\nspec: {n: 9223372036854775808}\n", false},
		{"timestamp", "apiVersion: v1\nkind: X\nspec: {at: 2024-01-02T03:04:05Z}\n", false},
		{"alias", "apiVersion: v1\nkind: X\nspec: {a: &x {b: c}, d: *x}\n", false},
		{"merge", "apiVersion: v1\nkind: X\nspec: {a: &x {b: c}, d: {<<: *x}}\n", false},
		{"int key", "apiVersion: v1\nkind: X\nspec: {80: http}\n", false},
		{"non-specific tag", "apiVersion: v1\nkind: X\nspec: {n: ! 12}\n", true},
		{"set", "apiVersion: v1\nkind: X\nspec: !!set {a: null}\n", false},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rn, err := yaml.Parse(tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := toUnstructured(rn)
			if ok != tc.direct {
				t.Fatalf("converted directly: %v, want %v", ok, tc.direct)
			}
			if !ok {
				return
			}
			data, err := rn.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			want := &unstructured.Unstructured{}
			if err := want.UnmarshalJSON(data); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want.Object, got.Object); d != "" {
				t.Errorf("direct conversion differs from MarshalJSON+UnmarshalJSON (-want +got):\n%s", d)
			}
		})
	}
}
