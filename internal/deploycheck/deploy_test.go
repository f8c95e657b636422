package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }

// deployDir is deploy/ at the root of the repository.
const deployDir = "../../deploy"

// kustomizations are the kustomization directories under deploy/ and the
// cluster each is applied to. TestEveryKustomizationIsListed keeps it whole.
var kustomizations = map[string]string{
	"controller":  testcluster.TargetName,
	"rbac-target": testcluster.TargetName,
	"agent":       testcluster.SourceName,
	"source-rbac": testcluster.SourceName,
	"source":      testcluster.SourceName,
}

// fieldManager owns the dry-run applies.
const fieldManager = "dr-syncer-deploycheck"

// build runs kustomize on deploy/<dir> as `kubectl apply -k` would, from the
// files on disk, and returns the objects it makes.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	opts := krusty.MakeDefaultOptions()
	resMap, err := krusty.MakeKustomizer(opts).Run(filesys.MakeFsOnDisk(), filepath.Join(deployDir, dir))
	if err != nil {
		t.Fatalf("kustomize build deploy/%s: %v", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resMap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatalf("deploy/%s: %s: %v", dir, r.CurId(), err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build deploy/%s: no objects", dir)
	}
	return objs
}

func objectName(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return u.GetKind() + "/" + ns + "/" + u.GetName()
	}
	return u.GetKind() + "/" + u.GetName()
}

func TestEveryKustomizationIsListed(t *testing.T) {
	var found []string
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch d.Name() {
		case "kustomization.yaml", "kustomization.yml", "Kustomization":
			rel, err := filepath.Rel(deployDir, filepath.Dir(p))
			if err != nil {
				return err
			}
			found = append(found, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range found {
		if _, ok := kustomizations[dir]; !ok {
			t.Errorf("deploy/%s: a kustomization that no test applies: add it to kustomizations with its cluster", dir)
		}
	}
	for dir := range kustomizations {
		if !slices.Contains(found, dir) {
			t.Errorf("deploy/%s: listed in kustomizations but has no kustomization.yaml", dir)
		}
	}
}

// TestServerSideDryRun applies every object of every kustomization, as a
// server-side dry run, to the real apiserver of its cluster: schema,
// validation and admission all run, nothing is stored.
func TestServerSideDryRun(t *testing.T) {
	byName := map[string]*testcluster.Cluster{
		testcluster.SourceName: clusters.Source,
		testcluster.TargetName: clusters.Target,
	}
	dirs := make([]string, 0, len(kustomizations))
	for dir := range kustomizations {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			c := byName[kustomizations[dir]]
			objs := build(t, dir)
			mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(
				discovery.NewDiscoveryClientForConfigOrDie(c.Config)))
			// Warnings fail the test: among them are Pod Security admission's
			// (a Deployment or DaemonSet whose pods the level of their
			// namespace would refuse) and deprecated APIs.
			warnings := &warningRecorder{}
			cfg := rest.CopyConfig(c.Config)
			cfg.WarningHandler = warnings
			dyn, err := dynamic.NewForConfig(cfg)
			if err != nil {
				t.Fatal(err)
			}

			// A dry run of a namespaced object fails when its namespace does
			// not exist, and a dry-run Namespace is not stored: apply the
			// Namespaces for real (with their Pod Security labels), then
			// create any other namespace the objects are in.
			for _, u := range objs {
				if u.GetKind() == "Namespace" && u.GetAPIVersion() == "v1" {
					_, err := dyn.Resource(corev1.SchemeGroupVersion.WithResource("namespaces")).Apply(t.Context(), u.GetName(), u,
						metav1.ApplyOptions{FieldManager: fieldManager, Force: true})
					if err != nil {
						t.Fatalf("deploy/%s: %s: apply: %v", dir, objectName(u), err)
					}
				}
			}
			for _, u := range objs {
				if ns := u.GetNamespace(); ns != "" {
					ensureNamespace(t, c, ns)
				}
			}
			for _, u := range objs {
				warnings.reset()
				gvk := u.GroupVersionKind()
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Errorf("deploy/%s: %s: no such kind in the %s apiserver: %v", dir, objectName(u), c.Name, err)
					continue
				}
				ri := dyn.Resource(m.Resource)
				var rc dynamic.ResourceInterface = ri
				if m.Scope.Name() == "namespace" {
					if u.GetNamespace() == "" {
						t.Errorf("deploy/%s: %s: namespaced kind without a namespace", dir, objectName(u))
						continue
					}
					rc = ri.Namespace(u.GetNamespace())
				}
				_, err = rc.Apply(t.Context(), u.GetName(), u, metav1.ApplyOptions{
					DryRun:       []string{metav1.DryRunAll},
					FieldManager: fieldManager,
					Force:        true,
				})
				if err != nil {
					t.Errorf("deploy/%s: %s: server-side dry run against the %s apiserver: %v", dir, objectName(u), c.Name, err)
				}
				for _, w := range warnings.take() {
					t.Errorf("deploy/%s: %s: the %s apiserver warns: %s", dir, objectName(u), c.Name, w)
				}
			}
		})
	}
}

