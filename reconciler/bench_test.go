package reconciler

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
)

// The object set of BenchmarkApply: 10,000 objects over 10 namespaces, or
// DR_SYNCER_BENCH_OBJECTS (see benchfixture.Counts).
const benchNamespaces = benchfixture.Namespaces

var benchConfigMaps, benchDeployments, benchServices, benchSecrets, benchObjects = benchfixture.Counts()

var benchGVRs = []schema.GroupVersionResource{
	{Version: "v1", Resource: "configmaps"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "secrets"},
}

// BenchmarkApply measures Apply of 10,000 objects (7,000 ConfigMaps, 1,500
// Deployments, 1,000 Services, 500 Secrets in 10 namespaces; another count
// in the same proportions with DR_SYNCER_BENCH_OBJECTS=N) on the target,
// beside `kubectl apply --server-side -f DIR` of the same objects written
// one per file:
//
//   - first-apply: to an empty target (fresh namespaces, made beforehand);
//   - kubectl-first-apply: the same with kubectl;
//   - unchanged-reapply: again, with nothing changed;
//   - kubectl-unchanged-reapply: the same with kubectl.
//
// Every iteration uses namespaces of its own (deleted namespaces stay
// Terminating here), whose objects are deleted after it. Each reports
// objects/s. It is slow: run it with
//
//	go test -run '^$' -bench BenchmarkApply -benchtime 1x -count 3 -timeout 60m ./reconciler/
func BenchmarkApply(b *testing.B) {
	kubectl := kubectlPath(b)
	benchServiceCIDR(b)
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, clusters.Target.Kubeconfig, 0o600); err != nil {
		b.Fatal(err)
	}
	runKubectl := func(b *testing.B, dir string) {
		cmd := exec.CommandContext(b.Context(), kubectl, "--kubeconfig", kubeconfig,
			"apply", "--server-side", "--field-manager", "kubectl-bench", "-f", dir)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = nil, &stderr
		if err := cmd.Run(); err != nil {
			b.Fatalf("kubectl: %v: %s", err, stderr.Bytes())
		}
	}
	report := func(b *testing.B, elapsed time.Duration) {
		b.ReportMetric(float64(benchObjects)*float64(b.N)/elapsed.Seconds(), "objects/s")
	}

	b.Run("first-apply", func(b *testing.B) {
		var elapsed time.Duration
		for range b.N {
			set := benchSet(b)
			m := newManager(b, Options{InventoryName: "bench-" + set.id})
			start := time.Now()
			res, err := m.Apply(b.Context(), set.objects, ApplyOptions{Commit: "c1"})
			elapsed += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if got := res.Counts()[Created]; got != benchObjects {
				b.Fatalf("created %d objects, want %d", got, benchObjects)
			}
		}
		report(b, elapsed)
	})
	b.Run("kubectl-first-apply", func(b *testing.B) {
		var elapsed time.Duration
		for range b.N {
			set := benchSet(b)
			start := time.Now()
			runKubectl(b, set.dir)
			elapsed += time.Since(start)
		}
		report(b, elapsed)
	})
	b.Run("unchanged-reapply", func(b *testing.B) {
		set := benchSet(b)
		m := newManager(b, Options{InventoryName: "bench-" + set.id})
		if _, err := m.Apply(b.Context(), set.objects, ApplyOptions{Commit: "c1"}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		var elapsed time.Duration
		for i := range b.N {
			start := time.Now()
			res, err := m.Apply(b.Context(), set.objects, ApplyOptions{Commit: fmt.Sprintf("c%d", i+2)})
			elapsed += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if got := res.Counts()[Unchanged]; got != benchObjects {
				b.Fatalf("%d objects unchanged, want %d: %v", got, benchObjects, res.Counts())
			}
		}
		report(b, elapsed)
	})
	b.Run("kubectl-unchanged-reapply", func(b *testing.B) {
		set := benchSet(b)
		runKubectl(b, set.dir)
		b.ResetTimer()
		var elapsed time.Duration
		for range b.N {
			start := time.Now()
			runKubectl(b, set.dir)
			elapsed += time.Since(start)
		}
		report(b, elapsed)
	})
}

// benchObjectSet is one copy of the benchmark's objects, in namespaces of
// its own, also written one object per file.
type benchObjectSet struct {
	id      string
	objects []*unstructured.Unstructured
	dir     string
}

