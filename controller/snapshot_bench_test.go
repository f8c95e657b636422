package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// The object set of BenchmarkFullSnapshot, spread evenly over benchNamespaces
// namespaces bench-snap-00..09: 10,000 objects, or DR_SYNCER_BENCH_OBJECTS
// (see benchfixture.Counts).
const (
	benchNamespaces = benchfixture.Namespaces

	benchPageSize   = 500
	benchWorkers    = 8  // as snapshot.Take
	populateWorkers = 24 // creating the objects, once
)

var benchConfigMaps, benchDeployments, benchServices, benchSecrets, benchObjects = benchfixture.Counts()

// benchKinds are the four kinds BenchmarkFullSnapshot creates: all a minimal
// dumper of those namespaces has to list.
var benchKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "configmaps"},
	{Group: "apps", Version: "v1", Resource: "deployments"},
	{Version: "v1", Resource: "services"},
	{Version: "v1", Resource: "secrets"},
}

// BenchmarkFullSnapshot measures a full snapshot of 10,000 objects (7,000
// ConfigMaps, 1,500 Deployments, 1,000 Services, 500 Secrets in 10
// namespaces; DR_SYNCER_BENCH_OBJECTS=N for another count, in the same
// proportions) beside the bare paginated LIST of the same objects, which no
// snapshot can beat:
//
//   - list-baseline: LIST of the four kinds, page by page, one namespace and
//     kind after the other;
//   - list-baseline-parallel: the same with 8 workers, as snapshot.Take;
//   - list-raw-parallel: the same, each page read with a GET and decoded in
//     one pass, as snapshot.Take reads them (the dynamic client decodes a
//     page twice over): informational, the floor of such a client;
//   - take: snapshot.Take (discovery, every listable namespaced kind of the
//     mapped namespaces, cleaning, 500 Secrets sealed), in memory;
//   - snapshot-commit: Snapshot into a new repository, the first snapshot
//     of a cluster: Take, YAML encoding, Diff and one commit of every file;
//   - snapshot-nochange: Snapshot again into a repository that holds it,
//     with nothing changed (no commit): a periodic full resync.
//
// Each reports objects/s (benchObjects an operation) and requests/op, the
// HTTP requests made to the apiserver. The objects, and a ServiceCIDR that
// makes room for their ClusterIPs, are created in the source cluster once
// per process (10–20 s), the first time the benchmark runs; normal tests
// never pay for them. Run it with
//
//	go test -run '^$' -bench BenchmarkFullSnapshot -benchtime 3x -count 5 ./controller/
func BenchmarkFullSnapshot(b *testing.B) {
	benchSource(b)
	src := rest.CopyConfig(clusters.Source.Config)
	// As Snapshot does, so that both sides pay the same for warnings.
	src.WarningHandler = rest.NoWarnings{}
	// Snapshot copies src, and keeps this counter with it.
	var requests atomic.Int64
	src.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			return rt.RoundTrip(r)
		})
	})
	report := func(b *testing.B, start int64) {
		b.ReportMetric(float64(benchObjects)*float64(b.N)/b.Elapsed().Seconds(), "objects/s")
		b.ReportMetric(float64(requests.Load()-start)/float64(b.N), "requests/op")
	}
	dyn, err := dynamic.NewForConfig(src)
	if err != nil {
		b.Fatal(err)
	}
	cfg, _, sealer := benchConfig(b, "bench", "")

	b.Run("list-baseline", func(b *testing.B) {
		start := requests.Load()
		for b.Loop() {
			n, err := listBaseline(b.Context(), dyn, 1)
			if err != nil {
				b.Fatal(err)
			}
			if n != benchObjects {
				b.Fatalf("listed %d objects, want %d", n, benchObjects)
			}
		}
		report(b, start)
	})
	b.Run("list-baseline-parallel", func(b *testing.B) {
		start := requests.Load()
		for b.Loop() {
			n, err := listBaseline(b.Context(), dyn, benchWorkers)
			if err != nil {
				b.Fatal(err)
			}
			if n != benchObjects {
				b.Fatalf("listed %d objects, want %d", n, benchObjects)
			}
		}
		report(b, start)
	})
	// The floor of a client that decodes each page once, as snapshot.Take
	// does: the dynamic client above decodes a page twice over.
	raw, err := newRawLister(src)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("list-raw-parallel", func(b *testing.B) {
		start := requests.Load()
		for b.Loop() {
			n, err := listBaselineWith(b.Context(), benchWorkers, raw.list)
			if err != nil {
				b.Fatal(err)
			}
			if n != benchObjects {
				b.Fatalf("listed %d objects, want %d", n, benchObjects)
			}
		}
		report(b, start)
	})
	// Every result below holds the objects plus their Namespaces.
	want := benchObjects + benchNamespaces
	b.Run("take", func(b *testing.B) {
		start := requests.Load()
		for b.Loop() {
			set, err := snapshot.Take(b.Context(), cfg, src, snapshot.Options{Sealer: sealer})
			if err != nil {
				b.Fatal(err)
			}
			if len(set.Objects) != want {
				b.Fatalf("took %d objects, want %d", len(set.Objects), want)
			}
		}
		report(b, start)
	})
	b.Run("snapshot-commit", func(b *testing.B) {
		ctx := b.Context()
		start := requests.Load()
		for b.Loop() {
			b.StopTimer()
			repo, err := gitstore.Init(ctx, b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			res, err := Snapshot(ctx, SnapshotOptions{Repo: repo, Config: cfg, Source: src, Sealer: sealer})
			if err != nil {
				b.Fatal(err)
			}
			if !res.Changed || len(res.Added) != want {
				b.Fatalf("first snapshot: changed %v, %d files added, want %d", res.Changed, len(res.Added), want)
			}
		}
		report(b, start)
	})
	b.Run("snapshot-nochange", func(b *testing.B) {
		ctx := b.Context()
		repo, err := gitstore.Init(ctx, b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		opts := SnapshotOptions{Repo: repo, Config: cfg, Source: src, Sealer: sealer}
		if _, err := Snapshot(ctx, opts); err != nil {
			b.Fatal(err)
		}
		start := requests.Load()
		for b.Loop() {
			res, err := Snapshot(ctx, opts)
			if err != nil {
				b.Fatal(err)
			}
			if res.Changed || res.Objects != want {
				b.Fatalf("unchanged snapshot: changed %v (+%d ~%d -%d), %d objects, want no change of %d",
					res.Changed, len(res.Added), len(res.Modified), len(res.Removed), res.Objects, want)
			}
		}
		report(b, start)
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// listBaseline lists every object of benchKinds in the benchmark namespaces,
// benchPageSize at a time, with workers LISTs at once, and returns how many
// there were.
func listBaseline(ctx context.Context, dyn dynamic.Interface, workers int) (int, error) {
	return listBaselineWith(ctx, workers, func(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) (int, string, error) {
		list, err := dyn.Resource(gvr).Namespace(ns).List(ctx, opts)
		if err != nil {
			return 0, "", err
		}
		return len(list.Items), list.GetContinue(), nil
	})
}

// rawLister lists with GET requests whose pages it decodes in one pass into
// the items, as snapshot.Take does.
type rawLister struct{ rc *rest.RESTClient }

func newRawLister(cfg *rest.Config) (*rawLister, error) {
	c := dynamic.ConfigFor(cfg)
	c.ContentType, c.AcceptContentTypes = "application/json", "application/json"
	c.GroupVersion, c.APIPath = nil, "/"
	rc, err := rest.UnversionedRESTClientFor(c)
	return &rawLister{rc}, err
}

func (l *rawLister) list(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) (int, string, error) {
	path := []string{"api", gvr.Version}
	if gvr.Group != "" {
		path = []string{"apis", gvr.Group, gvr.Version}
	}
	req := l.rc.Get().AbsPath(append(path, "namespaces", ns, gvr.Resource)...).Param("limit", strconv.FormatInt(opts.Limit, 10))
	if opts.Continue != "" {
		req = req.Param("continue", opts.Continue)
	}
	body, err := req.Do(ctx).Raw()
	if err != nil {
		return 0, "", err
	}
	var page struct {
		Metadata struct {
			Continue string `json:"continue"`
		} `json:"metadata"`
		Items []map[string]any `json:"items"`
	}
	if err := utiljson.Unmarshal(body, &page); err != nil {
		return 0, "", err
	}
	return len(page.Items), page.Metadata.Continue, nil
}

// listBaselineWith is listBaseline with list making each LIST request: it
// returns the number of items of the page and the continue token.
func listBaselineWith(ctx context.Context, workers int, list func(context.Context, schema.GroupVersionResource, string, metav1.ListOptions) (int, string, error)) (int, error) {
	type job struct {
		gvr schema.GroupVersionResource
		ns  string
	}
	jobs := make(chan job)
	counts := make([]int, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range jobs {
				if errs[w] != nil {
					continue
				}
				opts := metav1.ListOptions{Limit: benchPageSize}
				for {
					n, next, err := list(ctx, j.gvr, j.ns, opts)
					if err != nil {
						errs[w] = fmt.Errorf("list %s in namespace %s: %w", j.gvr.GroupResource(), j.ns, err)
						break
					}
					counts[w] += n
					if opts.Continue = next; opts.Continue == "" {
						break
					}
				}
			}
		})
	}
	for i := range benchNamespaces {
		for _, gvr := range benchKinds {
			jobs <- job{gvr, benchNamespace(i)}
		}
	}
	close(jobs)
	wg.Wait()
	n := 0
	for _, c := range counts {
		n += c
	}
	return n, errors.Join(errs...)
}

// benchConfig maps the benchmark namespaces to themselves, as mapping name
// with extra spec lines (indented two spaces), and seals Secrets for a new
// age identity.
func benchConfig(b *testing.B, name, extra string) (*policies.SyncConfig, *age.X25519Identity, *snapshot.Sealer) {
	b.Helper()
	id, sealer := testKeys(b)
	var text strings.Builder
	fmt.Fprintf(&text, `apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: %s}
spec:
  source: {name: bench-source}
  target: {name: bench-target}
  namespaces:
`, name)
	for i := range benchNamespaces {
		fmt.Fprintf(&text, "  - {source: %s}\n", benchNamespace(i))
	}
	fmt.Fprintf(&text, "  secrets:\n    mode: encrypt\n    recipients: [%s]\n%s", id.Recipient(), extra)
	return decodeConfig(b, text.String()), id, sealer
}

func benchNamespace(i int) string { return fmt.Sprintf("bench-snap-%02d", i) }

var benchPopulated struct {
	once sync.Once
	err  error
}

// benchSource creates the objects of BenchmarkFullSnapshot in the source
// cluster, once per process.
func benchSource(b *testing.B) {
	b.Helper()
	benchPopulated.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		start := time.Now()
		benchPopulated.err = populate(ctx, clusters.Source.Clientset())
		b.Logf("created %d objects in %d namespaces in %v", benchObjects, benchNamespaces, time.Since(start).Round(time.Millisecond))
	})
	if benchPopulated.err != nil {
		b.Fatalf("benchmark objects: %v", benchPopulated.err)
	}
}

