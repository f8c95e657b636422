package controller

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"filippo.io/age"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/reconciler"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// The manual trigger: `kubectl -n dr-syncer-system annotate configmap
// dr-syncer-trigger dr-syncer.io/sync-now="$(date +%s)" --overwrite` on the
// target cluster. Each new value runs one cycle; the controller writes the
// value it handled to SyncedAnnotation, and the outcome to
// SyncResultAnnotation.
const (
	TriggerName          = "dr-syncer-trigger"
	SyncNowAnnotation    = "dr-syncer.io/sync-now"
	SyncedAnnotation     = "dr-syncer.io/synced"
	SyncResultAnnotation = "dr-syncer.io/sync-result"
)

// Defaults of RunOptions.
const (
	DefaultDebounce      = 250 * time.Millisecond
	DefaultResyncPeriod  = 10 * time.Minute
	DefaultRefPollPeriod = 30 * time.Second
)

// DefaultGCPercent is the garbage collector's target (GOGC) that `dr-syncer
// run` sets unless GOGC is set: a heap of 1.5 times the live data instead
// of twice. The controller's peak is its heap in the first full snapshot
// and apply, and in bursts of changes, all of which allocate fast; see
// "Memory" in controller/doc.go for what it costs and saves.
const DefaultGCPercent = 50

// RunOptions configure the controller.
type RunOptions struct {
	// Repo is the repository. A local one's refs are watched (fsnotify)
	// so that commits made by people are applied at once; a clone's remote
	// is polled (RefPollPeriod).
	Repo *gitstore.Repository
	// Branch receives the snapshots; default DefaultBranch. Ref is what the
	// target follows; default Branch.
	Branch, Ref string
	Config      *policies.SyncConfig
	Source      *rest.Config
	Target      *rest.Config
	// Base is set in review mode: see Refs and RefsFor.
	Base string
	// Sealer seals Secrets at snapshot, Identity opens them at apply.
	Sealer   *snapshot.Sealer
	Identity *age.X25519Identity

	// Namespace is the controller's namespace in the target: the manual
	// trigger ConfigMap and, by default, the Lease. Default
	// "dr-syncer-system".
	Namespace string
	// LeaseNamespace and LeaseName name the coordination.k8s.io Lease, in
	// the target cluster, that elects the one replica that works. Default
	// Namespace and "dr-syncer-<mapping name>".
	LeaseNamespace, LeaseName string
	// ID names this replica in the Lease; default host name and a random
	// suffix.
	ID string
	// LeaseDuration; RenewDeadline and RetryPeriod follow it (2/3 and
	// 2/15). Default DefaultLeaseDuration.
	LeaseDuration time.Duration

	// Debounce bounds how long a change of the source waits for its
	// commit in continuous mode: a batch of changes is committed when
	// events pause for Debounce/10, or when its first change has waited
	// Debounce; default DefaultDebounce. See doc.go.
	Debounce time.Duration
	// ResyncPeriod is the period of the full snapshot (and forced apply)
	// of continuous mode; default DefaultResyncPeriod.
	ResyncPeriod time.Duration
	// RefPollPeriod is the period at which the followed ref is read
	// besides fsnotify, and, when Repo is a clone of a remote, at which the
	// remote is fetched; default DefaultRefPollPeriod.
	RefPollPeriod time.Duration
	// Schedule, when set, replaces the mapping's cron schedule in
	// scheduled mode (cron.Every(time.Second) in tests).
	Schedule cron.Schedule

	// Registry receives the metrics (and the PVC stage registers its own
	// there); default a new registry.
	Registry *prometheus.Registry
	// MetricsAddr, when set, serves /metrics, /healthz and /readyz.
	MetricsAddr string
	// Logger; default slog.Default().
	Logger *slog.Logger

	// Volumes is the PVC stage, called after every successful apply with
	// the commit applied, in its own goroutine: while it runs, newer
	// applies only record their commit, and one run at the newest follows
	// (latest wins, not a queue). Optional.
	Volumes func(ctx context.Context, commit plumbing.Hash) error
}

