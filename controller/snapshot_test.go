package controller

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
)

// realisticNamespace is a namespace as people run them, plus what a
// snapshot must leave out. %[1]s is the namespace, %[2]s a second one that
// is not mapped, %[3]d the explicit NodePort (unique in the cluster).
const realisticNamespace = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.golden.example.com}
spec:
  group: golden.example.com
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
          spec: {type: object, properties: {size: {type: integer}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s, labels: {team: shop}}
---
apiVersion: v1
kind: Namespace
metadata: {name: %[2]s}
---
apiVersion: golden.example.com/v1
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
metadata: {name: db, namespace: %[1]s}
type: Opaque
stringData: {password: golden-plaintext-password, user: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: web, namespace: %[1]s}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: web, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: web}
subjects:
- {kind: ServiceAccount, name: web, namespace: %[1]s}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: %[1]s}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      serviceAccountName: web
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80}]
        envFrom: [{configMapRef: {name: settings}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %[1]s}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: postgres:17
        volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: fast
      resources: {requests: {storage: 10Gi}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport, namespace: %[1]s}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: fixed, port: 80, targetPort: 80, nodePort: %[3]d}
  - {name: allocated, port: 443, targetPort: 443}
---
# A Service without a selector and the Endpoints a person wrote for it:
# configuration, not controller output, so both are taken.
apiVersion: v1
kind: Service
metadata: {name: external-db, namespace: %[1]s}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: external-db, namespace: %[1]s}
subsets:
- addresses: [{ip: 192.0.2.10}]
  ports: [{port: 5432}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: %[1]s}
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: uploads
  namespace: %[1]s
  annotations:
    pv.kubernetes.io/bind-completed: "yes"
    pv.kubernetes.io/bound-by-controller: "yes"
    volume.kubernetes.io/selected-node: node-1
    volume.beta.kubernetes.io/storage-provisioner: ebs.csi.aws.com
    volume.kubernetes.io/storage-provisioner: ebs.csi.aws.com
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  volumeName: pvc-0f9e2c7a
  resources: {requests: {storage: 5Gi}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: %[1]s}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 2
  maxReplicas: 10
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 70}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: %[1]s}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: %[1]s}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers: [{name: report, image: busybox:1.37, command: [sh, -c, date]}]
---
# Left out: regenerated by controllers, or meaningful only in the source.
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-5d8f7
  namespace: %[1]s
  ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: 5d8f7c1e-0000-4000-8000-000000000001, controller: true}]
spec:
  selector: {matchLabels: {app: web, pod-template-hash: 5d8f7}}
  template:
    metadata: {labels: {app: web, pod-template-hash: 5d8f7}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-5d8f7-abcde
  namespace: %[1]s
  labels: {app: web}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f7, uid: 5d8f7c1e-0000-4000-8000-000000000002, controller: true}]
spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: report-29000000
  namespace: %[1]s
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: report, uid: 5d8f7c1e-0000-4000-8000-000000000003, controller: true}]
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: report, image: busybox:1.37}]
---
# As the endpoints and endpointslice controllers label what they manage.
apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: %[1]s, labels: {endpointslice.kubernetes.io/skip-mirror: "true"}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: %[1]s
  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io}
addressType: IPv4
endpoints: []
---
apiVersion: v1
kind: Event
metadata: {name: web.1, namespace: %[1]s}
involvedObject: {kind: Deployment, name: web, namespace: %[1]s}
reason: ScalingReplicaSet
message: scaled up
type: Normal
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: %[1]s}
spec: {holderIdentity: web-5d8f7-abcde}
---
apiVersion: apps/v1
kind: ControllerRevision
metadata: {name: db-7c9, namespace: %[1]s}
revision: 1
data: {spec: {template: {metadata: {labels: {app: db}}}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: %[1]s}
---
apiVersion: v1
kind: Secret
metadata:
  name: web-token
  namespace: %[1]s
  annotations: {kubernetes.io/service-account.name: web}
type: kubernetes.io/service-account-token
---
apiVersion: v1
kind: ConfigMap
metadata: {name: kube-root-ca.crt, namespace: %[1]s}
data: {ca.crt: "-----BEGIN CERTIFICATE-----"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: scratch, namespace: %[1]s, labels: {dr-syncer.io/ignore: "true"}}
data: {note: never replicated}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: tmp-build-cache, namespace: %[1]s}
data: {note: excluded by name}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: elsewhere, namespace: %[2]s}
data: {note: in a namespace that is not mapped}
`

const goldenConfig = `
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: golden}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces:
  - {source: golden-shop, target: golden-shop-dr}
  resources:
    excludeObjects:
    - {name: "tmp-*"}
  secrets:
    mode: encrypt
    recipients: [%s]