// benchServiceCIDR makes room for the ClusterIPs of the benchmark's
// Services in a cluster: envtest's service range, 10.0.0.0/24, holds 253. A
// second ServiceCIDR without status counts as ready: no controller has to
// run.
func benchServiceCIDR(ctx context.Context, cs kubernetes.Interface) error {
	cidr := &networkingv1.ServiceCIDR{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-snap"},
		Spec:       networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.1.0.0/20"}},
	}
	if _, err := cs.NetworkingV1().ServiceCIDRs().Create(ctx, cidr, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ServiceCIDR/%s: create: %w", cidr.Name, err)
	}
	return nil
}

// populate creates the benchmark namespaces and objects; those that already
// exist are kept.
func populate(ctx context.Context, cs kubernetes.Interface) error {
	if err := benchServiceCIDR(ctx, cs); err != nil {
		return err
	}
	// 4,094 ClusterIPs are too few for the Services of 100,000 objects.
	if benchServices > 4000 {
		large := &networkingv1.ServiceCIDR{
			ObjectMeta: metav1.ObjectMeta{Name: "bench-snap-large"},
			Spec:       networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.2.0.0/16"}},
		}
		if _, err := cs.NetworkingV1().ServiceCIDRs().Create(ctx, large, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("ServiceCIDR/%s: create: %w", large.Name, err)
		}
	}
	for i := range benchNamespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace(i), Labels: map[string]string{"bench": "snapshot"}}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("Namespace/%s: create: %w", ns.Name, err)
		}
	}

	jobs := make(chan func(context.Context) error)
	errs := make([]error, populateWorkers)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for w := range populateWorkers {
		wg.Go(func() {
			for create := range jobs {
				if err := create(ctx); err != nil && !apierrors.IsAlreadyExists(err) && errs[w] == nil {
					errs[w] = err
					cancel()
				}
			}
		})
	}
	send := func(create func(context.Context) error) bool {
		select {
		case jobs <- create:
			return true
		case <-ctx.Done():
			return false
		}
	}