func (o RunOptions) withDefaults() RunOptions {
	o.Branch = cmp.Or(o.Branch, DefaultBranch)
	o.Ref = cmp.Or(o.Ref, o.Branch)
	o.Namespace = cmp.Or(o.Namespace, reconciler.DefaultInventoryNamespace)
	o.LeaseNamespace = cmp.Or(o.LeaseNamespace, o.Namespace)
	if o.LeaseName == "" && o.Config != nil {
		o.LeaseName = "dr-syncer-" + o.Config.Metadata.Name
	}
	if o.ID == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		o.ID = cmp.Or(host, "dr-syncer") + "_" + hex.EncodeToString(suffix)
	}
	o.LeaseDuration = cmp.Or(o.LeaseDuration, DefaultLeaseDuration)
	o.Debounce = cmp.Or(o.Debounce, DefaultDebounce)
	o.ResyncPeriod = cmp.Or(o.ResyncPeriod, DefaultResyncPeriod)
	o.RefPollPeriod = cmp.Or(o.RefPollPeriod, DefaultRefPollPeriod)
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Run is the controller: it takes part in the leader election and, while it
// leads, replicates as the mapping's spec.replication says (manual,
// scheduled or continuous) and applies every new commit of the followed
// ref, until ctx is done. It returns nil then, and an error only when it
// cannot start.
func Run(ctx context.Context, opts RunOptions) error {
	opts = opts.withDefaults()
	switch {
	case opts.Repo == nil:
		return errors.New("controller: RunOptions.Repo is required")
	case opts.Config == nil:
		return errors.New("controller: RunOptions.Config is required")
	case opts.Source == nil || opts.Target == nil:
		return errors.New("controller: RunOptions.Source and Target are required")
	}
	mode := opts.Config.Spec.Replication.Mode
	var sched cron.Schedule
	var loc *time.Location
	switch mode {
	case policies.ReplicationModeManual, "", policies.ReplicationModeContinuous:
	case policies.ReplicationModeScheduled:
		var err error
		if sched, loc, err = schedule(opts); err != nil {
			return err
		}
	default:
		return fmt.Errorf("controller: replication mode %q: want manual, scheduled or continuous", mode)
	}
	log := opts.Logger.With("mapping", opts.Config.Metadata.Name, "mode", cmp.Or(string(mode), "manual"))
	tgt := rest.CopyConfig(opts.Target)
	tgt.WarningHandler = rest.NoWarnings{}
	kube, err := kubernetes.NewForConfig(tgt)
	if err != nil {
		return fmt.Errorf("controller: target: %w", err)
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return err
	}
	h := &health{}
	h.ready.Store(true) // a follower waiting for the Lease is ready
	if opts.MetricsAddr != "" {
		if err := serve(ctx, opts.MetricsAddr, opts.Registry, h, log); err != nil {
			return err
		}
	}
	onLeading := func(leading bool) {
		if leading {
			m.leader.Set(1)
			h.ready.Store(false)
			return
		}
		m.leader.Set(0)
		h.ready.Store(true)
	}
	return lead(ctx, kube, opts, log, onLeading, func(ctx context.Context) {
		r := &runner{
			opts: opts, log: log, m: m, h: h, kube: kube,
			mode:      cmp.Or(string(mode), "manual"),
			applyKick: make(chan struct{}, 1),
			lagStatus: make(chan lagStatus, 1),
		}
		r.volumes = newCoalescer(r.runVolumes, m.volumesSkipped)
		r.run(ctx, sched, loc)
	})
}

// schedule parses the mapping's schedule in its time zone (UTC by default).
func schedule(opts RunOptions) (cron.Schedule, *time.Location, error) {
	rep := opts.Config.Spec.Replication
	loc := time.UTC
	if rep.TimeZone != "" {
		var err error
		if loc, err = time.LoadLocation(rep.TimeZone); err != nil {
			return nil, nil, fmt.Errorf("controller: spec.replication.timeZone %q: %w", rep.TimeZone, err)
		}
	}
	if opts.Schedule != nil {
		return opts.Schedule, loc, nil
	}
	s, err := cron.ParseStandard(rep.Schedule)
	if err != nil {
		return nil, nil, fmt.Errorf("controller: spec.replication.schedule %q: %w", rep.Schedule, err)
	}
	return s, loc, nil
}

