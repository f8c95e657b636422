// Package reconciler makes the target cluster match a rendered commit:
// staged server-side apply with one field manager, validation of the whole
// set by a server-side dry run before anything is written, prune through an
// inventory kept in the target, immutable-field handling, and drift diff.
//
// It owns everything dr-syncer writes to the target. It must not read the
// source cluster: everything it applies comes from a rendered commit. It
// never touches an object that is not in its inventory or in the set it is
// given.
//
// # Use
//
//	m, err := reconciler.New(cfg, reconciler.Options{InventoryName: "inventory-dr-eu"})
//	res, err := m.Apply(ctx, objects, reconciler.ApplyOptions{Commit: sha})
//	res, err = m.ApplyDelta(ctx, objects, reconciler.Delta{Since: prev, Changed: changed}, opts)
//	diffs, err := m.Diff(ctx, objects)   // what Apply would change
//	inv, err := m.Inventory(ctx)         // what the target holds, and from which commit
//
// objects is the complete desired set of one commit: an object of the
// previous set that is missing from it is pruned.
//
// # Apply, step by step
//
//  1. Plan: each object is mapped to its resource through discovery (reset
//     when a kind is not found, and after CRDs are applied). An object
//     without a name, of a kind neither served nor defined by a CRD of the
//     set, in a namespace that neither exists nor is in the set, or twice in
//     the set is refused.
//  2. The inventory is read and the prune computed. A prune of more than
//     Options.MassPruneRatio of the inventory stops here with ErrMassPrune,
//     unless ApplyOptions.AllowMassPrune.
//  3. Compare: the live objects are listed, page by page, one list per kind
//     and namespace (one per kind across all namespaces when a kind is
//     wanted in 16 namespaces or more; a group of up to 32 objects is read
//     object by object instead), and each desired object is compared
//     with its live copy locally (see "Unchanged objects" below). An
//     unchanged re-apply of 10,000 objects costs about fifty lists and one
//     write (the inventory), instead of 10,000 requests.
//  4. Validate: every object that is new or may differ is sent as a
//     server-side dry run (forced apply, strict field validation), Workers
//     at a time. Every refusal is collected; if there is any, Apply returns
//     an *InvalidError listing all of them and nothing has been written. An
//     existing object whose dry run changes nothing is Unchanged; the others
//     are Created or Configured (or Recreated, see below).
//  5. Apply, in stages; the objects of a stage in parallel (Workers), each
//     stage after the one before it succeeded. The write sends the body the
//     strict dry run accepted, with field validation Ignore: the server
//     would decode it a second time for the same verdict.
//     CRDs (then wait until Established, up to WaitTimeout) → Namespaces →
//     other cluster-scoped objects → configuration (ConfigMap, Secret,
//     ServiceAccount, ResourceQuota, LimitRange) → RBAC (Role, RoleBinding)
//     → storage (PersistentVolumeClaim) → networking (Service, Endpoints,
//     EndpointSlice, Ingress, NetworkPolicy) → workloads (Deployment,
//     StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod, ...) →
//     everything else namespaced (custom objects, HPAs, PDBs) → admission
//     webhook configurations, last, so that a webhook whose server is not
//     running yet cannot block the rest. Kinds are matched with their group:
//     a custom "Deployment" is a custom object.
//  6. Prune (below), then write the inventory.
//
// Objects whose kind is defined by a CRD of the same set that does not exist
// yet, or whose namespace is created by a Namespace of the same set, cannot
// be listed or dry-run before those exist; custom objects whose CRD the set
// changes would be validated against the old schema (a commit that adds a
// field to a CRD and uses it would be refused). All of them are compared and
// dry-run right after the CRD and Namespace stages (the objects of a changed
// CRD are tried again for a few seconds while the apiserver takes up the new
// schema), before anything else of the set is written; if the target
// refuses one, the *InvalidError has Partial set: the set's CRDs and
// Namespaces were applied, nothing else. In a dry run (ApplyOptions.DryRun)
// and in Diff, the objects of a kind or namespace that does not exist yet
// are reported as Created, and those of a changed CRD that the current
// schema refuses as Created or Configured, without validation.
//
// Every write is a server-side apply with Options.FieldManager, forced:
// dr-syncer owns what it replicates, and takes a field back from whoever
// changed it on the target.
//
// # Incremental apply
//
//	res, err := m.ApplyDelta(ctx, objects, reconciler.Delta{Since: prev, Changed: changed}, opts)
//
// A controller that applies commit after commit knows what changed between
// the commit the target holds and the next: ApplyDelta takes the complete
// set and the objects of it whose desired content changed since commit
// Since, and does the work of those only. It refuses (ErrNotIncremental,
// nothing written) unless the inventory records the complete apply of
// Since. The changed objects — and any object of the set the inventory
// does not hold — go through the steps above: planned, compared with their
// live copies (read one by one: a list group of up to 32 objects is read
// by GETs, in Apply too, and so are their namespaces, up to 16, rather
// than a list of every Namespace), dry-run all together before anything is written
// (one refusal stops everything, as in Apply), and applied in stages. The
// prune and its mass-prune guard are Apply's: every inventory entry that
// is not in the set. The inventory is updated, not rebuilt: written
// objects get the commit, pruned ones leave, failed deletes and every
// other entry stay, and its commit becomes the new one. Use one Manager
// for apply after apply: it keeps the inventory decoded between them (see
// Inventory below), and re-encodes only the buckets of the entries that
// changed.
//
// The trade-off: the live copies of the objects that did not change are not
// looked at, so drift on the target (an object edited or deleted there by
// someone else) survives an incremental apply. Apply of the whole set
// corrects it; the controller runs one at every full resync.
//
// # Unchanged objects
//
// An object whose live copy already holds its desired state is not sent at
// all, so that a re-apply of an unchanged set neither bumps resourceVersions
// nor costs a request per object. The decision is local (holds.go), and
// errs on the side of "changed": a dry run then decides, and a server-side
// apply that changes nothing does not write either. An object holds when
//
//   - every field of the desired object is in the live object with an equal
//     value (numbers by value; associative lists matched by their keys, as
//     recorded in managedFields, a key the server defaulted, such as a
//     port's protocol, matching; sets by value; atomic values whole; list
//     items in the same order), and
//   - the fields owned by the Apply entry of our field manager in
//     managedFields (at the desired apiVersion) are exactly the fields of
//     the desired object: a field we own that the set no longer has would be
//     removed by an apply, a field we do not own yet would change hands.
//
// The field set (FieldsV1) also says how each value is shaped without a
// schema: "f:" a field, "k:" an associative list item, "v:" a set item, no
// children an atomic value. Anything else ("i:" items, nulls, a non-empty
// status, an object being deleted) counts as changed.
//
// # Inventory
//
// The inventory is a ConfigMap named Options.InventoryName in
// Options.InventoryNamespace (created if missing), labelled
// app.kubernetes.io/managed-by=dr-syncer and dr-syncer.io/inventory=<name>:
//
//	data:
//	  format:    dr-syncer.io/inventory-v2
//	  commit:    <the last commit applied completely>
//	  appliedAt: <RFC 3339>
//	  entries:   <number of objects>
//	  buckets:   "64"
//	binaryData:
//	  inventory-<NN>.json.gz: gzip of {"commits": [...], "groups": [{"group", "version", "kind",
//	                          "namespace", "names": [...], "commits": [index into commits, per name]}]}
//
// The entries are spread over 64 buckets by an FNV-1a hash of the object's
// group, kind, namespace and name, so that a change of a few objects
// re-encodes a few buckets. In a bucket, entries are grouped by kind and
// namespace and commits are interned: 100,000 entries of ordinary names
// take about 520 KiB (gzip's fastest level: a change re-encodes buckets,
// and names spread over buckets compress less well than the 240 KiB of
// one document of format v1). When the buckets together are over 768 KiB (a
// ConfigMap holds 1 MiB), they go to shard ConfigMaps instead, bucket i in
// shard i mod n (labelled dr-syncer.io/inventory-generation=v2-<n>), each
// named <name>-<hash of its content>, and the head lists the shards (data
// shards: comma-separated names). Shards are never changed in place: the
// shards of changed buckets are created, then the head is replaced, so a
// reader sees the old inventory or the new one, never a mix; shards the
// head no longer names are removed after. The head is replaced with its
// resourceVersion as a precondition: a concurrent apply to the same target
// fails instead of losing entries.
//
// The previous format, dr-syncer.io/inventory-v1 (one document in
// binaryData inventory.json.gz, or cut into shards <name>-<generation>-<i>
// with data shards, generation and sha256), is read as well, and replaced
// by v2 at the next write. A dr-syncer of before v2 refuses to read v2
// ("unknown format"): it never prunes from an inventory it cannot read.
//
// A Manager keeps the inventory it last read or wrote, decoded, and uses
// it while the head (one metadata-only GET per apply) and the shards (one
// metadata-only list, only when there are shards) have the
// resourceVersions it recorded: a write by anyone else — another
// dr-syncer after a change of leader, the CLI — makes it read and decode
// the inventory again. Its writes encode only the buckets that changed,
// and create only the shards that changed.
//
// Each entry records the commit that last wrote the object (created,
// configured or recreated it); an object found unchanged keeps its commit.
// The inventory is written after each complete apply: the objects of the
// set, and the pruned objects whose delete failed (they are tried again
// next time). When an apply stops after writing some objects, the entries
// of those are added to the previous inventory (nothing of which was
// pruned), and its commit stays the last one applied completely.
//
// # Prune
//
// Objects of the inventory that are not in the set are deleted, with
// propagation Background, in the reverse stage order (webhooks and
// workloads first, Namespaces and CRDs last), a stage at a time. An object
// that is not in the inventory is never touched. An object is kept (Action
// Skipped, and dropped from the inventory) when
//
//   - its live copy carries the annotation dr-syncer.io/prune: disabled;
//   - it has no Apply entry of our field manager, or its UID changed
//     between the read and the delete: it is not the object we applied;
//   - it is a Namespace that holds, or a CRD that has, objects that are not
//     being pruned (deleting it would delete them): anything in the
//     namespace but objects with an owner, Events, Endpoints,
//     EndpointSlices, the default ServiceAccount and kube-root-ca.crt.
//
// A delete answered NotFound, or of a kind no longer served, counts as
// done. A failed delete leaves the object in the inventory and is returned
// as an error after the inventory is written.
//
// # Immutable fields
//
// When the target refuses an apply because a field cannot change (an
// Invalid status whose every cause is FieldValueInvalid or
// FieldValueForbidden and says so: "field is immutable", "... is
// immutable ...", "may not change once set"), the object is deleted (UID
// precondition, Background), its disappearance awaited (WaitTimeout) and
// applied again — Action Recreated — if Options.Recreate allows its kind
// (default: Jobs and Services). CRDs, Namespaces, PersistentVolumeClaims
// and PersistentVolumes are never recreated, whatever Recreate says. Any
// other kind fails with an *ImmutableError naming the object, the fields the
// target named and the desired fields that differ, e.g.
//
//	PersistentVolumeClaim/shop/data: apply: field spec cannot change (changed: spec.storageClassName); recreating PersistentVolumeClaim is not allowed
//
// Immutability is found by the dry run, so such an error stops the apply
// before anything is written (inside the *InvalidError).
//
// # Errors
//
// Messages start with the object (Deployment.apps/shop/web: dry run: ...).
// ErrMassPrune (errors.Is) and *InvalidError, *ImmutableError (errors.As)
// need a person; *ObjectError wraps the target's error for one object;
// anything else (the target unreachable, timeouts, throttling) is worth
// retrying. Diff never shows the values of a Secret.
//
// # Logging
//
// The logr.Logger of the context (logr.FromContextOrDiscard) receives the
// target's warnings, the objects kept by the prune and, at V(1), the time
// of each phase and stage.
package reconciler
