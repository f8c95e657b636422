package controller

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/reconciler"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// applierRepo commits snapshots of a few objects by hand, with their
// generated overlay, as the snapshot stage would.
type applierRepo struct {
	t      *testing.T
	repo   *gitstore.Repository
	opts   ApplyOptions
	sealer *snapshot.Sealer
	objs   map[string]*unstructured.Unstructured
}

func (r *applierRepo) commit(msg string, put []*unstructured.Unstructured, del ...string) plumbing.Hash {
	r.t.Helper()
	var changes []gitstore.Change
	for _, o := range put {
		if o.GetKind() == "Secret" {
			require.NoError(r.t, r.sealer.Seal(o, nil))
		}
		p, err := gitstore.ObjectPath("prod", gitstore.ObjectID{Group: o.GroupVersionKind().Group, Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()})
		require.NoError(r.t, err)
		data, err := yaml.Marshal(o.Object)
		require.NoError(r.t, err)
		r.objs[p] = o
		changes = append(changes, gitstore.Change{Path: p, Content: data})
	}
	for _, p := range del {
		delete(r.objs, p)
		changes = append(changes, gitstore.Change{Path: p})
	}
	var all []*unstructured.Unstructured
	for _, o := range r.objs {
		all = append(all, o)
	}
	gen, err := render.Generate(r.opts.Config, all)
	require.NoError(r.t, err)
	cs, err := r.repo.Diff(r.t.Context(), DefaultBranch, render.GeneratedPrefix(r.opts.Config), gen)
	require.NoError(r.t, err)
	changes = append(changes, cs.Changes...)
	h, err := r.repo.Commit(r.t.Context(), changes, gitstore.CommitOptions{Branch: DefaultBranch, Message: msg})
	require.NoError(r.t, err)
	return h
}

// requireTarget requires the target to hold every rendered object of
// commit (Secrets opened), field for field, and the inventory to list
// exactly them.
func (r *applierRepo) requireTarget(commit plumbing.Hash) {
	r.t.Helper()
	ctx := r.t.Context()
	opts := r.opts
	opts.Ref = commit.String()
	_, want, err := desired(ctx, opts)
	require.NoError(r.t, err)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(clusters.Target.Clientset().Discovery()))
	names := map[string]bool{}
	for _, d := range want {
		gvk := d.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		require.NoError(r.t, err, gvk)
		live, err := clusters.Target.Dynamic().Resource(m.Resource).Namespace(d.GetNamespace()).Get(ctx, d.GetName(), metav1.GetOptions{})
		require.NoError(r.t, err, "%s %s/%s not in the target", gvk.Kind, d.GetNamespace(), d.GetName())
		if diff := cmp.Diff(d.Object, project(live.Object, d.Object)); diff != "" {
			r.t.Errorf("%s %s/%s differs from the rendered object (-rendered +target):\n%s", gvk.Kind, d.GetNamespace(), d.GetName(), diff)
		}
		ns := d.GetNamespace()
		if gvk.Kind == "Namespace" {
			ns = ""
		}
		names[reconciler.ObjectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: ns, Name: d.GetName()}.String()] = true
	}
	mgr, err := newManager(r.opts)
	require.NoError(r.t, err)
	inv, err := mgr.Inventory(ctx)
	require.NoError(r.t, err)
	require.Equal(r.t, commit.String(), inv.Commit)
	got := map[string]bool{}
	for _, e := range inv.Entries {
		got[e.Object.String()] = true
	}
	require.Equal(r.t, names, got, "the inventory lists the rendered objects")
}

func configMap(ns, name, value string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": ns}, "data": map[string]any{"value": value}}}
}