// runner is the work of one term as leader.
type runner struct {
	opts RunOptions
	log  *slog.Logger
	m    *metrics
	h    *health
	kube kubernetes.Interface
	mode string

	applyKick   chan struct{}
	applyMu     sync.Mutex
	lastApplied plumbing.Hash
	applier     *applier // made by the first apply of the term
	// lastFull is the last commit whose whole set was applied, in an
	// apply that started at lastFullStart.
	lastFull      plumbing.Hash
	lastFullStart time.Time

	volumes *coalescer

	lagMu      sync.Mutex
	lagPending []lagEntry
	// lagStatus holds the newest lag to write to the target, for
	// statusLoop: the write is off the apply loop's path.
	lagStatus chan lagStatus
}

// lagStatus is the worst lag of the changes of an apply.
type lagStatus struct {
	commit plumbing.Hash
	lag    time.Duration
	at     time.Time
}

// lagEntry is a continuous commit and when the source events of its
// changes arrived.
type lagEntry struct {
	commit plumbing.Hash
	seen   []time.Time
}

func (r *runner) run(ctx context.Context, sched cron.Schedule, loc *time.Location) {
	// Where the target stands: its inventory says which commit it holds,
	// so a new term applies the followed ref only if the target is behind.
	if mgr, err := newManager(r.applyOptions()); err == nil {
		if inv, err := mgr.Inventory(ctx); err == nil && inv.Commit != "" {
			r.lastApplied = plumbing.NewHash(inv.Commit)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.applyLoop(ctx) })
	wg.Go(func() { r.volumes.loop(ctx) })
	wg.Go(func() { r.statusLoop(ctx) })
	wg.Go(func() { r.watchRefs(ctx) })
	if r.mode != string(policies.ReplicationModeContinuous) {
		// Continuous mode applies after its first full snapshot.
		r.kickApply()
	}
	switch r.mode {
	case string(policies.ReplicationModeScheduled):
		r.scheduled(ctx, sched, loc)
	case string(policies.ReplicationModeContinuous):
		r.continuous(ctx)
	default:
		r.manual(ctx)
	}
	wg.Wait()
}

func (r *runner) applyOptions() ApplyOptions {
	return ApplyOptions{Repo: r.opts.Repo, Ref: r.opts.Ref, Config: r.opts.Config, Target: r.opts.Target, Identity: r.opts.Identity}
}

// snapshot takes a full snapshot onto the branch.
func (r *runner) snapshot(ctx context.Context) (SnapshotResult, error) {
	res, err := Snapshot(ctx, SnapshotOptions{
		Repo: r.opts.Repo, Branch: r.opts.Branch, Base: r.opts.Base, Config: r.opts.Config,
		Source: r.opts.Source, Sealer: r.opts.Sealer, Mode: r.mode,
	})
	if err != nil {
		if ctx.Err() == nil {
			r.m.errors.WithLabelValues(stageSnapshot).Inc()
		}
		return res, err
	}
	if res.Changed {
		r.m.commits.WithLabelValues(r.mode).Inc()
		r.m.commitObjects.Observe(float64(len(res.Added) + len(res.Modified) + len(res.Removed)))
		r.log.Info("snapshot committed", "commit", res.Commit.String(), "added", len(res.Added),
			"modified", len(res.Modified), "removed", len(res.Removed), "objects", res.Objects)
	} else {
		r.log.Debug("snapshot: no change", "commit", res.Commit.String(), "objects", res.Objects)
	}
	return res, nil
}

// cycle is one manual or scheduled cycle: snapshot, commit if anything
// changed, apply the followed ref (the PVC stage follows the apply).
func (r *runner) cycle(ctx context.Context) error {
	if err := r.fetch(ctx); err != nil {
		r.m.cycles.WithLabelValues(r.mode, "error").Inc()
		return err
	}
	if _, err := r.snapshot(ctx); err != nil {
		r.m.cycles.WithLabelValues(r.mode, "error").Inc()
		return err
	}
	if err := r.applyTip(ctx, time.Time{}); err != nil {
		r.m.cycles.WithLabelValues(r.mode, "error").Inc()
		return err
	}
	r.m.cycles.WithLabelValues(r.mode, "success").Inc()
	return nil
}

