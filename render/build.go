package render

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/go-logr/logr"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

// Build renders the desired state of the target at the commit that rev
// names: kustomize build of overlays/<target>, from the files of that
// commit (never the work tree), in the sandbox the package documentation
// describes. The objects are sorted by group, kind, namespace and name.
//
// Errors name the file they are about, e.g.
// "overlays/dr/kustomization.yaml: resources[1]: https://…: remote resources
// are refused: render builds from the commit only".
func Build(ctx context.Context, repo *gitstore.Repository, rev string, cfg *policies.SyncConfig) ([]*unstructured.Unstructured, error) {
	if err := checkNames(cfg); err != nil {
		return nil, err
	}
	t, err := loadTree(ctx, repo, rev)
	if err != nil {
		return nil, err
	}
	snap, err := newSnapshot(t, cfg.Spec.Source.Name)
	if err != nil {
		return nil, err
	}
	pl, err := walk(t, snap, overlaysDir+cfg.Spec.Target.Name)
	if err != nil {
		return nil, err
	}
	b := &builder{t: t, snap: snap, plan: pl}
	if err := b.readAll(); err != nil {
		return nil, err
	}
	objs, err := b.build(ctx)
	if err != nil {
		return nil, err
	}
	sortObjects(objs)
	return objs, nil
}

// builder runs kustomize over the files of one commit.
type builder struct {
	t    *repoTree
	snap *snapshot
	plan *plan
	// objects are the snapshot object files the overlay reaches.
	objects []string
	pins    map[pin]bool
}

// readAll reads every file a build needs, in path order.
func (b *builder) readAll() error {
	b.objects = b.snap.reached(b.plan.snapshotRefs)
	var all []string
	all = append(all, b.objects...)
	for _, m := range []map[string]bool{b.plan.files, b.plan.routedFiles, b.plan.snapshotFiles} {
		for f := range m {
			all = append(all, f)
		}
	}
	slices.Sort(all)
	for _, f := range all {
		if err := b.t.ctx.Err(); err != nil {
			return err
		}
		if _, err := b.t.read(f); err != nil {
			return err
		}
	}
	return nil
}

// buildTrace, when a test sets it, learns how each build ran: in chunks
// (their number), or in one piece (0) and why.
var buildTrace func(chunks int, why string)

func (b *builder) build(ctx context.Context) ([]*unstructured.Unstructured, error) {
	log := logr.FromContextOrDiscard(ctx)
	why := b.plan.whole
	if chunks := b.partition(); chunks != nil {
		objs, err := b.buildChunks(ctx, chunks)
		if err == nil || ctx.Err() != nil {
			if buildTrace != nil && err == nil {
				buildTrace(len(chunks), "")
			}
			return objs, err
		}
		// Not an error of the overlay necessarily (a chunk can miss what a
		// patch needs): one build in one piece says what kustomize says.
		why = "partitioned build: " + err.Error()
	}
	if why != "" {
		log.V(1).Info("render: building the overlay in one piece", "overlay", b.plan.rootFile, "objects", len(b.objects), "reason", why)
	}
	if buildTrace != nil {
		buildTrace(0, why)
	}
	fs, err := b.filesystem(nil)
	if err != nil {
		return nil, err
	}
	objs, err := runKustomize(fs, b.plan.root)
	if err != nil {
		return nil, fmt.Errorf("%s: kustomize build: %w", b.plan.rootFile, err)
	}
	return objs, nil
}

// filesystem builds the in-memory filesystem of one kustomize run, for the
// snapshot objects in (nil: all of them, the build in one piece): the files
// the walk found, the kustomizations with the chunk's cuts, the chunk's
// object files and the derived kustomizations listing them. The
// repository sits at the root "/"; nothing else is there.
func (b *builder) filesystem(in map[string]bool) (filesys.FileSystem, error) {
	fs := filesys.MakeFsInMemory()
	write := func(p string, data []byte) error {
		if err := fs.WriteFile("/"+p, data); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		return nil
	}
	keep := func(f string) bool { return in == nil || in[f] }
	var cuts map[string]map[string]map[int]bool
	if in != nil {
		cuts = b.cuts(in)
	}
	for _, m := range []map[string]bool{b.plan.files, b.plan.snapshotFiles} {
		for f := range m {
			if err := write(f, b.t.content[f]); err != nil {
				return nil, err
			}
		}
	}
	for _, k := range b.plan.kusts {
		raw, err := k.cut(cuts[k.file])
		if err != nil {
			return nil, err
		}
		if err := write(k.file, raw); err != nil {
			return nil, err
		}
		if k.unit == nil {
			continue
		}
		for _, p := range k.unit.patches {
			if p.file != "" && b.plan.routedFiles[p.file] && (in == nil || p.keptBy(in)) {
				if err := write(p.file, b.t.content[p.file]); err != nil {
					return nil, err
				}
			}
		}
	}
	for p, data := range b.snap.derived(keep) {
		if err := write(p, data); err != nil {
			return nil, err
		}
	}
	for _, f := range b.objects {
		if keep(f) {
			if err := write(f, b.t.content[f]); err != nil {
				return nil, err
			}
		}
	}
	return fs, nil
}

// kustomizeHook, when a test sets it, runs inside every kustomize run, where
// a panic is turned into an error.
var kustomizeHook func()

// runKustomize builds the kustomization in directory root of fs: plugins
// off (builtins only, no exec, no KRM functions, no helm), files only from
// under each kustomization's own directory, and a panic of kustomize turned
// into an error.
func runKustomize(fs filesys.FileSystem, root string) (objs []*unstructured.Unstructured, err error) {
	defer func() {
		if r := recover(); r != nil {
			objs, err = nil, fmt.Errorf("kustomize panicked: %v", r)
		}
	}()
	if kustomizeHook != nil {
		kustomizeHook()
	}
	opts := &krusty.Options{
		Reorder:          krusty.ReorderOptionNone,
		LoadRestrictions: types.LoadRestrictionsRootOnly,
		PluginConfig:     types.DisabledPluginConfig(),
	}
	m, err := krusty.MakeKustomizer(opts).Run(fs, "/"+root)
	if err != nil {
		return nil, err
	}
	for _, r := range m.Resources() {
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("%s: %w", r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

func sortObjects(objs []*unstructured.Unstructured) {
	slices.SortFunc(objs, compareObjects)
}

func compareObjects(a, b *unstructured.Unstructured) int {
	ga, gb := a.GroupVersionKind(), b.GroupVersionKind()
	return cmp.Or(
		strings.Compare(ga.Group, gb.Group),
		strings.Compare(ga.Kind, gb.Kind),
		strings.Compare(a.GetNamespace(), b.GetNamespace()),
		strings.Compare(a.GetName(), b.GetName()),
		strings.Compare(ga.Version, gb.Version),
	)
}

// joinErrors joins errors one per line, sorted, so that a report of many
// problems reads the same every time.
func joinErrors(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}
