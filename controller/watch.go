package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// continuous is the continuous mode: informers on the source (package
// snapshot's Watcher), changes gathered into small commits, a full
// snapshot at start and every ResyncPeriod.
type continuous struct {
	r *runner
	w *snapshot.Watcher

	mu      sync.Mutex
	pending map[snapshot.ID]time.Time // changed objects, and when their first unrecorded event arrived
	kick    chan struct{}

	generated map[string][]byte // the generated overlay as last committed

	took struct{ objects, generate time.Duration } // of the last build, for the log
}

func (r *runner) continuous(ctx context.Context) {
	c := &continuous{r: r, pending: map[snapshot.ID]time.Time{}, kick: make(chan struct{}, 1)}
	src := rest.CopyConfig(r.opts.Source)
	src.WarningHandler = rest.NoWarnings{}
	for ctx.Err() == nil {
		w, err := snapshot.Watch(ctx, r.opts.Config, src, c.changed)
		if err == nil {
			err = w.WaitForSync(ctx)
		}
		if err == nil {
			c.w = w
			break
		}
		if ctx.Err() != nil {
			return
		}
		r.m.errors.WithLabelValues(stageWatch).Inc()
		r.log.Error("watch the source; retrying in 5s", "error", err)
		sleep(ctx, 5*time.Second)
	}
	if ctx.Err() != nil {
		return
	}
	// Everything before the informers' lists is caught by a full snapshot;
	// everything after arrives as events.
	c.resync(ctx)
	r.h.ready.Store(true)
	resync := time.NewTicker(r.opts.ResyncPeriod)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resync.C:
			c.resync(ctx)
			continue
		case <-c.kick:
		}
		if !c.debounce(ctx) {
			return
		}
		c.flush(ctx)
	}
}