`

// TestSnapshotRealisticNamespace snapshots a realistic namespace into
// exactly the golden tree and commit, then checks one change, one deletion
// and no change.
func TestSnapshotRealisticNamespace(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	applyManifests(t, src, fmt.Sprintf(realisticNamespace, "golden-shop", "golden-other", 30080))
	id, sealer := testKeys(t)
	cfg := decodeConfig(t, fmt.Sprintf(goldenConfig, id.Recipient()))

	repo, dir := skeletonRepo(t, cfg)
	opts := SnapshotOptions{Repo: repo, Config: cfg, Source: src.Config, Sealer: sealer}

	res, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	compareGoldenTree(t, "testdata/snapshot/tree", treeFiles(t, repo, DefaultBranch, "snapshots/prod/"))
	compareGolden(t, "testdata/snapshot/commit.txt", git(t, dir, "log", "-1", "--format=%an <%ae>%n%B"))
	require.Empty(t, strings.TrimSpace(git(t, dir, "status", "--porcelain")), "the work tree must match the new commit")
	git(t, dir, "fsck", "--strict")

	// The commit renders for the target: namespaces mapped, RoleBinding
	// subjects following them, storage classes and standby applied.
	objs, err := render.Build(ctx, repo, DefaultBranch, cfg)
	require.NoError(t, err)
	rendered := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		rendered[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = o
	}
	require.Contains(t, rendered, "Namespace//golden-shop-dr")
	rb := rendered["RoleBinding/golden-shop-dr/web"]
	require.NotNil(t, rb)
	subjects, _, _ := unstructured.NestedSlice(rb.Object, "subjects")
	require.Equal(t, "golden-shop-dr", subjects[0].(map[string]any)["namespace"])
	dep := rendered["Deployment/golden-shop-dr/web"]
	require.NotNil(t, dep)
	replicas, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas")
	require.Zero(t, replicas, "DR standby")
	require.Equal(t, "3", dep.GetAnnotations()[render.OriginalReplicasAnnotation])

	// Nothing changed: no commit.
	head := res.Commit
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.False(t, res.Changed)
	require.Equal(t, head, res.Commit)
	require.Equal(t, "2\n", git(t, dir, "rev-list", "--count", "HEAD"))

	// One object changed: a commit touching one file.
	applyManifests(t, src, `{apiVersion: v1, kind: ConfigMap, metadata: {name: settings, namespace: golden-shop, labels: {app: web}}, data: {color: green, size: "3"}}`)
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, "M\tsnapshots/prod/golden-shop/ConfigMap/settings.yaml\n", git(t, dir, "show", "--format=", "--name-status", "HEAD"))
	require.Contains(t, git(t, dir, "show", "HEAD:snapshots/prod/golden-shop/ConfigMap/settings.yaml"), "color: green")

	// One object deleted: its file removed.
	require.NoError(t, src.Clientset().CoreV1().ConfigMaps("golden-shop").Delete(ctx, "settings", metav1.DeleteOptions{}))
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, "D\tsnapshots/prod/golden-shop/ConfigMap/settings.yaml\n", git(t, dir, "show", "--format=", "--name-status", "HEAD"))
	require.Contains(t, git(t, dir, "log", "-1", "--format=%B"), "Objects-Removed: 1")

	// The plaintext of the Secret is nowhere in the repository.
	assertNoPlaintext(t, dir, "golden-plaintext-password")
}

// assertNoPlaintext scans every object in the repository (all commits,
// trees and blobs, reachable or not) for the plaintext and its base64.
func assertNoPlaintext(t *testing.T, dir string, plaintexts ...string) {
	t.Helper()
	all := git(t, dir, "cat-file", "--batch-all-objects", "--batch")
	require.NotEmpty(t, all)
	for _, p := range plaintexts {
		for _, form := range []string{p, base64.StdEncoding.EncodeToString([]byte(p))} {
			require.NotContains(t, all, form, "a git object holds a Secret's plaintext")
		}
	}
}

// TestGenerateReusesUnchanged: the generated overlay of the same mapping and
// objects is the previous one, not generated again; another mapping, or
// changed objects, give what render.Generate gives.
func TestGenerateReusesUnchanged(t *testing.T) {
	id, _ := testKeys(t)
	text := fmt.Sprintf(goldenConfig, id.Recipient())
	text = strings.Replace(text, "source: {name: prod}", "source: {name: generate-cache}", 1)
	cfg := decodeConfig(t, text)
	deployment := func(replicas int64) []*unstructured.Unstructured {
		return []*unstructured.Unstructured{
			{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "golden-shop"}}},
			{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
				"metadata": map[string]any{"name": "web", "namespace": "golden-shop"}, "spec": map[string]any{"replicas": replicas}}},
		}
	}
	gen := func(cfg *policies.SyncConfig, objects []*unstructured.Unstructured) map[string][]byte {
		t.Helper()
		_, _, fp, err := encodeSet(cfg.Spec.Source.Name, cfg.Spec.Source.Name, objects)
		require.NoError(t, err)
		files, err := generate(cfg, objects, fp)
		require.NoError(t, err)
		want, err := render.Generate(cfg, objects)
		require.NoError(t, err)
		require.Equal(t, want, files)
		return files
	}
	first := gen(cfg, deployment(3))
	again := gen(cfg, deployment(3))
	require.Equal(t, reflect.ValueOf(first).Pointer(), reflect.ValueOf(again).Pointer(), "the same mapping and objects: the previous files")

	changed := gen(cfg, deployment(4))
	require.NotEqual(t, reflect.ValueOf(again).Pointer(), reflect.ValueOf(changed).Pointer())
	other := decodeConfig(t, strings.Replace(text, "target: golden-shop-dr", "target: golden-shop-standby", 1))
	remapped := gen(other, deployment(4))
	require.NotEqual(t, changed, remapped, "another mapping: generated again")
}

// encodeCacheConfig is goldenConfig for a source and namespace of its own,
// so that the encode cache and the source's objects are the test's alone:
// the options of a Snapshot of it into a new repository, and that
// repository's directory.
func encodeCacheConfig(t *testing.T, source, ns string) (SnapshotOptions, string) {
	t.Helper()
	applyManifests(t, clusters.Source, fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: %[1]s}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other, namespace: %[1]s}
data: {size: "3"}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: web, namespace: %[1]s}
`, ns))
	id, sealer := testKeys(t)
	text := fmt.Sprintf(goldenConfig, id.Recipient())
	text = strings.Replace(text, "source: {name: prod}", "source: {name: "+source+"}", 1)
	text = strings.Replace(text, "{source: golden-shop, target: golden-shop-dr}", "{source: "+ns+", target: "+ns+"-dr}", 1)
	cfg := decodeConfig(t, text)
	repo, dir := skeletonRepo(t, cfg)
	key := encodeKey(repo, source)
	lastEncoded.forget(key)
	t.Cleanup(func() { lastEncoded.forget(key) })
	return SnapshotOptions{Repo: repo, Config: cfg, Source: clusters.Source.Config, Sealer: sealer}, dir
}

