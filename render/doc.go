// Package render builds the target's desired state: the kustomize overlay of
// a target at a given commit, built from that commit's tree (not the work
// tree) in a sandbox with no plugins, no exec and no file access outside the
// repository, into a deterministic list of objects. It also writes the part
// of the overlay that follows from the mapping: overlays/<target>/generated/.
//
// It must not apply anything to a cluster, nor talk to one, nor write to
// the repository: the snapshot stage commits what [Generate] returns.
//
// Entry points: [Generate], [GenerateInput] and [GeneratedPrefix] for the
// snapshot stage, [Build] for everything that needs the rendered objects
// ([Cache] for a long-running caller that builds commit after commit),
// [Stream] for `dr-syncer render`.
//
// # The overlay
//
//	overlays/<target>/kustomization.yaml   yours: init writes it once, dr-syncer never rewrites it
//	overlays/<target>/generated/…          dr-syncer's: regenerated at every snapshot, committed with it
//
// init writes this kustomization; people add their own changes (images,
// labels, patches) to it, and they apply on top of generated/:
//
//	apiVersion: kustomize.config.k8s.io/v1beta1
//	kind: Kustomization
//	resources:
//	- generated
//
// # The generated overlay
//
// [Generate] derives generated/ from dr-syncer.yaml and the snapshot's
// objects, as plain kustomize files a reviewer reads in the pull request of
// a snapshot: one directory per source namespace (a kustomization that takes
// the snapshot's directory, patches it and moves it to the target
// namespace), _cluster for the cluster-scoped objects, and one JSON patch
// per object that changes, at the same relative path as the object in the
// snapshot. Every value a patch replaces is tested first, so each patch
// reads as "was → becomes" and fails loudly if snapshot and overlay ever
// disagree. For the namespace golden-shop mapped to shop-dr with the storage
// class fast mapped to standard (testdata/shop):
//
//	overlays/dr/generated/kustomization.yaml
//	  resources: [_cluster, golden-shop]
//	overlays/dr/generated/_cluster/kustomization.yaml
//	  resources: [../../../../snapshots/prod/_cluster], patches: one per object below
//	overlays/dr/generated/_cluster/Namespace/golden-shop.yaml
//	  # namespace golden-shop → shop-dr
//	  - {op: test, path: /metadata/name, value: "golden-shop"}
//	  - {op: replace, path: /metadata/name, value: "shop-dr"}
//	overlays/dr/generated/golden-shop/kustomization.yaml
//	  resources: [../../../../snapshots/prod/golden-shop]
//	  patches:
//	  - path: apps.Deployment/web.yaml
//	    target: {group: apps, version: v1, kind: Deployment, namespace: golden-shop, name: web}
//	  - ...
//	  transformers: [namespace.yaml]
//	overlays/dr/generated/golden-shop/namespace.yaml
//	  a builtin NamespaceTransformer to shop-dr, with setRoleBindingSubjects: none
//	overlays/dr/generated/golden-shop/apps.Deployment/web.yaml
//	  # DR standby: 3 → 0 replicas until failover (dr-syncer.io/original-replicas keeps 3)
//	  - {op: test, path: /spec/replicas, value: 3}
//	  - {op: replace, path: /spec/replicas, value: 0}
//	  - {op: add, path: /metadata/annotations, value: {"dr-syncer.io/original-replicas":"3"}}
//	overlays/dr/generated/golden-shop/apps.StatefulSet/db.yaml
//	  standby, and volumeClaimTemplates[0] (data): storage class fast → standard
//	overlays/dr/generated/golden-shop/PersistentVolumeClaim/uploads.yaml
//	  # storage class fast → standard
//	overlays/dr/generated/golden-shop/batch.CronJob/report.yaml
//	  # DR standby: suspended until failover (dr-syncer.io/original-suspend keeps false)
//	overlays/dr/generated/golden-shop/rbac.authorization.k8s.io.RoleBinding/web.yaml
//	  # subjects[0]: ServiceAccount golden-shop/web → shop-dr/web
//
// A namespace kept under its name (a selector mapping, or source = target)
// has no namespace.yaml. The patches of a namespace run before its move, on
// the objects as in the snapshot.
//
// What the patches do:
//
//   - DR standby (on; the mapping will get a field to turn it off):
//     Deployments and StatefulSets get spec.replicas 0 and keep the source's
//     count in the annotation dr-syncer.io/original-replicas (a decimal
//     string; no replicas on the source means 1). CronJobs get spec.suspend
//     true and keep the source's value in dr-syncer.io/original-suspend, so
//     that failover does not start a CronJob the source had suspended. A
//     HorizontalPodAutoscaler does not scale a workload at 0 replicas up.
//   - Storage classes: spec.storageClassName of PersistentVolumeClaims and of
//     StatefulSet volumeClaimTemplates, and the legacy annotation
//     volume.beta.kubernetes.io/storage-class on either.
//   - Access modes: spec.accessModes of the same two, each mode mapped, the
//     list kept in order without duplicates.
//   - Namespace references, below.
//
// Sealed Secrets pass through untouched (ENC[AGE,…] values, annotation
// dr-syncer.io/encrypted: age): they are decrypted at apply, never here.
//
// # Namespace references
//
// Each source namespace's objects are moved by a NamespaceTransformer
// (metadata.namespace). The Namespace object is renamed in _cluster
// (metadata.name, and the label kubernetes.io/metadata.name when present).
// kustomize's own namespace handling misses or gets wrong the references
// below, so the patches move them: a reference to a source namespace that
// the mapping renames goes to its target, and every other reference (a
// namespace not replicated, or kept under its name) stays as it is.
//
//   - RoleBinding and ClusterRoleBinding subjects of kind ServiceAccount.
//     kustomize's default would set the namespace of every subject named
//     "default", whatever its namespace, and leave the others; the
//     generated transformers say setRoleBindingSubjects: none.
//   - ValidatingWebhookConfiguration and MutatingWebhookConfiguration
//     webhooks[].clientConfig.service.namespace.
//   - APIService spec.service.namespace.
//   - CustomResourceDefinition spec.conversion.webhook.clientConfig.service.namespace.
//   - NetworkPolicy ingress[].from[] and egress[].to[] namespaceSelector over
//     kubernetes.io/metadata.name (matchLabels, and matchExpressions values).
//   - Pod (anti-)affinity terms of Pods and of the pod templates of
//     Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs,
//     ReplicationControllers and PodTemplates: namespaces[], and their
//     namespaceSelector over kubernetes.io/metadata.name.
//
// Checked and not needing a change: Ingress backends, HorizontalPodAutoscaler
// scaleTargetRef, roleRef, and every reference by name alone (they stay in
// the object's namespace). Not handled, because they are text rather than
// fields: DNS names such as web.golden-shop.svc.cluster.local in a Service's
// externalName, in environment variables or in ConfigMaps. Patch those in
// the overlay's kustomization.yaml.
//
// # Build
//
// [Build] lists the files of the commit (a branch is resolved to its commit
// first, so a build never mixes two commits), reads what the overlay
// reaches through gitstore into an in-memory kustomize filesystem
// (filesys.MakeFsInMemory) holding nothing else, and runs kustomize build of
// overlays/<target> there.
//
// The snapshot has no kustomization files: one object per file is its
// whole format, and a kustomization listing 10,000 files would change with
// every object added or removed. Build derives them, in memory only: one in
// snapshots/<source>/ listing its directories, and one in each of its
// directories (a namespace, or _cluster) listing every object file under
// it. They are derived data, never committed; a kustomization (or any file
// that is not an object of the layout) committed inside the snapshot is an
// error.
//
// # The sandbox
//
// The overlay is data from a repository, reviewed or not. kustomize would
// fetch a URL over HTTP, run `git clone` for a remote base, and run helm,
// exec plugins or KRM functions when asked to; an in-memory filesystem
// alone stops none of that. So before kustomize runs, Build reads every
// kustomization the overlay reaches and checks every field that names a
// file or a directory (resources, bases, components, patches, generator
// sources, crds, configurations, replacements, and the path fields of
// builtin plugin configurations):
//
//   - a URL (any scheme, git::, user@host:path, github.com/…) is refused:
//     nothing is fetched;
//   - an absolute path, or one that leaves the repository, is refused:
//     nothing is read from the host;
//   - a path the commit does not hold is an error (not a work-tree file);
//   - generators, transformers and validators must be builtin
//     configurations (apiVersion: builtin), inline or in a file: plugins,
//     exec and KRM functions (exec or container) are refused; so are Helm
//     (helmCharts, helmGlobals, HelmChartInflationGenerator) and a custom
//     openapi schema (kustomize keeps it in process-wide state, so one build
//     would change the next).
//
// Then kustomize runs with plugins off (types.DisabledPluginConfig: builtins
// only, no exec, no KRM functions, helm disabled) and loads files only from
// under each kustomization's own directory (LoadRestrictionsRootOnly); a
// panic inside it is turned into an error. Errors name the file and field
// they are about:
//
//	overlays/dr/kustomization.yaml: resources[1]: https://github.com/org/repo//base: remote resources are refused: render builds from the commit only
//	overlays/dr/kustomization.yaml: transformers[0]: overlays/dr/fn.yaml: Evil (apiVersion "example.com/v1") is not a builtin plugin: plugins, exec and KRM functions are disabled
//
// A test fails when kustomize gets a kustomization field that this package
// has not classified. Symbolic links are files whose content is the link
// target: they are not followed. kustomize prints warnings about deprecated
// fields to standard error; render cannot stop that. kustomize also treats
// a few annotations of its own specially wherever they come from: an object
// of the source annotated config.kubernetes.io/local-config is dropped, and
// kustomize's build annotations (config.kubernetes.io/path, index and id,
// internal.config.kubernetes.io/…) are removed.
//
// # Speed
//
// kustomize's time grows with the square of the number of objects in one
// build (each object added is compared with all others, several times):
// 0.4 s for 1,000 ConfigMaps, over three minutes for 10,000. When the
// overlay only changes each object on its own — every generated overlay
// does, and so does a user overlay of images, labels, annotations,
// namespace, replicas, patches, configMapGenerator and secretGenerator —
// Build runs the whole overlay once per chunk of 32 snapshot objects,
// GOMAXPROCS chunks at a time, and merges the results; partition.go says
// why that gives the same objects as one build, and what it keeps together. Anything else (namePrefix and nameSuffix,
// replacements, vars, crds, configurations, other transformers, generators,
// validators, a patch that renames objects) is built in one piece, as is
// any overlay a chunk fails on, so kustomize's own error is what Build
// returns. Patches with a target keep a build fast; a strategic-merge patch
// without one makes every chunk carry its target.
//
// Chunks end where a file's path hashes to a multiple of the chunk size,
// not after a count, so that an object added or removed changes its own
// chunk only.
//
// A [Cache] ([Cache.Build]) remembers the objects of each kustomize run
// under a key that names exactly the files of the run's in-memory
// filesystem (files of the commit by path and blob hash, derived
// kustomizations and cut ones by the hash of their bytes) and the overlay's
// directory; files of the commit are read only for the runs it does not
// hold. A commit of one object then costs one chunk's run, not the whole
// overlay; an edit of the user's kustomization or of a file it names, of
// the generated root, or of anything an overlay built in one piece reads,
// misses every run — the key cannot be wrong, only miss. cache.go says
// why the key is enough. The cache also keeps each chunk's list of files
// (its cuts and derived kustomizations) under a key naming the chunk's
// object files by blob hash and everything else the list reads (the
// kustomizations and patches by blob, what the route found): a chunk whose
// objects did not change is not listed and cut again, so a small commit
// costs its chunks, not a pass over every patch for every chunk. It keeps
// no snapshot object's content between builds: a build reads only the
// objects of the runs it misses. The rendered objects it keeps are
// compact (compact.go): each an Unstructured holding its identity
// (apiVersion, kind, name, namespace) and its whole content as JSON, about
// a third of the maps' size; [Cache.Build] returns them so, and [Expand]
// gives the full object. An object a commit leaves as it was keeps its
// pointer from build to build.
//
// A commit that changes objects in several chunks (a burst of continuous
// mode: a few dozen objects over every namespace) is a delta build
// (delta.go): one kustomize run of the changed objects as the commit before
// had them, one of them as the commit has them, and the objects of the
// build before with the first run's taken out and the second's put in. It
// applies only when nothing but snapshot objects outside chunk 0 and files
// of routed patches changed (everything else goes to the chunks), and
// checks what it relies on; the tests hold it equal to a build without a
// cache, commit after commit, on the golden cases and on the benchmarks'
// snapshot.
//
// The objects come back sorted by group, kind, namespace and name (then
// version), so that the same commit always renders the same list.
package render
