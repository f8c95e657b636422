package controller

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/reconciler"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// ApplyOptions say which commit to apply to which target.
type ApplyOptions struct {
	Repo   *gitstore.Repository
	Ref    string // default DefaultBranch
	Config *policies.SyncConfig
	Target *rest.Config
	// Identity opens the sealed Secrets of the commit; required when it
	// holds any.
	Identity       *age.X25519Identity
	DryRun         bool
	AllowMassPrune bool
}

// ApplyResult is what one apply did, and from which commit.
type ApplyResult struct {
	Commit plumbing.Hash
	*reconciler.Result
}

// InventoryName is the name of the inventory that records, in the target,
// what the mapping cfg applied there.
func InventoryName(cfg *policies.SyncConfig) string { return "inventory-" + cfg.Metadata.Name }

// Apply renders the commit at opts.Ref for the target, opens its Secrets and
// makes the target match it (package reconciler: staged server-side apply,
// prune through the inventory).
func Apply(ctx context.Context, opts ApplyOptions) (ApplyResult, error) {
	commit, objs, err := desired(ctx, opts)
	if err != nil {
		return ApplyResult{}, err
	}
	if err := checkStorageClasses(ctx, opts, objs); err != nil {
		return ApplyResult{Commit: commit}, err
	}
	m, err := newManager(opts)
	if err != nil {
		return ApplyResult{}, err
	}
	res, err := m.Apply(ctx, objs, reconciler.ApplyOptions{
		Commit: commit.String(), DryRun: opts.DryRun, AllowMassPrune: opts.AllowMassPrune,
	})
	return ApplyResult{Commit: commit, Result: res}, err
}

// Diff reports what Apply would change in the target, writing nothing.
func Diff(ctx context.Context, opts ApplyOptions) (plumbing.Hash, []reconciler.ObjectDiff, error) {
	commit, objs, err := desired(ctx, opts)
	if err != nil {
		return commit, nil, err
	}
	m, err := newManager(opts)
	if err != nil {
		return commit, nil, err
	}
	diffs, err := m.Diff(ctx, objs)
	return commit, diffs, err
}

func newManager(opts ApplyOptions) (*reconciler.Manager, error) {
	cfg := opts.Config
	ratio := cfg.MaxPruneRatio()
	if ratio == 0 {
		// 0% in the mapping: every prune needs --allow-mass-prune (the
		// reconciler reads a zero ratio as its default).
		ratio = 1e-9
	}
	return reconciler.New(opts.Target, reconciler.Options{
		InventoryName:  InventoryName(cfg),
		MassPruneRatio: ratio,
		Recreate:       func(gk schema.GroupKind) bool { return cfg.MayRecreate(gk.Group, gk.Kind) },
	})
}

// desired renders the commit and opens its sealed Secrets: the objects as
// the target must hold them.
func desired(ctx context.Context, opts ApplyOptions) (plumbing.Hash, []*unstructured.Unstructured, error) {
	ref := cmp.Or(opts.Ref, DefaultBranch)
	commit, err := opts.Repo.Resolve(ctx, ref)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	// Render the resolved commit, not the ref: the inventory records exactly
	// what was applied even if the branch moves meanwhile.
	objs, err := render.Build(ctx, opts.Repo, commit.String(), opts.Config)
	if err != nil {
		return commit, nil, err
	}
	for _, o := range objs {
		if o.GetAnnotations()[snapshot.EncryptedAnnotation] == "" {
			continue
		}
		if opts.Identity == nil {
			return commit, nil, fmt.Errorf("Secret/%s/%s: sealed, and no age identity to open it (pass --identity or set %s)",
				o.GetNamespace(), o.GetName(), snapshot.IdentityEnv)
		}
		if err := snapshot.Unseal(o, opts.Identity); err != nil {
			return commit, nil, err
		}
	}
	return commit, objs, nil
}

// applier applies the commits of the followed ref one after the other, for
// the controller: it renders through a render.Cache (a commit costs the
// kustomize runs its changes touch) and, when the target's inventory holds
// the last commit it applied, applies only the objects whose rendered
// content changed since (reconciler.ApplyDelta). Anything else — the first
// apply of a term, a forced apply (the full resync, which corrects drift),
// an inventory moved by someone else, a failed apply or a failed
// incremental one — applies the whole set (reconciler.Apply).
type applier struct {
	log   *slog.Logger
	cache *render.Cache
	mgr   *reconciler.Manager
	// last is the commit last applied completely, and its rendered objects
	// (as the cache shares them: compact and sealed); none after a failure.
	last     plumbing.Hash
	lastObjs []*unstructured.Unstructured
	// lastSet is lastObjs as a set, as changedObjects made it (nil: to be
	// made): one 10,000-entry map an incremental apply, not two.
	lastSet map[*unstructured.Unstructured]bool
	// opened are the Secrets of lastObjs, opened: a sealed object the
	// next commit renders unchanged (the same pointer) is not opened again.
	opened map[*unstructured.Unstructured]*unstructured.Unstructured
	// rendered is how long the render of the last apply took, for the log.
	rendered time.Duration
}

func newApplier(opts ApplyOptions, log *slog.Logger) (*applier, error) {
	m, err := newManager(opts)
	if err != nil {
		return nil, err
	}
	return &applier{log: log, cache: render.NewCache(), mgr: m}, nil
}