// TestSnapshotEncodeCacheWarm: a second snapshot of an unchanged source
// commits nothing, and the encode cache holds the blob hash of each file
// of the snapshot, nothing else.
func TestSnapshotEncodeCacheWarm(t *testing.T) {
	ctx := t.Context()
	const source = "encode-warm"
	opts, dir := encodeCacheConfig(t, source, "encode-warm-shop")

	res, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	tip, err := opts.Repo.Files(ctx, DefaultBranch, gitstore.SnapshotPrefix(source))
	require.NoError(t, err)
	require.Len(t, tip, res.Objects)
	cached := lastEncoded.previous(encodeKey(opts.Repo, source))
	require.Len(t, cached, res.Objects)
	want := map[plumbing.Hash]bool{}
	for _, h := range tip {
		want[h] = true
	}
	for _, h := range cached {
		require.True(t, want[h], "the cache holds %s, the blob of no file of the snapshot", h)
	}

	head := res.Commit
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.False(t, res.Changed)
	require.Equal(t, head, res.Commit)
	require.Empty(t, res.Added)
	require.Empty(t, res.Modified)
	require.Empty(t, res.Removed)
	require.Equal(t, "2\n", git(t, dir, "rev-list", "--count", "HEAD"))
	require.Equal(t, cached, lastEncoded.previous(encodeKey(opts.Repo, source)))
}

