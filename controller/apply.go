package controller

import (
	"cmp"
	"context"
	"fmt"

	"filippo.io/age"
	"github.com/go-git/go-git/v5/plumbing"
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
