// Package policies owns the DR mapping: the types of dr-syncer.yaml (clusters,
// namespace mappings, kinds taken, Secret handling, storage-class and
// access-mode mappings, DR standby, schedule and mode), their defaults and
// validation, the table of kinds that are never taken, and how an object is
// cleaned and transformed so that it can be applied again elsewhere.
//
// It must not talk to a cluster or to Git: everything here is a pure function
// of the mapping and of the objects handed in, so it is tested without either.
//
// Entry points: [Decode] and [Load] read a mapping file, [SyncConfig.Validate]
// checks one built in Go, [InitFile] writes a commented one for
// `dr-syncer init`; [SyncConfig.TakesKind], [SyncConfig.Takes] and
// [SyncConfig.TargetNamespace] decide what is replicated, and [Clean] makes an
// object fit to be applied to the target.
//
// # The mapping file
//
// dr-syncer.yaml sits at the root of the DR repository. A complete example
// (testdata/valid/full.yaml; testdata/init/dr-syncer.yaml is what
// `dr-syncer init` writes):
//
//	apiVersion: dr-syncer.io/v1alpha1      # required, exactly this
//	kind: SyncConfig                       # required, exactly this
//	metadata:
//	  name: prod-eu-to-dr-eu               # required; a DNS subdomain
//	spec:
//	  source: {name: prod-eu}              # required; a DNS label (snapshots/<source>/)
//	  target: {name: dr-eu}                # required; a DNS label (overlays/<target>/)
//	  namespaces:                          # at least one mapping
//	    - source: shop                     # by name ...
//	      target: shop-dr                  # ... default: the source's name
//	    - selector:                        # or every source namespace whose labels match,
//	        matchLabels:                   # each to a namespace of the same name
//	          dr-syncer.io/replicate: "true"
//	  resources:
//	    include:                           # default: every listable kind
//	      - {group: apps, kind: Deployment}   # group: the API group without version; none for core
//	    exclude:                           # default: none
//	      - {group: batch, kind: CronJob}
//	    excludeObjects:                    # default: none; a filter matches when all its fields do
//	      - kind: {kind: ConfigMap}        # optional
//	        namespace: "shop*"             # optional; a path.Match glob over the source namespace
//	        name: "*-cache"                # optional; a path.Match glob over the name
//	        selector: {matchLabels: {scratch: "true"}}   # optional; over the object's labels
//	    disableDefaultExclusions:          # default: none; IDs from the table below
//	      - default-service-account
//	  secrets:
//	    mode: encrypt                      # default: encrypt; or exclude
//	    recipients:                        # age recipients (age1…); required when encrypting
//	      - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
//	  storageClasses:                      # default: none; PVC storage classes for the target
//	    - {source: fast-ssd, target: standard}
//	  accessModes:                         # default: none; PVC access modes for the target
//	    - {source: ReadWriteOnce, target: ReadWriteMany}
//	  replication:
//	    mode: scheduled                    # default: manual; or scheduled, continuous
//	    schedule: "30 2 * * MON-FRI"       # five cron fields; only (and required) when scheduled
//	    timeZone: Europe/Berlin            # an IANA zone; default UTC; only when scheduled
//	  standby:
//	    disabled: false                    # default false: in the target, Deployments and StatefulSets
//	                                       # run 0 replicas and CronJobs are suspended until failover
//	  apply:
//	    recreate:                          # default: [{group: batch, kind: Job}, {kind: Service}]; kinds whose
//	      - {group: batch, kind: Job}      # objects may be deleted and re-created when an immutable field
//	                                       # changes; never CRDs, Namespaces or PVCs
//	    maxPrunePercent: 25                # default 25: an apply pruning more of the inventory is refused
//	                                       # without --allow-mass-prune (0: every prune needs it)
//	  volumes:                             # the PVC data stage, after each apply
//	    disabled: false                    # default false: every replicated claim's data is copied
//	    selector: {matchLabels: {backup: "true"}}   # default: every claim; over the source claim's labels
//	    unmounted: Skip                    # default Skip: a claim no running pod mounts is reported Skipped;
//	                                       # Mount: a temporary read-only pod on the source mounts it
//	    concurrency: 2                     # default 2: claims copied at once (1 to 64)
//	    retries: 3                         # default 3: attempts after a failed one, backoff 5 s doubling (0 to 20)
//	    inPlace: false                     # default false; true: rsync --inplace (faster deltas, but a failed
//	                                       # copy leaves half-written files: status says so)
//	    sparse: true                       # default true: rsync --sparse (holes stay holes); false: faster
//	                                       # full copies of data without holes
//	    agent:
//	      port: 2222                       # default 2222: the agents' SSH port on the source nodes
//	      address: NodeIP                  # default NodeIP (InternalIP, else ExternalIP); or ExternalIP
//	  review:                              # review mode; default off: snapshots go to the followed branch
//	    enabled: true                      # snapshots go to branch; the target follows main (or --ref)
//	    branch: snapshots/prod-eu          # default snapshots/<source>; only with enabled
//
// A source claim labelled dr-syncer.io/volume-sync=false is replicated as an
// object, but its data is never copied.
//
// Credentials never appear in the file: clusters are reached through
// kubeconfigs given on the command line or in the environment.
//
// Namespace mappings: a mapping by name wins over selectors. A selector
// never matches kube-system, kube-public or kube-node-lease (name them to
// replicate them), and does not map a namespace whose name is already the
// target of a mapping by name. An empty selector ({}) selects every other
// namespace. Namespaces and CustomResourceDefinitions are taken even when
// include does not list them (the rest of the snapshot cannot be applied
// without them); list them under exclude when the target gets them some
// other way.
//
// # Decoding
//
// Decoding is strict, with the field names of the types' json tags: an
// unknown or misspelt field at any depth (inside label selectors too), a
// value of the wrong type, a duplicate key, a YAML merge key, a second YAML
// document, an empty file or a document that is not a mapping is an error.
// A file whose apiVersion or kind is not this package's gets only that
// error. Every problem is reported at once, sorted by line, one per line,
// each a [*FieldError] naming file, line, column and field path:
//
//	dr-syncer.yaml:9:7: spec.namespaces[0].sourc: unknown field (did you mean "source"?)
//	dr-syncer.yaml:11:11: spec.secrets.mode: want a string, got a list
//	dr-syncer.yaml:12:15: spec.namespaces[1].target: namespace "apps" is already the target of spec.namespaces[0]: two source namespaces would overwrite each other
//
// A validation error that only follows from a field that could not be read
// is left out. testdata/invalid holds one file per kind of mistake with the
// exact error text.
//
// # Validation rules
//
//   - apiVersion is dr-syncer.io/v1alpha1 and kind is SyncConfig.
//   - metadata.name is a DNS subdomain; spec.source.name and spec.target.name
//     are DNS labels (they are directory names in the repository).
//   - spec.namespaces has at least one mapping; each has exactly one of source
//     and selector; target only with source.
//   - Source and target namespaces are DNS labels; no source namespace is
//     mapped twice; no two mappings have the same target (with the default
//     target counted); no target is kube-system, kube-public or
//     kube-node-lease (the target's own control plane).
//   - Label selectors are valid as metav1.LabelSelectorAsSelector reads them:
//     valid label keys and values, operator In, NotIn, Exists or
//     DoesNotExist, values only with In and NotIn.
//   - Kinds are CamelCase (ConfigMap, not configmaps); groups are DNS
//     subdomains without version, and the core group is written as none, not
//     "core". No kind is listed twice in include or exclude, or in both. An
//     included kind that a whole-kind default exclusion leaves out needs that
//     exclusion disabled.
//   - An excludeObjects filter sets at least one field; its globs are valid
//     path.Match patterns.
//   - disableDefaultExclusions names rows of the default table, once each.
//   - secrets.mode is encrypt or exclude. Each recipient is one age
//     recipient (age.ParseRecipients), listed once; an age identity (secret
//     key) is refused without being quoted back. With mode encrypt, at least
//     one recipient unless Secrets are not taken at all.
//   - Storage classes are DNS subdomains, access modes are ReadWriteOnce,
//     ReadOnlyMany, ReadWriteMany or ReadWriteOncePod; each source is mapped
//     once.
//   - replication.mode is manual, scheduled or continuous. schedule is
//     required when the mode is scheduled and refused otherwise; it has five
//     fields of digits, names and * , - / ? (the controller parses it).
//     timeZone, only with scheduled, loads with time.LoadLocation and is not
//     "Local".
//   - review.branch, only with review.enabled, is a branch name git accepts
//     (git check-ref-format, given without refs/heads/) and is not main, the
//     branch the target follows.
//   - volumes.unmounted is Skip or Mount (capitalised); concurrency is 0
//     (the default) to 64; retries 0 to 20; agent.port 1 to 65535;
//     agent.address NodeIP or ExternalIP; the selector as above.
//
// # What is taken
//
// [SyncConfig.Takes] decides for each object as listed from the source, in
// this order, and names the rule that left an object out: the label
// dr-syncer.io/ignore=true ("ignore-label"); the kind (exclude:
// "kind-excluded"; include: "kind-not-included"; secrets mode exclude:
// "secrets-excluded"; a whole-kind default exclusion: its ID); scope (of the
// cluster-scoped kinds only Namespaces and CustomResourceDefinitions are
// taken: "cluster-scoped"; a Namespace must be mapped:
// "namespace-not-mapped"); a default exclusion of some objects of a kind (its
// ID); an excludeObjects filter ("exclude-objects[i]"). A filter matches a
// Namespace by its own name as namespace, and [SyncConfig.TargetNamespace]
// agrees with Takes on Namespaces. Kinds that cannot be listed (reviews,
// tokens and the like) are never listed in the first place.
//
// The default exclusions, [DefaultExclusions], are things the target's
// controllers make again, or that only mean something on the source. Turn a
// row off with its ID in disableDefaultExclusions.
//
//	| ID                        | group               | kind                  | objects left out                                          | why                                                                           |
//	|---------------------------|---------------------|-----------------------|-----------------------------------------------------------|-------------------------------------------------------------------------------|
//	| `owned-pods`              | core                | Pod                   | with a controller ownerReference                          | the ReplicaSet, StatefulSet, DaemonSet or Job makes them again                |
//	| `deployment-replicasets`  | apps                | ReplicaSet            | controlled by a Deployment                                | the Deployment makes its ReplicaSets again; old ones are rollout history      |
//	| `cronjob-jobs`            | batch               | Job                   | controlled by a CronJob                                   | runs of the source's schedule; the target's CronJob starts its own            |
//	| `ephemeral-volume-claims` | core                | PersistentVolumeClaim | controlled by a Pod (generic ephemeral volumes)           | made and deleted with their Pod                                               |
//	| `pod-resource-claims`     | resource.k8s.io     | ResourceClaim         | controlled by a Pod (from a ResourceClaimTemplate)        | made with their Pod, allocated to source devices                              |
//	| `controller-endpoints`    | core                | Endpoints             | labelled endpointslice.kubernetes.io/skip-mirror=true     | kept by the endpoints controller from the source's Pod IPs                    |
//	| `controller-endpointslices` | discovery.k8s.io  | EndpointSlice         | managed-by endpointslice(mirroring)-controller.k8s.io     | derived from Services and Endpoints on the target                             |
//	| `kubernetes-service`      | core                | Service               | default/kubernetes                                        | published by the target's own apiserver                                       |
//	| `events`                  | core                | Event                 | all                                                       | a record of what happened on the source, not state                            |
//	| `events-k8s-io`           | events.k8s.io       | Event                 | all                                                       | the same events through the events.k8s.io API                                 |
//	| `leases`                  | coordination.k8s.io | Lease                 | all                                                       | leader election of source processes; a copy makes the target's wait           |
//	| `lease-candidates`        | coordination.k8s.io | LeaseCandidate        | all                                                       | coordinated leader election of source processes                               |
//	| `controller-revisions`    | apps                | ControllerRevision    | all                                                       | StatefulSet and DaemonSet history; the target's controllers write their own   |
//	| `service-account-tokens`  | core                | Secret                | of type kubernetes.io/service-account-token               | signed by the source's keys: useless on the target, a credential in Git       |
//	| `kube-root-ca`            | core                | ConfigMap             | named kube-root-ca.crt                                    | every namespace gets the cluster's own CA                                     |
//	| `default-service-account` | core                | ServiceAccount        | named default                                             | made in every namespace by the target (disable to carry its pull secrets)     |
//	| `csi-storage-capacities`  | storage.k8s.io      | CSIStorageCapacity    | all                                                       | CSI drivers' reports about the source's storage                               |
//	| `pod-metrics`             | metrics.k8s.io      | PodMetrics            | all                                                       | measurements served by metrics-server, not stored objects                     |
//	| `persistent-volumes`      | core                | PersistentVolume      | all                                                       | the target provisions its own volumes; the PVC stage copies the data          |
//
// Endpoints and EndpointSlices written by hand for a Service without
// selector are taken. PersistentVolumes are cluster-scoped and so never
// snapshotted; the row makes TakesKind say so too.
//
// # Cleaning
//
// [Clean] returns a copy of an object fit for server-side apply to the
// target; the rules are the table cleanRules in clean.go, each a small
// function with its reason, and each with a golden case in testdata/clean:
//
//	| rule                          | kinds                 | removed                                                                                   |
//	|-------------------------------|-----------------------|-------------------------------------------------------------------------------------------|
//	| status                        | all                   | status                                                                                    |
//	| server-metadata               | all                   | metadata uid, resourceVersion, generation, creationTimestamp, managedFields, selfLink, deletionTimestamp, deletionGracePeriodSeconds |
//	| owner-references              | all                   | metadata.ownerReferences (source UIDs: the target's garbage collector would delete the object) |
//	| finalizers                    | all                   | metadata.finalizers (controllers' bookkeeping; one without its controller blocks deletes) |
//	| applied-annotations           | all                   | kubectl.kubernetes.io/last-applied-configuration, deployment.kubernetes.io/revision       |
//	| namespace-name-label          | Namespace             | label kubernetes.io/metadata.name (the apiserver's; wrong after mapping)                  |
//	| service-cluster-ip            | Service               | spec.clusterIP and spec.clusterIPs, unless "None" (headless)                              |
//	| service-node-ports            | Service               | spec.ports[].nodePort and spec.healthCheckNodePort that no manager owns (allocated)       |
//	| service-ip-families           | Service               | spec.ipFamilies and spec.ipFamilyPolicy that no manager owns (filled in by the apiserver) |
//	| pvc-binding                   | PersistentVolumeClaim | spec.volumeName; annotations pv.kubernetes.io/*, volume.kubernetes.io/selected-node, volume(.beta).kubernetes.io/storage-provisioner |
//	| pvc-data-source               | PersistentVolumeClaim | spec.dataSource, spec.dataSourceRef (source-side snapshots; the PVC stage copies data)   |
//	| pod-node                      | Pod                   | spec.nodeName                                                                             |
//	| pod-priority                  | Pod                   | spec.priority, spec.preemptionPolicy (admission computes them from priorityClassName)     |
//	| pod-ephemeral-containers      | Pod                   | spec.ephemeralContainers (refused on create)                                              |
//	| job-generated-selector        | batch Job             | unless spec.manualSelector: spec.selector and the controller-uid labels of Job and template |
//	| service-account-token-refs    | ServiceAccount        | secrets entries naming the legacy token Secrets <name>-token-xxxxx (not taken)            |
//	| daemonset-template-generation | apps DaemonSet        | annotation deprecated.daemonset.template.generation                                       |
//	| empty-metadata-maps           | all                   | metadata.annotations and metadata.labels left empty by the rules above                    |
//
// Whether a nodePort (or healthCheckNodePort, ipFamilies, ipFamilyPolicy) was
// chosen by a person is read from managedFields before they are dropped: the
// apiserver allocates after it records field ownership, so an allocated value
// is owned by no manager, while a chosen one is owned by whoever set it, e.g.
// f:spec → f:ports → k:{"port":80,"protocol":"TCP"} → f:nodePort. An object
// without managedFields keeps these fields (ownership unknown: a taken port
// fails loudly, a dropped chosen one would change the Service silently), which
// also makes Clean idempotent. So the snapshot stage must list objects with
// their managedFields. Clean never modifies its input.
package policies