// snapshotAndEdit takes a snapshot with opts, then commits a person's edit
// of the ConfigMap settings of namespace ns (blue made red), and returns
// the file's path and its content before the edit.
func snapshotAndEdit(t *testing.T, opts SnapshotOptions, ns string) (string, []byte) {
	t.Helper()
	ctx := t.Context()
	_, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	path := gitstore.SnapshotPrefix(opts.Config.Spec.Source.Name) + ns + "/ConfigMap/settings.yaml"
	original, err := opts.Repo.ReadFile(ctx, DefaultBranch, path)
	require.NoError(t, err)
	require.Contains(t, string(original), "color: blue")
	_, err = opts.Repo.Commit(ctx, []gitstore.Change{{Path: path, Content: []byte(strings.Replace(string(original), "blue", "red", 1))}},
		gitstore.CommitOptions{Branch: DefaultBranch, Message: "a person's edit"})
	require.NoError(t, err)
	return path, original
}

// TestSnapshotRestoresEditedFile: a person's commit changed the file of an
// object that did not change in the source; the next snapshot, with the
// object's blob hash cached (not its YAML), restores the file from the
// repository's objects.
func TestSnapshotRestoresEditedFile(t *testing.T) {
	ctx := t.Context()
	const source = "encode-edit"
	opts, dir := encodeCacheConfig(t, source, "encode-edit-shop")

	path, original := snapshotAndEdit(t, opts, "encode-edit-shop")
	require.NotEmpty(t, lastEncoded.previous(encodeKey(opts.Repo, source)), "the cache is warm")

	res, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, []string{path}, res.Modified)
	require.Empty(t, res.Added)
	require.Empty(t, res.Removed)
	require.Equal(t, "M\t"+path+"\n", git(t, dir, "show", "--format=", "--name-status", "HEAD"))
	require.Equal(t, string(original), git(t, dir, "show", "HEAD:"+path))
	require.Empty(t, git(t, dir, "diff", "HEAD~2", "HEAD", "--", gitstore.SnapshotPrefix(source)), "the snapshot is as before the edit")
	require.Empty(t, strings.TrimSpace(git(t, dir, "status", "--porcelain")), "the work tree must match the new commit")
}

// TestSnapshotEncodeCacheBlobGone: the cache names the blob of an
// unchanged object that the repository lost (a gc after the file was
// replaced, a shallow clone), and the file at the tip differs (a person's
// edit): Snapshot forgets the cache, takes the snapshot again and restores
// the file.
func TestSnapshotEncodeCacheBlobGone(t *testing.T) {
	ctx := t.Context()
	const source = "encode-gone"
	opts, dir := encodeCacheConfig(t, source, "encode-gone-shop")
	path, original := snapshotAndEdit(t, opts, "encode-gone-shop")
	blob := plumbing.ComputeHash(plumbing.BlobObject, original).String()
	require.NoError(t, os.Remove(filepath.Join(dir, ".git", "objects", blob[:2], blob[2:])))
	require.NotEmpty(t, lastEncoded.previous(encodeKey(opts.Repo, source)), "the cache is warm")

	res, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Equal(t, []string{path}, res.Modified)
	require.Equal(t, string(original), git(t, dir, "show", "HEAD:"+path))
	git(t, dir, "cat-file", "-e", blob) // written again

	// With the blob back, the cache is used again.
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.False(t, res.Changed)
}