// manual runs one cycle per new value of the trigger's annotation.
func (r *runner) manual(ctx context.Context) {
	cms := r.kube.CoreV1().ConfigMaps(r.opts.Namespace)
	if err := ensureNamespace(ctx, r.kube, r.opts.Namespace); err != nil {
		r.log.Warn("trigger namespace", "error", err)
	}
	trigger := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: TriggerName, Namespace: r.opts.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": "dr-syncer"}},
		Data: map[string]string{"README": "Annotate this ConfigMap to run one replication cycle:\n" +
			"  kubectl -n " + r.opts.Namespace + " annotate configmap " + TriggerName + " " + SyncNowAnnotation + "=\"$(date +%s)\" --overwrite\n"},
	}
	if _, err := cms.Create(ctx, trigger, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
		r.m.errors.WithLabelValues(stageTrigger).Inc()
		r.log.Error("trigger: create", "object", "ConfigMap/"+r.opts.Namespace+"/"+TriggerName, "error", err)
	}
	requests := make(chan string, 1)
	offer := func(o any) {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok {
			return
		}
		v := cm.Annotations[SyncNowAnnotation]
		if v == "" || v == cm.Annotations[SyncedAnnotation] {
			return
		}
		select { // the newest request replaces one not yet taken
		case <-requests:
		default:
		}
		requests <- v
	}
	factory := informers.NewSharedInformerFactoryWithOptions(r.kube, 0, informers.WithNamespace(r.opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + TriggerName }))
	inf := factory.Core().V1().ConfigMaps().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: offer, UpdateFunc: func(_, o any) { offer(o) }})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		r.h.ready.Store(true)
	}
	done := ""
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-requests:
			if v == done {
				continue // seen again before our own annotation reached the cache
			}
			log := r.log.With("trigger", v)
			log.Info("manual cycle requested")
			result := "ok"
			if err := r.cycle(ctx); err != nil {
				if ctx.Err() != nil {
					return // the next leader runs it: the trigger is not marked
				}
				log.Error("manual cycle", "error", err)
				result = "error: " + err.Error()
			}
			done = v
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q,%q:%q}}}`, SyncedAnnotation, v, SyncResultAnnotation, result)
			if _, err := cms.Patch(ctx, TriggerName, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && ctx.Err() == nil {
				r.m.errors.WithLabelValues(stageTrigger).Inc()
				log.Error("trigger: record", "object", "ConfigMap/"+r.opts.Namespace+"/"+TriggerName, "error", err)
			}
		}
	}
}

// scheduled runs one cycle per tick; a tick that finds the last cycle still
// running is skipped and counted, not queued.
func (r *runner) scheduled(ctx context.Context, sched cron.Schedule, loc *time.Location) {
	var busy atomic.Bool
	var wg sync.WaitGroup
	c := cron.New(cron.WithLocation(loc))
	c.Schedule(sched, cron.FuncJob(func() {
		if !busy.CompareAndSwap(false, true) {
			r.m.ticksSkipped.Inc()
			r.log.Warn("tick skipped: the last cycle is still running")
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer busy.Store(false)
		if ctx.Err() != nil {
			return
		}
		if err := r.cycle(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("scheduled cycle", "error", err)
		}
	}))
	c.Start()
	r.h.ready.Store(true)
	<-ctx.Done()
	<-c.Stop().Done()
	wg.Wait()
}

// kickApply asks the apply loop to look at the followed ref.
func (r *runner) kickApply() {
	select {
	case r.applyKick <- struct{}{}:
	default:
	}
}

// applyLoop applies the followed ref when asked, when the poll says so, and
// again after a failure (backing off up to 10 s), so that a target that was
// away is caught up without help.
func (r *runner) applyLoop(ctx context.Context) {
	poll := time.NewTicker(r.opts.RefPollPeriod)
	defer poll.Stop()
	retry := time.NewTimer(0)
	<-retry.C
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.applyKick:
		case <-poll.C:
		case <-retry.C:
		}
		err := r.applyTip(ctx, time.Time{})
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(500*time.Millisecond, 2*backoff), 10*time.Second)
			r.log.Error("apply failed; retrying", "in", backoff, "error", err)
			retry.Reset(backoff)
			continue
		}
		backoff = 0
	}
}

// applyGrace is how long an apply in flight may finish after the context
// of the term is cancelled (SIGTERM, Lease lost): within the margin that
// leader election leaves between noticing the loss and another replica
// taking over, an apply completes and records its inventory instead of
// leaving objects applied and not recorded.
func (r *runner) applyGrace() time.Duration {
	return time.Duration(float64(r.opts.LeaseDuration) * (1 - renewRatio) / 2)
}

// applyTip applies the commit at the followed ref, unless the target holds
// it already. A non-zero forced (the time a full resync started) applies
// the whole set anyway, correcting drift — unless an apply of the whole
// set of that very commit started since then: at the start of a term, the
// apply loop's first apply of the resync's commit is one (and the second
// would list and compare every object again for nothing).
func (r *runner) applyTip(ctx context.Context, forced time.Time) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	commit, err := r.opts.Repo.Resolve(ctx, r.opts.Ref)
	if err != nil {
		r.m.errors.WithLabelValues(stageApply).Inc()
		return err
	}
	force := !forced.IsZero()
	if commit.IsZero() || !force && commit == r.lastApplied ||
		force && commit == r.lastFull && !r.lastFullStart.Before(forced) {
		return nil
	}
	log := r.log.With("commit", commit.String())
	actx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.applyGrace(), cancel)
		context.AfterFunc(actx, func() { t.Stop() })
	})
	defer stop()
	opts := r.applyOptions()
	opts.Ref = commit.String()
	start := time.Now()
	if r.applier == nil {
		if r.applier, err = newApplier(opts, r.log); err != nil {
			r.m.errors.WithLabelValues(stageApply).Inc()
			return err
		}
	}
	// Forced (the full resync): the whole set, correcting drift; else
	// what changed since the commit last applied, when the target's
	// inventory still holds it.
	res, incremental, err := r.applier.apply(actx, opts, commit, force)
	if res.Result != nil {
		for action, n := range res.Counts() {
			r.m.applied.WithLabelValues(lower(string(action))).Add(float64(n))
			if action == reconciler.Deleted {
				r.m.prunes.Add(float64(n))
			}
		}
	}
	if err != nil {
		r.m.errors.WithLabelValues(stageApply).Inc()
		return fmt.Errorf("commit %s: apply: %w", commit, err)
	}
	r.lastApplied = commit
	if !incremental {
		r.lastFull, r.lastFullStart = commit, start
	}
	r.m.lastSuccess.SetToCurrentTime()
	counts := res.Counts()
	log.Info("applied", "duration", time.Since(start).Round(time.Millisecond), "render", r.applier.rendered.Round(time.Millisecond), "incremental", incremental,
		"created", counts[reconciler.Created], "configured", counts[reconciler.Configured],
		"deleted", counts[reconciler.Deleted], "unchanged", counts[reconciler.Unchanged])
	r.observeLag(ctx, commit)
	if r.opts.Volumes != nil {
		r.volumes.set(commit)
	}
	return nil
}

func lower(s string) string {
	if s == "" {
		return s
	}
	return string(s[0]|0x20) + s[1:]
}

// recordLag remembers when the changes of a continuous commit were seen.
func (r *runner) recordLag(commit plumbing.Hash, seen []time.Time) {
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	r.lagPending = append(r.lagPending, lagEntry{commit, seen})
	// A followed ref that never takes the branch's commits (review mode,
	// nobody merges) must not make this grow without end.
	if len(r.lagPending) > 1000 {
		r.lagPending = r.lagPending[len(r.lagPending)-1000:]
	}
}

// observeLag observes the lag of the changes whose commit the applied
// commit holds (it, or one of its ancestors), and records the worst in the
// target for `dr-syncer status`.
func (r *runner) observeLag(ctx context.Context, applied plumbing.Hash) {
	now := time.Now()
	r.lagMu.Lock()
	pending := r.lagPending
	r.lagMu.Unlock()
	if len(pending) == 0 {
		return
	}
	want := map[plumbing.Hash]bool{}
	for _, e := range pending {
		want[e.commit] = true
	}
	found := map[plumbing.Hash]bool{}
	n := 0
	_ = r.opts.Repo.Log(ctx, applied.String(), func(c gitstore.CommitInfo) bool {
		if want[c.Hash] {
			found[c.Hash] = true
		}
		n++
		return len(found) < len(want) && n < 2000
	})
	var worst time.Duration
	r.lagMu.Lock()
	kept := r.lagPending[:0]
	for _, e := range r.lagPending {
		if !found[e.commit] {
			kept = append(kept, e)
			continue
		}
		for _, s := range e.seen {
			d := now.Sub(s)
			r.m.lag.Observe(d.Seconds())
			worst = max(worst, d)
		}
	}
	r.lagPending = kept
	r.lagMu.Unlock()
	if worst == 0 {
		return
	}
	// The newest replaces one not yet written: the apply loop goes on.
	for st := (lagStatus{applied, worst, now}); ; {
		select {
		case r.lagStatus <- st:
			return
		default:
		}
		select {
		case <-r.lagStatus:
		default:
		}
	}
}

// statusLoop writes to the target the lag that observeLag hands it (the
// newest, when several came during a write).
func (r *runner) statusLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case st := <-r.lagStatus:
			r.writeStatus(ctx, st.commit, st.lag, st.at)
		}
	}
}

// statusName is the ConfigMap, beside the inventory, where the controller
// records the lag of the last applied changes.
func statusName(cfg *policies.SyncConfig) string { return "status-" + cfg.Metadata.Name }

func (r *runner) writeStatus(ctx context.Context, commit plumbing.Hash, lag time.Duration, at time.Time) {
	name := statusName(r.opts.Config)
	cm := corev1ac.ConfigMap(name, reconciler.DefaultInventoryNamespace).
		WithLabels(map[string]string{"app.kubernetes.io/managed-by": "dr-syncer"}).
		WithData(map[string]string{
			"commit":        commit.String(),
			"changeLag":     strconv.FormatFloat(lag.Seconds(), 'f', 3, 64),
			"changeLagTime": at.UTC().Format(time.RFC3339Nano),
		})
	_, err := r.kube.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: "dr-syncer-controller", Force: true})
	if err != nil && ctx.Err() == nil {
		r.m.errors.WithLabelValues(stageStatus).Inc()
		r.log.Warn("status: record lag", "object", "ConfigMap/"+reconciler.DefaultInventoryNamespace+"/"+name, "error", err)
	}
}

func (r *runner) runVolumes(ctx context.Context, commit plumbing.Hash) {
	log := r.log.With("commit", commit.String())
	start := time.Now()
	if err := r.opts.Volumes(ctx, commit); err != nil {
		if ctx.Err() == nil {
			r.m.errors.WithLabelValues(stageVolumes).Inc()
			log.Error("PVC stage", "error", err)
		}
		return
	}
	log.Info("PVC stage done", "duration", time.Since(start).Round(time.Millisecond))
}

// coalescer runs fn for the newest commit it was given, one run at a time:
// commits given while a run is going are folded into one run at the newest.
type coalescer struct {
	fn      func(context.Context, plumbing.Hash)
	skipped prometheus.Counter
	kick    chan struct{}
	mu      sync.Mutex
	next    plumbing.Hash
	has     bool
}

func newCoalescer(fn func(context.Context, plumbing.Hash), skipped prometheus.Counter) *coalescer {
	return &coalescer{fn: fn, skipped: skipped, kick: make(chan struct{}, 1)}
}

func (c *coalescer) set(h plumbing.Hash) {
	c.mu.Lock()
	if c.has && c.next != h {
		c.skipped.Inc()
	}
	c.next, c.has = h, true
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *coalescer) loop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		c.mu.Lock()
		h, has := c.next, c.has
		c.has = false
		c.mu.Unlock()
		if has {
			c.fn(ctx, h)
		}
	}
}