// warningRecorder keeps the warnings an apiserver sends back.
type warningRecorder struct {
	mu   sync.Mutex
	list []string
}

func (w *warningRecorder) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warningRecorder) reset() { w.take() }

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.list
	w.list = nil
	return out
}

func ensureNamespace(t *testing.T, c *testcluster.Cluster, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.Clientset().CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("cluster %s: create Namespace/%s: %v", c.Name, name, err)
	}
}

// find returns the built objects of kind (and name, when not empty), and
// fails the test when there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == kind && (name == "" || u.GetName() == name) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no %s %q in the build", kind, name)
	}
	return out
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, out, true); err != nil {
		t.Fatalf("%s: %v", objectName(u), err)
	}
	return out
}

func isTrue(b *bool) bool { return b != nil && *b }

// checkRestricted holds a container to what the controller promises: non-root,
// read-only root filesystem, no capability, no privilege escalation, the
// runtime's default seccomp profile.
func checkRestricted(t *testing.T, where string, pod *corev1.PodSpec, c *corev1.Container) {
	t.Helper()
	psc := pod.SecurityContext
	sc := c.SecurityContext
	if sc == nil {
		t.Fatalf("%s: container %s: no securityContext", where, c.Name)
	}
	if !isTrue(sc.RunAsNonRoot) && (psc == nil || !isTrue(psc.RunAsNonRoot)) {
		t.Errorf("%s: container %s: runAsNonRoot is not true", where, c.Name)
	}
	if (sc.RunAsUser != nil && *sc.RunAsUser == 0) || (psc != nil && psc.RunAsUser != nil && *psc.RunAsUser == 0) {
		t.Errorf("%s: container %s: runs as uid 0", where, c.Name)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: container %s: readOnlyRootFilesystem is not true", where, c.Name)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: container %s: allowPrivilegeEscalation is not false", where, c.Name)
	}
	if isTrue(sc.Privileged) {
		t.Errorf("%s: container %s: privileged", where, c.Name)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		t.Errorf("%s: container %s: capabilities %+v, want drop [ALL] and add nothing", where, c.Name, sc.Capabilities)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil && psc != nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: container %s: seccomp profile %+v, want RuntimeDefault", where, c.Name, seccomp)
	}
}

func checkAgent(t *testing.T, objs []*unstructured.Unstructured) {
	ds := convert[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "dr-syncer-agent")[0])
	where := "DaemonSet/dr-syncer-agent"
	pod := &ds.Spec.Template.Spec
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken is not false: the agent talks to no API", where)
	}
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: shares the host's network, PID or IPC namespace", where)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tol corev1.Toleration) bool {
		return tol.Operator == corev1.TolerationOpExists && tol.Key == "" && tol.Effect == ""
	}) {
		t.Errorf("%s: does not tolerate every taint: a volume on a tainted node could not be copied", where)
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	if len(hostPaths) != 1 || hostPaths["kubelet"] != "/var/lib/kubelet" {
		t.Errorf("%s: hostPath volumes %v, want only kubelet=/var/lib/kubelet", where, hostPaths)
	}
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("%s: want exactly one container", where)
	}
	c := pod.Containers[0]
	for _, m := range c.VolumeMounts {
		if _, ok := hostPaths[m.Name]; !ok {
			continue
		}
		if !m.ReadOnly {
			t.Errorf("%s: hostPath %s mounted read-write", where, m.Name)
		}
		if m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer {
			t.Errorf("%s: hostPath %s: mountPropagation %v, want HostToContainer", where, m.Name, m.MountPropagation)
		}
	}
	sc := c.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatalf("%s: no capabilities set", where)
	}
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"DAC_READ_SEARCH"}) {
		t.Errorf("%s: adds capabilities %v, want exactly [DAC_READ_SEARCH]", where, sc.Capabilities.Add)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: drops capabilities %v, want [ALL]", where, sc.Capabilities.Drop)
	}
	if isTrue(sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: privileged, or privilege escalation not forbidden", where)
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccomp profile is not RuntimeDefault", where)
	}
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.HostPort == 2222 && p.ContainerPort == 2222 && p.Protocol == corev1.ProtocolTCP
	}) {
		t.Errorf("%s: no hostPort 2222/TCP: the target dials <node IP>:2222", where)
	}
	for _, m := range c.VolumeMounts {
		if !m.ReadOnly {
			t.Errorf("%s: volume %s mounted read-write: the agent writes nothing", where, m.Name)
		}
	}
}

