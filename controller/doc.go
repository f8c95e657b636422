// Package controller runs the cycle that ties the stages together:
// snapshot → commit → render → apply → PVC stage, once for `dr-syncer sync`
// and forever for `dr-syncer run` (manual, scheduled and continuous modes),
// with leader election, metrics and replication lag.
//
// It must not reimplement any stage: it calls packages snapshot, gitstore,
// render, reconciler and pvcsync, and only it (and cmd) sees them all.
package controller

// # The controller (Run)
//
// [Run] takes part in a leader election (a coordination.k8s.io Lease in the
// target cluster; leader.go says why there) and, while it leads, runs the
// mode of spec.replication:
//
//   - manual: one cycle — snapshot, commit if anything changed, apply, PVC
//     stage — per new value of the annotation dr-syncer.io/sync-now on the
//     ConfigMap dr-syncer-trigger in the controller's namespace of the
//     target (created by the controller):
//
//     kubectl -n dr-syncer-system annotate configmap dr-syncer-trigger dr-syncer.io/sync-now="$(date +%s)" --overwrite
//
//     The value handled is written back to dr-syncer.io/synced and the
//     outcome to dr-syncer.io/sync-result, so that a new leader neither
//     loses nor repeats a request. The target, not the source, holds the
//     trigger: it is where the controller and its Lease live, and where an
//     operator acts during a disaster. `dr-syncer sync` stays the one-shot
//     command line form.
//   - scheduled: one cycle per tick of the mapping's cron schedule in its
//     time zone (robfig/cron/v3, five fields; RunOptions.Schedule replaces
//     it, e.g. cron.Every(time.Second) in tests). A tick that finds the last
//     cycle still running is skipped and counted
//     (dr_syncer_ticks_skipped_total), never queued.
//   - continuous: snapshot.Watch keeps informers on the taken kinds of the
//     mapped namespaces (namespaces that a selector maps later and kinds of
//     CRDs created later included); each event marks its object. A batch
//     is committed when events pause for Debounce/10 or when its first
//     change has waited Debounce (default 250 ms), whichever comes first:
//     a lone change is committed about 25 ms after it happened, a burst in
//     commits of at most a quarter of a second of changes each (12 to 16
//     commits for 100 changes at 50 a second, measured). Commits do not
//     wait for applies: while the apply loop applies one commit, the next
//     ones are made, and the loop then applies the newest. A commit writes only the
//     files of the objects that changed (each object taken, cleaned and
//     sealed as by a full snapshot) and what the changes alter of the
//     generated overlay: the directory of a namespace is generated again
//     only when a changed object of it has a patch there, before or after
//     (the whole overlay when the changes hold a cluster-scoped object or
//     make a namespace come or go). A full snapshot (controller.Snapshot)
//     runs at start, after the informers synced, and every ResyncPeriod,
//     with a forced apply (drift). The watch streams ask for no gzip: one
//     stream per taken kind and mapped namespace each held a decompressor
//     for good (12 MiB with 10 namespaces); the price is that an informer's
//     list (at start, and after a watch expires) crosses the network
//     uncompressed, which costs time on a slow link to the source.
//
// Snapshot commits carry Snapshot-Mode: manual, scheduled or continuous.
//
// # Remotes and review mode
//
// When the repository is a clone of a remote (gitstore.Clone), every commit
// this package makes — Snapshot, the continuous commits, Failover,
// Rollback — goes through gitstore's CommitAndPush: it is pushed, and
// when the push is rejected because the remote moved, it is built again on
// the remote's new tip (a snapshot from the same objects; a rollback as a
// revert of the same commit, refused if it no longer applies). Run fetches
// before every cycle and every RefPollPeriod, and applies the followed ref
// when it moved: people's pushed commits are noticed by polling.
//
// [RefsFor] says where snapshots go and what the target follows. In review
// mode (the mapping's spec.review) snapshots go to their own branch, which
// starts from the followed ref and starts from it again once everything on
// it has been merged there; [StatusOf] counts the commits waiting, and
// [CompareRefs] summarises two refs as object changes.
//
// Every new commit of the followed ref (RunOptions.Ref, default the
// branch) is applied by one apply loop: after a snapshot commit, when the
// repository's refs change on disk (fsnotify on the refs directories and
// packed-refs: a revert or an edited overlay committed by a person), every
// RefPollPeriod as a safety net, and after a failure with a backoff up to
// 10 s, so that a target that was away is caught up without help. The
// loop applies the resolved commit, never the moving ref, and skips a
// commit the target's inventory already holds: a new term (a restart, a
// new leader) applies the ref only when the target is behind.
//
// # What a commit costs
//
// The apply loop renders through a render.Cache: each kustomize run (one
// chunk of the overlay) is kept under a key naming exactly the files it
// reads, so a commit of one object runs kustomize over that object's chunk
// only, whatever the repository holds. The rendered objects the cache
// and the loop keep between commits are compact (render.Cache.Build: their
// JSON and their identity); the reconciler expands an object where it
// reads it (reconciler.ApplyOptions.Expand) and keeps none expanded. And
// when the target's inventory records the commit the loop applied last,
// it applies only the objects whose rendered content changed since
// (reconciler.ApplyDelta: those objects read one by one, dry-run all
// together before anything is written, applied; the objects that left
// the set pruned; the inventory updated, only its buckets that changed).
// A change then costs what it touches, not the 10,000 objects of the
// namespaces.
//
// The price: an incremental apply does not look at the live copies of the
// objects the commit did not change, so drift on the target — an object
// edited or deleted there by someone else — is not corrected by the next
// commit, only by the next apply of the whole set. That is the forced
// apply of every full resync (ResyncPeriod, default 10 minutes) in
// continuous mode, and the first apply of every term, which both keep the
// whole path: list and compare every object, dry-run what differs (at the
// start of a term in continuous mode they are one: the forced apply of the
// first resync is skipped when the apply loop applied the whole set of the
// same commit since the resync began). The
// whole set is applied too when the inventory holds another commit
// (someone else applied), after an apply that failed, and when an
// incremental apply fails (the whole path then says what the target
// refuses). The one-shot commands (`dr-syncer apply`, `sync`, Apply) keep
// the whole path.
//
// After each successful apply, RunOptions.Volumes (the PVC stage) is
// called with the commit in its own goroutine, latest wins: while a copy
// runs, newer commits only replace the one waiting, and one copy at the
// newest follows — not a queue, and never a wait for snapshots or applies.
//
// Lag is measured per change in continuous mode: from the moment its
// informer event arrived to the end of the apply of a commit that holds it
// (the commit itself or a descendant: a person's merge), observed in
// dr_syncer_lag_seconds, and the worst of the last apply is written to the
// ConfigMap status-<mapping> beside the inventory, where StatusOf reads it
// (Status.ChangeLag) — by a goroutine of its own, so that the next apply
// does not wait for the write.
//
// On SIGTERM (ctx cancelled) a snapshot in flight is abandoned (gitstore
// moves refs by check-and-set: there is no half-written ref), an apply in
// flight gets a short grace period to complete and record its inventory,
// the Lease is released after the work returned, and the next start
// applies the followed ref if the target's inventory is behind it.
//
// Metrics (prefix dr_syncer_): cycles_total{mode,result},
// commits_total{mode}, commit_objects, apply_objects_total{action},
// prunes_total, errors_total{stage}, lag_seconds, ticks_skipped_total,
// last_success_timestamp_seconds, leader, volumes_coalesced_total. They are
// served with /healthz and /readyz (ready: a follower waiting, or a leader
// whose informers synced and whose mode started) at RunOptions.MetricsAddr.
// `dr-syncer run` registers the process's and the Go runtime's collectors
// in the same registry (process_resident_memory_bytes, go_gc_gogc_percent…).
//
// # Memory
//
// A controller holds, for good, what it needs to make a commit or an
// apply cost what changed. With 10,000 objects in the mapped namespaces
// (controller/run_bench_test.go) the live heap after a collection is
// about 70 MB: the watcher's caches, each object as its cleaned JSON
// beside its identity (~17 MB); the render cache's rendered objects,
// compact, as JSON beside their identity (about half their size as
// nested maps); the inventory of the target (entries, their encoded
// buckets, the key set); go-git's object cache (bounded at 2 + 1 MiB)
// and gitstore's index (~4 MB). It does not hold the YAML of the objects
// of the last snapshot (the encode cache keeps their blob hashes), nor a
// listener buffer per informer (plain informers, not shared ones), nor
// the whole set in full during a whole-set apply (the reconciler expands
// each object where it reads it).
//
// The peak RSS is the heap at its highest plus the binary's mapped pages
// (~55 MiB for the static binary the image holds; a cgo build exports
// every symbol for kustomize's import of package plugin, ~18 MiB more).
// The heap is highest in the first full snapshot, the first full render
// and in bursts of changes, which all allocate fast: at the garbage
// collector's default target (GOGC=100) it reaches about twice the data
// live at each collection plus what is allocated while it marks.
// `dr-syncer run` sets the target to DefaultGCPercent (50) unless GOGC
// is set (--gc-percent). With 10,000 objects, two runs of each
// interleaved: peak RSS 223 and 230 MiB at 50, 299 and 291 MiB at 100;
// the lag the same within noise (burst p50 0.34 and 0.30 s against 0.34
// and 0.30 s, p99 0.53 and 0.48 s against 0.58 and 0.51 s); the CPU time
// of the measured changes 9.4 and 9.2 s against 8.7 and 7.6 s (about 12%
// more). Before the commits and applies of a change stopped allocating in
// proportion to the whole set (render's merge, the inventory's buckets),
// the same target cost ~0.1 s of burst lag. A memory limit
// (--memory-limit, GOMEMLIMIT) is the complement for a container with a
// limit: below the data live in a burst, the collector runs all the time.
