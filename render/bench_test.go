package render

import (
	"context"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
	"github.com/dr-syncer/dr-syncer/policies"
)

// benchChanges returns the files of a commit that changes `changes` of
// benchRepo's n objects, spread over the namespaces, a different set and
// content for each round: ConfigMaps, Services, and Deployments whose
// generated standby patches follow their replicas.
func benchChanges(n, changes, round int) map[string][]byte {
	files := map[string][]byte{}
	for j := range changes {
		i := (j*331 + round*7) % n
		ns, name := fmt.Sprintf("ns%d", i%10), fmt.Sprintf("obj-%05d", i)
		switch i % 3 {
		case 1:
			files[fmt.Sprintf("snapshots/prod/%s/apps.Deployment/%s.yaml", ns, name)] = fmt.Appendf(nil,
				"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  replicas: %d\n  selector:\n    matchLabels: {app: %s}\n  template:\n    metadata:\n      labels: {app: %s}\n    spec:\n      containers:\n      - {name: app, image: example.com/app:1.0}\n",
				name, ns, 3+round, name, name)
			files[fmt.Sprintf("overlays/dr/generated/%s/apps.Deployment/%s.yaml", ns, name)] = fmt.Appendf(nil,
				"# DR standby: %d → 0 replicas until failover (dr-syncer.io/original-replicas keeps %d)\n- {op: test, path: /spec/replicas, value: %d}\n- {op: replace, path: /spec/replicas, value: 0}\n- {op: add, path: /metadata/annotations, value: {\"dr-syncer.io/original-replicas\":\"%d\"}}\n",
				3+round, 3+round, 3+round, 3+round)
		case 0:
			files[fmt.Sprintf("snapshots/prod/%s/ConfigMap/%s.yaml", ns, name)] = fmt.Appendf(nil,
				"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  n: %q\n", name, ns, fmt.Sprint(round))
		default:
			files[fmt.Sprintf("snapshots/prod/%s/Service/%s.yaml", ns, name)] = fmt.Appendf(nil,
				"apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  ports:\n  - {port: %d}\n", name, ns, 1000+round)
		}
	}
	return files
}