// changed records an event; called by the informers.
func (c *continuous) changed(id snapshot.ID, seen time.Time) {
	c.mu.Lock()
	if _, ok := c.pending[id]; !ok {
		c.pending[id] = seen
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// debounce waits, after a first event, until events pause for a tenth of
// Debounce or Debounce has passed: with the default of 250 ms, a single
// change is committed about 25 ms after it happened, a burst in commits of
// at most a quarter of a second of changes each (a dozen changes at 50 a
// second). It returns false when ctx is done.
func (c *continuous) debounce(ctx context.Context) bool {
	// From the first change waiting: those that arrived during the last
	// commit have waited already.
	first := time.Now()
	c.mu.Lock()
	for _, t := range c.pending {
		if t.Before(first) {
			first = t
		}
	}
	c.mu.Unlock()
	deadline := first.Add(c.r.opts.Debounce)
	quiet := c.r.opts.Debounce / 10
	t := time.NewTimer(quiet)
	defer t.Stop()
	for {
		wait := min(quiet, time.Until(deadline))
		if wait <= 0 {
			return true
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return false
		case <-c.kick:
		case <-t.C:
			return true
		}
	}
}

// resync takes a full snapshot (what the events may have missed) and
// applies the followed ref even if the target holds it (drift).
func (c *continuous) resync(ctx context.Context) {
	r := c.r
	start := time.Now()
	// The events before the snapshot are in it.
	c.mu.Lock()
	taken := c.pending
	c.pending = map[snapshot.ID]time.Time{}
	c.mu.Unlock()
	err := r.fetch(ctx)
	var res SnapshotResult
	if err == nil {
		res, err = r.snapshot(ctx)
	}
	if err != nil {
		if ctx.Err() == nil {
			r.m.cycles.WithLabelValues(r.mode, "error").Inc()
			r.log.Error("full snapshot", "error", err)
			c.requeue(taken)
		}
		return
	}
	// The overlay the snapshot committed (or found committed): without it
	// the next commit would generate it again from every object the
	// informers hold, decoding them all at once (55 MiB live with 10,000
	// objects, the controller's peak after its first apply).
	c.generated = res.generated
	if res.Changed && len(taken) > 0 {
		r.recordLag(res.Commit, slices.Collect(maps.Values(taken)))
	}
	r.m.cycles.WithLabelValues(r.mode, "success").Inc()
	if err := r.applyTip(ctx, start); err != nil && ctx.Err() == nil {
		r.log.Error("apply after full snapshot", "error", err)
		r.kickApply() // the apply loop retries
	}
}

func (c *continuous) requeue(ids map[snapshot.ID]time.Time) {
	c.mu.Lock()
	for id, t := range ids {
		if old, ok := c.pending[id]; !ok || t.Before(old) {
			c.pending[id] = t
		}
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flush commits the pending changes: one commit touching only the files of
// the objects that changed (and the generated overlay, if it follows), then
// hands the apply to the apply loop.
func (c *continuous) flush(ctx context.Context) {
	r := c.r
	c.mu.Lock()
	batch := c.pending
	c.pending = map[snapshot.ID]time.Time{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	var (
		commit plumbing.Hash
		res    SnapshotResult
		seen   []time.Time
		err    error
	)
	start := time.Now()
	for attempt := 0; attempt < 3; attempt++ {
		commit, res, seen, err = c.commit(ctx, batch)
		// Someone moved the branch between our read and our write (a
		// person's commit): read again and retry.
		if !errors.Is(err, storage.ErrReferenceHasChanged) {
			break
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		r.m.errors.WithLabelValues(stageSnapshot).Inc()
		r.m.cycles.WithLabelValues(r.mode, "error").Inc()
		r.log.Error("continuous commit; the changes wait for the next one", "objects", len(batch), "error", err)
		c.requeue(batch)
		sleep(ctx, time.Second)
		return
	}
	r.m.cycles.WithLabelValues(r.mode, "success").Inc()
	if !res.Changed {
		return
	}
	r.m.commits.WithLabelValues(r.mode).Inc()
	r.m.commitObjects.Observe(float64(len(res.Added) + len(res.Modified) + len(res.Removed)))
	r.log.Info("changes committed", "commit", commit.String(), "added", len(res.Added),
		"modified", len(res.Modified), "removed", len(res.Removed), "duration", time.Since(start).Round(time.Millisecond),
		"objects", c.took.objects.Round(time.Millisecond), "generate", c.took.generate.Round(time.Millisecond))
	r.recordLag(commit, seen)
	r.kickApply()
}

// commit writes one commit of the objects of batch as the watcher holds
// them now (pushed, in a clone of a remote; rebuilt on the remote's tip
// when the push is rejected).
func (c *continuous) commit(ctx context.Context, batch map[snapshot.ID]time.Time) (plumbing.Hash, SnapshotResult, []time.Time, error) {
	r := c.r
	repo, branch := r.opts.Repo, r.opts.Branch
	if r.opts.Base != "" {
		if err := startBranch(ctx, repo, branch, r.opts.Base); err != nil {
			return plumbing.ZeroHash, SnapshotResult{}, nil, err
		}
	}
	var (
		res       SnapshotResult
		seen      []time.Time
		generated map[string][]byte
		built     plumbing.Hash
	)
	hash, err := commit(ctx, repo, branch, func(ctx context.Context, tip plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
		var changes []gitstore.Change
		var err error
		built = tip
		changes, res, seen, generated, err = c.build(ctx, batch, tip)
		return changes, gitstore.CommitOptions{Message: snapshotMessage(r.opts.Config.Spec.Source.Name, r.mode, res)}, err
	})
	if errors.Is(err, gitstore.ErrNoChange) {
		if generated != nil {
			c.generated = generated
		}
		return built, SnapshotResult{}, nil, nil
	}
	if err != nil {
		return plumbing.ZeroHash, res, nil, err
	}
	c.generated = generated
	res.Commit, res.Changed = hash, true
	return hash, res, seen, nil
}

// build computes the changes of the objects of batch on top of tip, and
// the generated overlay they lead to (nil: not regenerated).
func (c *continuous) build(ctx context.Context, batch map[snapshot.ID]time.Time, tip plumbing.Hash) ([]gitstore.Change, SnapshotResult, []time.Time, map[string][]byte, error) {
	r := c.r
	repo, branch, source := r.opts.Repo, r.opts.Branch, r.opts.Config.Spec.Source.Name
	opts := snapshot.Options{Sealer: r.opts.Sealer}
	if !tip.IsZero() {
		opts.Previous = func(ctx context.Context, id snapshot.ID) (*unstructured.Unstructured, error) {
			return previous(ctx, repo, tip.String(), source, id)
		}
	}
	var res SnapshotResult
	var changes []gitstore.Change
	var seen []time.Time
	current := map[snapshot.ID]*unstructured.Unstructured{}
	start := time.Now()
	for _, id := range slices.SortedFunc(maps.Keys(batch), snapshot.ID.Compare) {
		path, err := gitstore.ObjectPath(source, gitstore.ObjectID(id))
		if err != nil {
			return nil, res, nil, nil, fmt.Errorf("%s: %w", id, err)
		}
		o, err := c.w.Object(ctx, id, opts)
		if err != nil {
			return nil, res, nil, nil, err
		}
		var data []byte
		if o != nil {
			e := encodeOne(source, o)
			if e.err != nil {
				return nil, res, nil, nil, e.err
			}
			data = e.data
		}
		var old []byte
		if !tip.IsZero() {
			old, err = repo.ReadFile(ctx, tip.String(), path)
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, res, nil, nil, err
			}
		}
		switch {
		case data == nil && old == nil, data != nil && bytes.Equal(data, old):
			continue // a change the snapshot does not record (status, managedFields...)
		case old == nil:
			res.Added = append(res.Added, path)
		case data == nil:
			res.Removed = append(res.Removed, path)
		default:
			res.Modified = append(res.Modified, path)
		}
		changes = append(changes, gitstore.Change{Path: path, Content: data})
		seen = append(seen, batch[id])
		current[id] = o
	}
	c.took.objects = time.Since(start)
	if len(changes) == 0 {
		return nil, res, nil, nil, nil
	}
	start = time.Now()
	defer func() { c.took.generate = time.Since(start) }()
	// The generated overlay follows the whole object set: regenerate what
	// the changes can touch of it, and commit what differs, in the same
	// commit.
	generated, err := regenerate(r.opts.Config, c.w, c.generated, current)
	if err != nil {
		return nil, res, nil, nil, err
	}
	if !maps.EqualFunc(generated, c.generated, bytes.Equal) {
		gcs, err := repo.Diff(ctx, branch, render.GeneratedPrefix(r.opts.Config), generated)
		if err != nil {
			return nil, res, nil, nil, err
		}
		res.Generated = len(gcs.Changes)
		changes = append(changes, gcs.Changes...)
	}
	return changes, res, seen, generated, nil
}

// objectSource is what regenerate reads of the source: a snapshot.Watcher.
type objectSource interface {
	Objects() ([]*unstructured.Unstructured, error)
	ObjectsIn(namespaces ...string) ([]*unstructured.Unstructured, error)
}

// regenerate returns the generated overlay (render.Generate) of the
// objects of src, given prev, the overlay before the changes of changed
// (each changed object as now taken, nil when gone); prev nil: unknown.
//
// render.Generate over the whole set costs about 100 ms per 10,000
// objects, and a commit of continuous mode changes a few of them. Its
// files are a directory per source namespace, one for the cluster-scoped
// objects and a root kustomization listing the directories; a namespace's
// files are its kustomization, which lists the objects that have a patch,
// and those patches, each a function of its object and the namespace
// mapping. So, unless the changes hold a cluster-scoped object or make a
// namespace directory come or go (then the whole set is generated again),
// a namespace is generated again only when one of its changed objects has
// a patch before or after the change, from its objects alone (with the
// cluster-scoped objects and one object of each other namespace, that the
// mapping sees every namespace of the set: see Watcher.ObjectsIn).
func regenerate(cfg *policies.SyncConfig, src objectSource, prev map[string][]byte, changed map[snapshot.ID]*unstructured.Unstructured) (map[string][]byte, error) {
	full := func() (map[string][]byte, error) {
		objs, err := src.Objects()
		if err != nil {
			return nil, err
		}
		return render.Generate(cfg, objs)
	}
	if prev == nil {
		return full()
	}
	source, prefix := cfg.Spec.Source.Name, render.GeneratedPrefix(cfg)
	// patchPath is where the generated overlay holds the patch of id.
	patchPath := func(id snapshot.ID) (string, error) {
		path, err := gitstore.ObjectPath(source, gitstore.ObjectID(id))
		return prefix + strings.TrimPrefix(path, gitstore.SnapshotPrefix(source)), err
	}
	base, err := src.ObjectsIn() // the cluster-scoped objects, one object of each namespace
	if err != nil {
		return nil, err
	}
	present := map[string]bool{}
	for _, o := range base {
		present[o.GetNamespace()] = true
	}
	for id := range changed {
		if id.Namespace == "" || !present[id.Namespace] || prev[prefix+id.Namespace+"/kustomization.yaml"] == nil {
			return full()
		}
	}
	// Which changed objects have a patch now: generated with the objects
	// that say how namespaces map.
	probe := make([]*unstructured.Unstructured, 0, len(base)+len(changed))
	for _, o := range base {
		gvk := o.GroupVersionKind()
		if _, ok := changed[snapshot.ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}]; !ok {
			probe = append(probe, o)
		}
	}
	for _, o := range changed {
		if o != nil {
			probe = append(probe, o)
		}
	}
	now, err := render.Generate(cfg, probe)
	if err != nil {
		return nil, err
	}
	var dirty []string
	for id := range changed {
		path, err := patchPath(id)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", id, err)
		}
		_, had := prev[path]
		_, has := now[path]
		if (had || has) && !slices.Contains(dirty, id.Namespace) {
			dirty = append(dirty, id.Namespace)
		}
	}
	if len(dirty) == 0 {
		return prev, nil
	}
	objs, err := src.ObjectsIn(dirty...)
	if err != nil {
		return nil, err
	}
	part, err := render.Generate(cfg, objs)
	if err != nil {
		return nil, err
	}
	inDirty := func(path string) bool {
		for _, ns := range dirty {
			if strings.HasPrefix(path, prefix+ns+"/") {
				return true
			}
		}
		return false
	}
	out := make(map[string][]byte, len(prev))
	for path, data := range prev {
		if !inDirty(path) {
			out[path] = data
		}
	}
	for path, data := range part {
		if inDirty(path) {
			out[path] = data
		}
	}
	return out, nil
}

// watchRefs asks for an apply whenever a ref of the repository changes on
// disk: a commit made by a person (a revert, an edited overlay, a merged
// pull request) is applied at once, not at the next poll. go-git and git
// write refs by renaming a lock file over them (refs/heads/<branch>, or
// packed-refs after a gc), so the directories are watched, not the files.
func (r *runner) watchRefs(ctx context.Context) {
	if r.opts.Repo.Remote() != "" {
		r.pollRemote(ctx)
		return
	}
	gitDir := r.opts.Repo.RefsDir()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn("refs: not watched; polling only", "error", err)
		return
	}
	defer w.Close()
	add := func(dir string) {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = w.Add(p)
			}
			return nil
		})
	}
	_ = w.Add(gitDir) // packed-refs
	add(filepath.Join(gitDir, "refs", "heads"))
	add(filepath.Join(gitDir, "refs", "tags"))
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			r.log.Warn("refs: watch", "error", err)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if strings.HasSuffix(ev.Name, ".lock") {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					add(ev.Name) // a branch name with a slash
				}
			}
			base := filepath.Base(ev.Name)
			if filepath.Dir(ev.Name) == gitDir && base != "packed-refs" {
				continue // HEAD, index, ORIG_HEAD...: not a ref the target follows
			}
			r.kickApply()
		}
	}
}

// pollRemote fetches a remote every RefPollPeriod and asks for an apply
// when the followed ref moved: what people push (a revert, a merged pull
// request, an edited overlay) is noticed by polling, there being nothing on
// disk to watch before a fetch.
func (r *runner) pollRemote(ctx context.Context) {
	t := time.NewTicker(r.opts.RefPollPeriod)
	defer t.Stop()
	last, _ := r.opts.Repo.Resolve(ctx, r.opts.Ref)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.fetch(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("fetch; trying again at the next poll", "error", err)
			}
			continue
		}
		if tip, err := r.opts.Repo.Resolve(ctx, r.opts.Ref); err == nil && tip != last {
			last = tip
			r.kickApply()
		}
	}
}

// fetch brings the remote's commits into the clone; a no-op for a local
// repository.
func (r *runner) fetch(ctx context.Context) error {
	if r.opts.Repo.Remote() == "" {
		return nil
	}
	err := r.opts.Repo.Fetch(ctx)
	if err != nil && ctx.Err() == nil {
		r.m.errors.WithLabelValues(stageFetch).Inc()
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