func checkController(t *testing.T, objs []*unstructured.Unstructured) {
	d := convert[appsv1.Deployment](t, find(t, objs, "Deployment", "dr-syncer")[0])
	where := "Deployment/dr-syncer"
	pod := &d.Spec.Template.Spec
	if pod.HostNetwork || pod.HostPID || pod.HostIPC {
		t.Errorf("%s: shares a host namespace", where)
	}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", where, v.Name)
		}
	}
	for i := range pod.InitContainers {
		checkRestricted(t, where, pod, &pod.InitContainers[i])
	}
	for i := range pod.Containers {
		checkRestricted(t, where, pod, &pod.Containers[i])
	}
	c := pod.Containers[0]
	probes := map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	wantPath := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}
	for name, p := range probes {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != wantPath[name] {
			t.Errorf("%s: %s probe is not an HTTP GET of %s", where, name, wantPath[name])
			continue
		}
		port := p.HTTPGet.Port.IntValue()
		if p.HTTPGet.Port.StrVal != "" {
			for _, cp := range c.Ports {
				if cp.Name == p.HTTPGet.Port.StrVal {
					port = int(cp.ContainerPort)
				}
			}
		}
		if port != 8080 {
			t.Errorf("%s: %s probe on port %d, want 8080 (--metrics-addr)", where, name, port)
		}
	}
	// Secrets and the source kubeconfig are mounted read-only.
	readOnly := map[string]bool{}
	for _, v := range pod.Volumes {
		if v.Secret != nil || v.ConfigMap != nil {
			readOnly[v.Name] = true
		}
	}
	for _, m := range c.VolumeMounts {
		if readOnly[m.Name] && !m.ReadOnly {
			t.Errorf("%s: volume %s (Secret or ConfigMap) mounted read-write", where, m.Name)
		}
	}
}

// readOnlyVerbs are all that the source may grant.
var readOnlyVerbs = []string{"get", "list", "watch"}

func checkSourceRolesReadOnly(t *testing.T, objs []*unstructured.Unstructured) {
	n := 0
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		n++
		role := convert[rbacv1.ClusterRole](t, u)
		if role.AggregationRule != nil {
			t.Errorf("%s: an aggregated role on the source could gather write rules from other roles", objectName(u))
		}
		for _, r := range role.Rules {
			for _, v := range r.Verbs {
				if !slices.Contains(readOnlyVerbs, v) {
					t.Errorf("%s: grants %q on %v%v: the source is read-only (get, list, watch)", objectName(u), v, r.Resources, r.NonResourceURLs)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no ClusterRole or Role for the source in the build")
	}
	// Only what the controller's reader is bound to: no RoleBinding or
	// ClusterRoleBinding to a built-in role that could write.
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, u := range objs {
			if u.GetKind() != kind {
				continue
			}
			b := convert[rbacv1.ClusterRoleBinding](t, u)
			if b.RoleRef.Name != "dr-syncer-source-reader" {
				t.Errorf("%s: binds %s/%s on the source; only dr-syncer-source-reader is allowed", objectName(u), b.RoleRef.Kind, b.RoleRef.Name)
			}
		}
	}
}

func checkPullJobsRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	role := convert[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "dr-syncer-pull-jobs")[0])
	want := map[string][]string{
		"batch/jobs": {"create", "get", "list", "watch", "delete"},
		"/secrets":   {"create", "get", "list", "watch", "delete"},
		"/pods":      {"get", "list", "watch"},
	}
	got := map[string][]string{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = append(got[g+"/"+res], r.Verbs...)
			}
		}
	}
	for k := range got {
		slices.Sort(got[k])
	}
	for k := range want {
		slices.Sort(want[k])
	}
	if len(got) != len(want) {
		t.Errorf("ClusterRole/dr-syncer-pull-jobs: rules for %v, want exactly %v", got, want)
	}
	for k, v := range want {
		if !slices.Equal(got[k], v) {
			t.Errorf("ClusterRole/dr-syncer-pull-jobs: %s: verbs %v, want %v", k, got[k], v)
		}
	}
}