// benchRepo commits a snapshot of n objects (ConfigMaps, Deployments and
// Services in turn) over 10 namespaces ns0..ns9, each mapped to nsN-dr, with
// its generated overlay and the overlay skeleton.
func benchRepo(b testing.TB, n int) (*gitstore.Repository, string, *policies.SyncConfig) {
	b.Helper()
	cfg := &policies.SyncConfig{Spec: policies.Spec{
		Source: policies.ClusterRef{Name: "prod"}, Target: policies.ClusterRef{Name: "dr"},
	}}
	for i := range 10 {
		cfg.Spec.Namespaces = append(cfg.Spec.Namespaces, policies.NamespaceMapping{Source: fmt.Sprintf("ns%d", i), Target: fmt.Sprintf("ns%d-dr", i)})
	}
	cfg.Default()
	var objs []*unstructured.Unstructured
	for i := range 10 {
		objs = append(objs, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": fmt.Sprintf("ns%d", i)},
		}})
	}
	for i := range n {
		ns := fmt.Sprintf("ns%d", i%10)
		name := fmt.Sprintf("obj-%05d", i)
		var o map[string]any
		switch i % 3 {
		case 0:
			o = map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": name}},
				"data":     map[string]any{"config.yaml": "key: value\nother: 42\n", "mode": "production"}}
		case 1:
			o = map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": name}},
				"spec": map[string]any{"replicas": int64(2),
					"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
					"template": map[string]any{
						"metadata": map[string]any{"labels": map[string]any{"app": name}},
						"spec": map[string]any{"containers": []any{map[string]any{
							"name": "app", "image": "example.com/app:1.0",
							"ports":     []any{map[string]any{"containerPort": int64(8080), "protocol": "TCP"}},
							"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
						}}}}}}
		default:
			o = map[string]any{"apiVersion": "v1", "kind": "Service",
				"metadata": map[string]any{"name": name, "namespace": ns},
				"spec": map[string]any{"selector": map[string]any{"app": name},
					"ports": []any{map[string]any{"port": int64(80), "targetPort": int64(8080), "protocol": "TCP"}}}}
		}
		objs = append(objs, &unstructured.Unstructured{Object: o})
	}
	files := map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- generated\n"),
	}
	for _, o := range objs {
		p, err := gitstore.ObjectPath("prod", objectID(o))
		if err != nil {
			b.Fatal(err)
		}
		if files[p], err = yaml.Marshal(o.Object); err != nil {
			b.Fatal(err)
		}
	}
	gen, err := Generate(cfg, objs)
	if err != nil {
		b.Fatal(err)
	}
	for p, data := range gen {
		files[p] = data
	}
	repo, _, head := newRepo(b, files)
	return repo, head.String(), cfg
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			repo, head, cfg := benchRepo(b, n)
			ctx := context.Background()
			cpu := benchfixture.CPUTime()
			for b.Loop() {
				objs, err := Build(ctx, repo, head, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if len(objs) != n+10 {
					b.Fatalf("%d objects, want %d", len(objs), n+10)
				}
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkBuildParts splits a Build: reading the commit through gitstore,
// then kustomize (partitioned, and in one piece for comparison).
func BenchmarkBuildParts(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		repo, head, _ := benchRepo(b, n)
		ctx := context.Background()
		load := func() *builder {
			t, err := loadTree(ctx, repo, head, nil)
			if err != nil {
				b.Fatal(err)
			}
			snap, err := newSnapshot(t, "prod")
			if err != nil {
				b.Fatal(err)
			}
			pl, err := walk(t, snap, "overlays/dr")
			if err != nil {
				b.Fatal(err)
			}
			bd := &builder{t: t, snap: snap, plan: pl}
			if err := bd.readAll(); err != nil {
				b.Fatal(err)
			}
			return bd
		}
		b.Run(fmt.Sprintf("objects=%d/read", n), func(b *testing.B) {
			cpu := benchfixture.CPUTime()
			for b.Loop() {
				load()
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
		bd := load()
		b.Run(fmt.Sprintf("objects=%d/kustomize", n), func(b *testing.B) {
			cpu := benchfixture.CPUTime()
			for b.Loop() {
				if _, err := bd.build(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
		if n > 1000 {
			continue // several minutes: kustomize's time grows with the square
		}
		b.Run(fmt.Sprintf("objects=%d/kustomize-one-piece", n), func(b *testing.B) {
			old := chunkSize
			chunkSize = 1 << 30
			defer func() { chunkSize = old }()
			cpu := benchfixture.CPUTime()
			for b.Loop() {
				if _, err := bd.build(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkCacheBuild measures a build through a Cache that holds the
// commit before, after a commit that changes one object (and the cost of a
// build whose every run is cached, for an unchanged set).
func BenchmarkCacheBuild(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			repo, head, cfg := benchRepo(b, n)
			ctx := context.Background()
			c := NewCache()
			if _, err := c.Build(ctx, repo, head, cfg); err != nil {
				b.Fatal(err)
			}
			_, cold := c.Stats()
			p := "snapshots/prod/ns3/ConfigMap/obj-00003.yaml"
			cpu := benchfixture.CPUTime()
			i := 0
			for b.Loop() {
				b.StopTimer()
				i++
				data := fmt.Appendf(nil, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: obj-00003\n  namespace: ns3\ndata:\n  n: %q\n", fmt.Sprint(i))
				h := commit(b, repo, map[string][]byte{p: data}, "one")
				b.StartTimer()
				objs, err := c.Build(ctx, repo, h.String(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if len(objs) != n+10 {
					b.Fatalf("%d objects, want %d", len(objs), n+10)
				}
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
			_, misses := c.Stats()
			b.ReportMetric(float64(misses-cold)/float64(b.N), "runs/op")
		})
	}
}