// The controller's applier applies the first commit of a term whole, then
// only what each commit changed — updates, additions, deletions (pruned),
// Secrets opened — leaving the target and its inventory as a whole apply
// would; and it applies the whole set again when the target's inventory
// is not at the commit it applied last, when asked to (the resync), and
// after a failure.
func TestApplierIncremental(t *testing.T) {
	ctx := t.Context()
	id, sealer := testKeys(t)
	cfg := decodeConfig(t, fmt.Sprintf(`
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: applier}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces:
  - {source: appl, target: appl-dr}
  secrets:
    mode: encrypt
    recipients: [%s]
  apply: {maxPrunePercent: 100}
`, id.Recipient()))
	repo, _ := skeletonRepo(t, cfg)
	opts := ApplyOptions{Repo: repo, Config: cfg, Target: clusters.Target.Config, Identity: id}
	r := &applierRepo{t: t, repo: repo, opts: opts, sealer: sealer, objs: map[string]*unstructured.Unstructured{}}
	t.Cleanup(func() {
		_ = clusters.Target.Clientset().CoreV1().Namespaces().Delete(ctx, "appl-dr", metav1.DeleteOptions{})
	})

	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "appl"}}}
	secret := func(pw string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
			"metadata": map[string]any{"name": "db", "namespace": "appl"}, "stringData": nil, "data": map[string]any{"password": pw}}}
	}
	first := []*unstructured.Unstructured{ns, secret("czNjcjN0")}
	for i := range 5 {
		first = append(first, configMap("appl", fmt.Sprintf("c%d", i), "one"))
	}
	c1 := r.commit("first", first)
	a, err := newApplier(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	apply := func(c plumbing.Hash, full bool) (ApplyResult, bool) {
		t.Helper()
		res, incremental, err := a.apply(ctx, opts, c, full)
		require.NoError(t, err)
		return res, incremental
	}
	res, incremental := apply(c1, false)
	require.False(t, incremental, "the first apply of a term is whole")
	require.Equal(t, 7, res.Counts()[reconciler.Created])
	r.requireTarget(c1)
	// The applier keeps the rendered objects as the cache gives them:
	// compact; only the opened Secret is held in full.
	for _, o := range a.lastObjs {
		_, compact := render.CompactJSON(o)
		require.True(t, compact, "%s/%s", o.GetKind(), o.GetName())
	}
	require.Len(t, a.opened, 1)
	for _, u := range a.opened {
		_, compact := render.CompactJSON(u)
		require.False(t, compact)
		require.Equal(t, "Secret", u.GetKind())
	}

	// One changed, one added, one removed, the Secret changed.
	c2 := r.commit("changes", []*unstructured.Unstructured{configMap("appl", "c1", "two"), configMap("appl", "c9", "new"), secret("bmV3LXB3")},
		"snapshots/prod/appl/ConfigMap/c2.yaml")
	res, incremental = apply(c2, false)
	require.True(t, incremental)
	require.Equal(t, map[reconciler.Action]int{reconciler.Configured: 2, reconciler.Created: 1, reconciler.Deleted: 1}, res.Counts())
	r.requireTarget(c2)
	s, err := clusters.Target.Clientset().CoreV1().Secrets("appl-dr").Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "new-pw", string(s.Data["password"]))
	_, err = clusters.Target.Clientset().CoreV1().ConfigMaps("appl-dr").Get(ctx, "c2", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "c2 pruned: %v", err)

	// Nothing changed in the set (an edit of a comment elsewhere).
	_, err = repo.Commit(ctx, []gitstore.Change{{Path: "README.md", Content: []byte("hello\n")}}, gitstore.CommitOptions{Branch: DefaultBranch, Message: "readme"})
	require.NoError(t, err)
	c3, err := repo.Head(ctx, DefaultBranch)
	require.NoError(t, err)
	res, incremental = apply(c3, false)
	require.True(t, incremental)
	require.Empty(t, res.Changes)
	r.requireTarget(c3)

	// Someone else applied another commit: the whole set.
	c4 := r.commit("elsewhere", []*unstructured.Unstructured{configMap("appl", "c3", "four")})
	o := opts
	o.Ref = c4.String()
	_, err = Apply(ctx, o)
	require.NoError(t, err)
	c5 := r.commit("after", []*unstructured.Unstructured{configMap("appl", "c4", "five")})
	res, incremental = apply(c5, false)
	require.False(t, incremental, "the inventory holds %s, not the applier's last commit", c4)
	require.Equal(t, 1, res.Counts()[reconciler.Configured])
	r.requireTarget(c5)

	// The resync: whole, whatever changed.
	res, incremental = apply(c5, true)
	require.False(t, incremental)
	require.Equal(t, 7, res.Counts()[reconciler.Unchanged])

	// A commit the target refuses fails whole; the next apply is whole.
	bad := configMap("appl", "c0", "bad")
	bad.Object["bogus"] = true
	c6 := r.commit("bad", []*unstructured.Unstructured{bad})
	_, incremental, err = a.apply(ctx, opts, c6, false)
	var invalid *reconciler.InvalidError
	require.ErrorAs(t, err, &invalid)
	c7 := r.commit("fixed", []*unstructured.Unstructured{configMap("appl", "c0", "seven")})
	res, incremental = apply(c7, false)
	require.False(t, incremental, "after a failure, the whole set")
	r.requireTarget(c7)
	c8 := r.commit("again", []*unstructured.Unstructured{configMap("appl", "c0", "eight")})
	res, incremental = apply(c8, false)
	require.True(t, incremental)
	require.Equal(t, map[reconciler.Action]int{reconciler.Configured: 1}, res.Counts())
	r.requireTarget(c8)
}

// changedObjects finds what differs between two rendered sets, by identity
// and content.
func TestChangedObjects(t *testing.T) {
	a, b, c := configMap("n", "a", "1"), configMap("n", "b", "1"), configMap("n", "c", "1")
	b2 := configMap("n", "b", "1") // another pointer, same content
	c2 := configMap("n", "c", "2")
	d := configMap("n", "d", "1")
	prev, next := []*unstructured.Unstructured{a, b, c}, []*unstructured.Unstructured{a, b2, c2, d}
	got, set := changedObjects(prev, nil, next)
	require.Equal(t, []int{2, 3}, got) // c2 and d
	require.Equal(t, map[*unstructured.Unstructured]bool{a: true, b2: true, c2: true, d: true}, set)
	// With prev's set given, as the applier keeps it: the same answer.
	again, _ := changedObjects(prev, map[*unstructured.Unstructured]bool{a: true, b: true, c: true}, next)
	require.Equal(t, got, again)
	// The set next gave, for the commit after: e new, c2 left.
	e := configMap("n", "e", "1")
	third, _ := changedObjects(next, set, []*unstructured.Unstructured{a, b2, d, e})
	require.Equal(t, []int{3}, third)
}