// checkNoWildcardWrites holds the target's roles to their promise: write
// verbs are only granted on named resources, never on "*".
func checkNoWildcardWrites(t *testing.T, objs []*unstructured.Unstructured) {
	for _, u := range objs {
		if u.GetKind() != "ClusterRole" && u.GetKind() != "Role" {
			continue
		}
		role := convert[rbacv1.ClusterRole](t, u)
		for _, r := range role.Rules {
			wild := slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*")
			for _, v := range r.Verbs {
				if v == "*" || (wild && !slices.Contains(readOnlyVerbs, v)) {
					t.Errorf("%s: grants %q on %v in %v: write only named resources", objectName(u), v, r.Resources, r.APIGroups)
				}
				if v == "escalate" || v == "bind" || v == "impersonate" {
					t.Errorf("%s: grants %q", objectName(u), v)
				}
			}
		}
	}
}

// TestSecurityProperties checks, in the built objects, what
// deploy/README.md promises about each part.
func TestSecurityProperties(t *testing.T) {
	for _, tc := range []struct {
		name  string
		dir   string
		check func(*testing.T, []*unstructured.Unstructured)
	}{
		{"agent: read-only hostPath, only DAC_READ_SEARCH, no token", "agent", checkAgent},
		{"agent through deploy/source", "source", checkAgent},
		{"controller: non-root, read-only root, no capability", "controller", checkController},
		{"source: roles only get, list, watch", "source", checkSourceRolesReadOnly},
		{"source-rbac: roles only get, list, watch", "source-rbac", checkSourceRolesReadOnly},
		{"target: no write on wildcards", "controller", checkNoWildcardWrites},
		{"pull jobs: exactly their verbs", "rbac-target", checkPullJobsRBAC},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, build(t, tc.dir)) })
	}
}

// registryHost matches the image registries people pull from. Images are
// bare names here (golang:1.26, dr-syncer:latest), set through kustomize
// images: by whoever deploys.
var registryHost = regexp.MustCompile(`(?i)\b(docker\.io|index\.docker\.io|registry-1\.docker\.io|gcr\.io|[a-z0-9-]+\.gcr\.io|ghcr\.io|quay\.io|registry\.k8s\.io|k8s\.gcr\.io|mcr\.microsoft\.com|public\.ecr\.aws|[a-z0-9.-]+\.amazonaws\.com|[a-z0-9-]+\.azurecr\.io|registry\.gitlab\.com|[a-z0-9-]+\.pkg\.dev|registry\.redhat\.io|nvcr\.io|cgr\.dev)\b`)

func TestNoRegistryHostNames(t *testing.T) {
	err := filepath.WalkDir(deployDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := registryHost.FindString(line); m != "" {
				t.Errorf("%s:%d: names the registry %q: use a bare image name and kustomize images:", p, i+1, m)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImagesHaveNoHost: every image of every built object is a bare name
// (no registry host before the first slash).
func TestImagesHaveNoHost(t *testing.T) {
	for dir := range kustomizations {
		for _, u := range build(t, dir) {
			for _, img := range images(u.Object) {
				first, _, found := strings.Cut(img, "/")
				if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
					t.Errorf("deploy/%s: %s: image %q names a registry host", dir, objectName(u), img)
				}
			}
		}
	}
}

// images returns the values of every "image" field in obj.
func images(obj any) []string {
	var out []string
	switch v := obj.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && k == "image" {
				out = append(out, s)
				continue
			}
			out = append(out, images(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, images(x)...)
		}
	}
	return out
}