feed:
	for i := range benchNamespaces {
		ns := benchNamespace(i)
		for j := range benchConfigMaps / benchNamespaces {
			if !send(func(ctx context.Context) error {
				_, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, benchConfigMap(ns, j), metav1.CreateOptions{})
				return wrapCreate("ConfigMap", ns, err)
			}) {
				break feed
			}
		}
		for j := range benchDeployments / benchNamespaces {
			if !send(func(ctx context.Context) error {
				_, err := cs.AppsV1().Deployments(ns).Create(ctx, benchDeployment(ns, j), metav1.CreateOptions{})
				return wrapCreate("Deployment", ns, err)
			}) {
				break feed
			}
		}
		for j := range benchServices / benchNamespaces {
			if !send(func(ctx context.Context) error { return createService(ctx, cs, benchService(ns, j)) }) {
				break feed
			}
		}
		for j := range benchSecrets / benchNamespaces {
			if !send(func(ctx context.Context) error {
				_, err := cs.CoreV1().Secrets(ns).Create(ctx, benchSecret(ns, j), metav1.CreateOptions{})
				return wrapCreate("Secret", ns, err)
			}) {
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	return errors.Join(errs...)
}

func wrapCreate(kind, ns string, err error) error {
	if err == nil || apierrors.IsAlreadyExists(err) {
		return err
	}
	return fmt.Errorf("%s in namespace %s: create: %w", kind, ns, err)
}

// createService creates svc, retrying while the apiserver has not yet seen
// the bench-snap ServiceCIDR and finds its first range full (an internal
// error).
func createService(ctx context.Context, cs kubernetes.Interface, svc *corev1.Service) error {
	var err error
	for range 100 {
		_, err = cs.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})
		if !apierrors.IsInternalError(err) {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err == nil || apierrors.IsAlreadyExists(err) {
		return err
	}
	return fmt.Errorf("Service/%s/%s: create: %w", svc.Namespace, svc.Name, err)
}

// benchConfigMap holds about 600 bytes of configuration.
func benchConfigMap(ns string, i int) *corev1.ConfigMap {
	var props strings.Builder
	for k := 0; props.Len() < 520; k++ {
		fmt.Fprintf(&props, "service.%s.option-%02d=value-%06d-%02d\n", ns, k, i, k)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("config-%04d", i), Namespace: ns,
			Labels: map[string]string{"app": fmt.Sprintf("web-%03d", i%(benchDeployments/benchNamespaces)), "tier": "backend"},
		},
		Data: map[string]string{
			"application.properties": props.String(),
			"LOG_LEVEL":              "info",
			"FEATURE_FLAGS":          "search,checkout,recommendations",
		},
	}
}

func benchDeployment(ns string, i int) *appsv1.Deployment {
	name := fmt.Sprintf("web-%03d", i)
	labels := map[string]string{"app": name, "tier": "backend"}
	replicas := int32(2)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{
						Name:  "app",
						Image: "registry.example.com/shop/web:1.27.3",
						Args:  []string{"--port=8080", "--config=/etc/app/application.properties"},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						Env: []corev1.EnvVar{
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
							{Name: "GOMAXPROCS", Value: "2"},
						},
						EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprintf("config-%04d", i)},
						}}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}},
							PeriodSeconds: 10,
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/app", ReadOnly: true}},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: fmt.Sprintf("config-%04d", i)},
					}}}},
				},
			},
		},
	}
}

func benchService(ns string, i int) *corev1.Service {
	app := fmt.Sprintf("web-%03d", i%(benchDeployments/benchNamespaces))
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc-%03d", i), Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
}

func benchSecret(ns string, i int) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("db-%02d", i), Namespace: ns},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			"username": fmt.Appendf(nil, "app-%s-%02d", ns, i),
			"password": fmt.Appendf(nil, "pw-%032x", uint64(i)*0x9e3779b97f4a7c15),
		},
	}
}
