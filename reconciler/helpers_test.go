package reconciler

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
)

// newManager returns a Manager for the target with an inventory of its own.
func newManager(t testing.TB, opts Options) *Manager {
	t.Helper()
	if opts.InventoryName == "" {
		opts.InventoryName = "inventory-" + testcluster.NamespaceName(t) // one per test run
	}
	m, err := New(clusters.Target.Config, opts)
	require.NoError(t, err)
	return m
}

// decode parses a YAML stream into objects.
func decode(t testing.TB, docs string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(docs)), 4096)
	var out []*unstructured.Unstructured
	for {
		obj := map[string]any{}
		err := dec.Decode(&obj)
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if len(obj) > 0 {
			out = append(out, &unstructured.Unstructured{Object: obj})
		}
	}
}

// shopSet is a small application: a CRD and one of its objects, a
// Namespace with a ConfigMap, and in ns a ConfigMap, a Secret, a Service, a
// PersistentVolumeClaim and a Deployment.
func shopSet(t testing.TB, ns string) []*unstructured.Unstructured {
	return decode(t, fmt.Sprintf(`
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.%[2]s}
spec:
  group: %[2]s
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s-extra, labels: {team: shop}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: extra, namespace: %[1]s-extra}
data: {a: "1"}
---
apiVersion: %[2]s/v1
kind: Widget
metadata: {name: blue, namespace: %[1]s}
spec: {size: 3}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s, labels: {app: web}}
data: {color: blue, size: "3"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: %[1]s}
type: Opaque
data: {password: c2VjcmV0}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: %[1]s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: standard
  resources: {requests: {storage: 1Gi}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 8080}]
        env: [{name: COLOR, value: blue}]
        resources: {requests: {cpu: 100m, memory: 64Mi}}
`, ns, ns+".example.dr-syncer.io"))
}

// cleanupSet deletes what a test's set put outside its namespace (the
// CRDs and extra Namespaces), when the test ends.
func cleanupSet(t testing.TB, objs []*unstructured.Unstructured) {
	t.Cleanup(func() {
		for _, o := range objs {
			gvr := schema.GroupVersionResource{}
			switch o.GetKind() {
			case "CustomResourceDefinition":
				gvr = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
			case "Namespace":
				gvr = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
			default:
				continue
			}
			_ = clusters.Target.Dynamic().Resource(gvr).Delete(context.Background(), o.GetName(), metav1.DeleteOptions{})
		}
	})
}

// gvrOf maps an object to its resource on the target.
func gvrOf(t testing.TB, m *Manager, ref ObjectRef) schema.GroupVersionResource {
	t.Helper()
	rm, err := m.mapper.RESTMapping(ref.GroupKind(), ref.Version)
	require.NoError(t, err, ref.String())
	return rm.Resource
}

// getLive returns the live object, or nil when it does not exist.
func getLive(t testing.TB, m *Manager, ref ObjectRef) *unstructured.Unstructured {
	t.Helper()
	u, err := clusters.Target.Dynamic().Resource(gvrOf(t, m, ref)).Namespace(ref.Namespace).Get(t.Context(), ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	require.NoError(t, err, ref.String())
	return u
}

// resourceVersions returns the resourceVersion of each object of the set
// ("" when it does not exist).
func resourceVersions(t testing.TB, m *Manager, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	rvs := map[string]string{}
	for _, o := range objs {
		ref := refOf(o)
		if live := getLive(t, m, ref); live != nil {
			rvs[ref.String()] = live.GetResourceVersion()
		} else {
			rvs[ref.String()] = ""
		}
	}
	return rvs
}

func actions(res *Result) map[string]Action {
	out := map[string]Action{}
	for _, c := range res.Changes {
		out[c.Object.String()] = c.Action
	}
	return out
}

func without(objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			continue
		}
		out = append(out, o)
	}
	return out
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// requestCounter counts the requests a Manager sends, by method.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// patchKey names a PATCH by whether it is a dry run and its field
// validation: "PATCH dry-run Strict", "PATCH Ignore"...
func patchKey(req *http.Request) string {
	q := req.URL.Query()
	key := "PATCH"
	if q.Get("dryRun") != "" {
		key += " dry-run"
	}
	return key + " " + q.Get("fieldValidation")
}

func (c *requestCounter) RoundTrip(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c.mu.Lock()
		if c.counts == nil {
			c.counts = map[string]int{}
		}
		c.counts[req.Method]++
		if req.Method == http.MethodPatch {
			c.counts[patchKey(req)]++
		}
		c.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

func (c *requestCounter) reset() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	c.counts = nil
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// newCountingManager returns a Manager whose requests are counted.
func newCountingManager(t testing.TB, opts Options) (*Manager, *requestCounter) {
	t.Helper()
	if opts.InventoryName == "" {
		opts.InventoryName = "inventory-" + testcluster.NamespaceName(t)
	}
	c := &requestCounter{}
	cfg := rest.CopyConfig(clusters.Target.Config)
	cfg.WrapTransport = c.RoundTrip
	m, err := New(cfg, opts)
	require.NoError(t, err)
	return m, c
}