// benchSet makes the namespaces and the objects of one iteration, outside
// the timer, and deletes the objects when the benchmark ends.
func benchSet(b *testing.B) *benchObjectSet {
	b.StopTimer()
	defer b.StartTimer()
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	set := &benchObjectSet{id: hex.EncodeToString(suffix), dir: b.TempDir()}
	var namespaces []string
	for i := range benchNamespaces {
		ns := fmt.Sprintf("bench-apply-%s-%02d", set.id, i)
		namespaces = append(namespaces, ns)
		_, err := clusters.Target.Clientset().CoreV1().Namespaces().Create(b.Context(),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { deleteBenchObjects(b, namespaces) })
	add := func(kind string, count int, makeObj func(i int, ns string) map[string]any) {
		for i := range count {
			ns := namespaces[i%benchNamespaces]
			obj := makeObj(i, ns)
			obj["metadata"].(map[string]any)["namespace"] = ns
			set.objects = append(set.objects, &unstructured.Unstructured{Object: obj})
			data, err := yaml.Marshal(obj)
			if err != nil {
				b.Fatal(err)
			}
			name := filepath.Join(set.dir, fmt.Sprintf("%s-%s-%05d.yaml", ns, kind, i))
			if err := os.WriteFile(name, data, 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	add("configmap", benchConfigMaps, func(i int, _ string) map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": fmt.Sprintf("config-%05d", i), "labels": map[string]any{"app": fmt.Sprintf("app-%03d", i%150)}},
			"data": map[string]any{
				"settings.yaml": fmt.Sprintf("log-level: info\nreplica: %d\nfeature-flags: [a, b, c]\n", i),
				"version":       "1.2.3",
			},
		}
	})
	add("deployment", benchDeployments, func(i int, _ string) map[string]any {
		app := fmt.Sprintf("app-%05d", i)
		return map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": app, "labels": map[string]any{"app": app}},
			"spec": map[string]any{
				"replicas": int64(2),
				"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
				"template": map[string]any{
					"metadata": map[string]any{"labels": map[string]any{"app": app}},
					"spec": map[string]any{"containers": []any{map[string]any{
						"name": "app", "image": "registry.example.com/app:1.2.3",
						"args":      []any{"--port=8080"},
						"ports":     []any{map[string]any{"containerPort": int64(8080), "name": "http"}},
						"env":       []any{map[string]any{"name": "LOG_LEVEL", "value": "info"}},
						"resources": map[string]any{"requests": map[string]any{"cpu": "100m", "memory": "128Mi"}},
					}}},
				},
			},
		}
	})
	add("service", benchServices, func(i int, _ string) map[string]any {
		app := fmt.Sprintf("app-%05d", i)
		return map[string]any{
			"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": app, "labels": map[string]any{"app": app}},
			"spec": map[string]any{
				"selector": map[string]any{"app": app},
				"ports":    []any{map[string]any{"name": "http", "port": int64(80), "targetPort": "http"}},
			},
		}
	})
	add("secret", benchSecrets, func(i int, _ string) map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": fmt.Sprintf("secret-%05d", i)},
			"type":     "Opaque",
			"data":     map[string]any{"password": "c2VjcmV0LXZhbHVl", "username": "YWRtaW4="},
		}
	})
	return set
}

// deleteBenchObjects deletes the objects of the namespaces (no controller
// would: deleted namespaces stay Terminating here), then the namespaces.
func deleteBenchObjects(b *testing.B, namespaces []string) {
	ctx := context.Background()
	var errs []error
	for _, ns := range namespaces {
		for _, gvr := range benchGVRs {
			err := clusters.Target.Dynamic().Resource(gvr).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
			errs = append(errs, err)
		}
		errs = append(errs, clusters.Target.Clientset().CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}))
	}
	if err := errors.Join(errs...); err != nil {
		b.Errorf("clean up: %v", err)
	}
}

// kubectlPath finds .cache/kube-bin/kubectl at the root of the repository.
func kubectlPath(b *testing.B) string {
	dir, err := os.Getwd()
	if err != nil {
		b.Fatal(err)
	}
	for {
		p := filepath.Join(dir, ".cache", "kube-bin", "kubectl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			b.Skip("kubectl not found in .cache/kube-bin (run `make kube-bin`)")
		}
		dir = parent
	}
}

// benchServiceCIDR makes room for the benchmark's Services: envtest's
// service range, 10.0.0.0/24, holds 253 ClusterIPs. A second ServiceCIDR
// without status counts as ready: no controller has to run.
func benchServiceCIDR(b *testing.B) {
	cidr := &networkingv1.ServiceCIDR{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-apply"},
		Spec:       networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.128.0.0/16"}},
	}
	_, err := clusters.Target.Clientset().NetworkingV1().ServiceCIDRs().Create(b.Context(), cidr, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
}