// apply applies commit; full forces the whole set. incremental says which
// way it went.
func (a *applier) apply(ctx context.Context, opts ApplyOptions, commit plumbing.Hash, full bool) (res ApplyResult, incremental bool, err error) {
	res.Commit = commit
	start := time.Now()
	objs, err := a.cache.Build(ctx, opts.Repo, commit.String(), opts.Config)
	a.rendered = time.Since(start)
	if err != nil {
		return res, false, err
	}
	last, lastObjs, lastSet := a.last, a.lastObjs, a.lastSet
	a.last, a.lastObjs, a.lastSet = plumbing.ZeroHash, nil, nil // until this apply succeeds
	opened := make(map[*unstructured.Unstructured]*unstructured.Unstructured)
	desired := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		if desired[i], err = a.open(o, opts.Identity, opened); err != nil {
			return res, false, err
		}
	}
	// The set stays compact: the reconciler expands an object where it
	// reads it, and drops it after (a whole set in full is ~36 MB at
	// 10,000 objects).
	aopts := reconciler.ApplyOptions{Commit: commit.String(), DryRun: opts.DryRun, AllowMassPrune: opts.AllowMassPrune, Expand: render.Expand}
	if !full && !last.IsZero() && lastObjs != nil {
		idx, set := changedObjects(lastObjs, lastSet, objs)
		changed := make([]*unstructured.Unstructured, len(idx))
		for j, i := range idx {
			changed[j] = desired[i]
		}
		res.Result, err = a.mgr.ApplyDelta(ctx, desired, reconciler.Delta{Since: last.String(), Changed: changed}, aopts)
		if err == nil {
			a.last, a.lastObjs, a.lastSet, a.opened = commit, objs, set, opened
			return res, true, nil
		}
		if ctx.Err() != nil {
			return res, true, err
		}
		// The whole set says what the target really refuses, and corrects
		// what the changes alone could not (drift, an inventory moved).
		a.log.Info("incremental apply not possible; applying the whole set", "commit", commit.String(), "since", last.String(), "error", err)
	}
	res.Result, err = a.mgr.Apply(ctx, desired, aopts)
	if err != nil {
		return res, false, err
	}
	a.last, a.lastObjs, a.opened = commit, objs, opened
	return res, false, nil
}

// open returns o with its sealed values opened (expanded, or a copy: the
// cache's object is shared), or o itself when it holds none.
func (a *applier) open(o *unstructured.Unstructured, id *age.X25519Identity, opened map[*unstructured.Unstructured]*unstructured.Unstructured) (*unstructured.Unstructured, error) {
	if u, ok := a.opened[o]; ok {
		opened[o] = u
		return u, nil
	}
	full := o
	if js, ok := render.CompactJSON(o); ok {
		// Expanded only when its JSON may hold the annotation.
		if !strings.Contains(js, snapshot.EncryptedAnnotation) {
			return o, nil
		}
		var err error
		if full, err = render.Expand(o); err != nil {
			return nil, err
		}
	}
	// Not GetAnnotations: it copies the map, of every object of the set
	// at every apply.
	v, _, _ := unstructured.NestedFieldNoCopy(full.Object, "metadata", "annotations", snapshot.EncryptedAnnotation)
	if s, _ := v.(string); s == "" {
		return o, nil
	}
	if id == nil {
		return nil, fmt.Errorf("Secret/%s/%s: sealed, and no age identity to open it (pass --identity or set %s)",
			o.GetNamespace(), o.GetName(), snapshot.IdentityEnv)
	}
	u := full
	if u == o {
		u = o.DeepCopy()
	}
	if err := snapshot.Unseal(u, id); err != nil {
		return nil, err
	}
	opened[o] = u
	return u, nil
}

// changedObjects returns the indices of the objects of next that are not
// in prev, or whose content differs, and next as a set (the prevSet of the
// next call); prevSet is prev as a set, or nil to make it. An object the
// cache gave for both (the same pointer) is unchanged without a look; two
// compact objects (the cache's) are compared by their maps, which hold
// their JSON: only the few objects that are in one set and not the other
// are keyed (reading an object's kind parses its apiVersion, which for
// every object of a large set costs more than the rest of a small
// incremental apply).
func changedObjects(prev []*unstructured.Unstructured, prevSet map[*unstructured.Unstructured]bool, next []*unstructured.Unstructured) (changed []int, nextSet map[*unstructured.Unstructured]bool) {
	type key struct{ group, kind, namespace, name string }
	keyOf := func(o *unstructured.Unstructured) key {
		gvk := o.GroupVersionKind()
		return key{gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName()}
	}
	if prevSet == nil {
		prevSet = make(map[*unstructured.Unstructured]bool, len(prev))
		for _, o := range prev {
			prevSet[o] = true
		}
	}
	nextSet = make(map[*unstructured.Unstructured]bool, len(next))
	for _, o := range next {
		nextSet[o] = true
	}
	// A key is unique within a set, so an object of prev that next also
	// holds (the same pointer) is never the previous version of another.
	old := map[key]*unstructured.Unstructured{}
	for _, o := range prev {
		if !nextSet[o] {
			old[keyOf(o)] = o
		}
	}
	for i, o := range next {
		if prevSet[o] {
			continue
		}
		if p := old[keyOf(o)]; p != nil && equality.Semantic.DeepEqual(p.Object, o.Object) {
			continue
		}
		changed = append(changed, i)
	}
	return changed, nextSet
}
