package render

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/go-git/go-git/v5/plumbing"
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
	objs, _, err := build(ctx, repo, rev, cfg, nil, 0)
	return objs, err
}

// build is Build, through the cache c when it is not nil; delta says that
// it went as a delta build (delta.go).
func build(ctx context.Context, repo *gitstore.Repository, rev string, cfg *policies.SyncConfig, c *Cache, gen uint64) (objs []*unstructured.Unstructured, delta bool, err error) {
	if err := checkNames(cfg); err != nil {
		return nil, false, err
	}
	var spare map[string]plumbing.Hash
	if c != nil {
		spare = c.takeSpareFiles()
	}
	t, err := loadTree(ctx, repo, rev, spare)
	if err != nil {
		return nil, false, err
	}
	t.cache, t.gen = c, gen
	var last *lastBuild
	if c != nil {
		last = c.takeLast()
	}
	if last != nil {
		// This build is the last one's successor: its files are spare.
		defer c.spareFiles(last.b.t.files)
	}
	var snap *snapshot
	if last != nil && last.b.snap.sameFiles(t, cfg.Spec.Source.Name) {
		snap = last.b.snap // read only: shared
	} else if snap, err = newSnapshot(t, cfg.Spec.Source.Name); err != nil {
		return nil, false, err
	}
	t.uncached = snap.root + "/"
	pl, err := walk(t, snap, overlaysDir+cfg.Spec.Target.Name)
	if err != nil {
		return nil, false, err
	}
	b := &builder{t: t, snap: snap, plan: pl, cache: c, gen: gen}
	if last != nil {
		b.inherit(last.b)
	}
	// An inherited partition comes with its objects: the same snapshot and
	// directories reached.
	if !b.partitionedOnce {
		b.objects = b.snap.reached(b.plan.snapshotRefs)
	}
	if last != nil {
		if objs, ok, err := b.delta(ctx, last); err != nil || ok {
			return objs, ok, err
		}
	}
	if objs, err = b.build(ctx); err != nil {
		return nil, false, err
	}
	// The slice may be a cached run's own: sort a copy. A partitioned
	// build's is its own, sorted (sortedMerge).
	if !b.partitioned {
		objs = slices.Clone(objs)
		sortObjects(objs)
	}
	if c != nil {
		c.remember(b, objs)
	}
	return objs, false, nil
}

// builder runs kustomize over the files of one commit.
type builder struct {
	t    *repoTree
	snap *snapshot
	plan *plan
	// objects are the snapshot object files the overlay reaches.
	objects []string
	pins    map[pin]bool
	// pinnedFiles are the files of the objects every chunk holds.
	pinnedFiles []string
	// cache, when set, remembers kustomize runs across builds; gen is
	// this build's number in it.
	cache *Cache
	gen   uint64
	// patchesOf are the routed patches that may apply to each object file
	// (route).
	patchesOf map[string][]*routedPatch
	// chunks are the partition (partition, once); deltaID is planKey
	// and keptID keptKey, once the route is known (planned); partitioned
	// says that the build went in chunks.
	chunks          [][]string
	partitionedOnce bool
	deltaID, keptID runKey
	planned         bool
	partitioned     bool
	// keyBuf and keyFiles are chunkKey's buffers, kept from one chunk to
	// the next.
	keyBuf   []byte
	keyFiles []string
}

// cut is k.cut(drop), through the cache: the same kustomization (blob)
// cut the same way gives the same bytes.
func (b *builder) cut(k *kustFile, drop map[string]map[int]bool) ([]byte, error) {
	if b.cache == nil {
		return k.cut(drop)
	}
	h := sha256.New()
	blob := b.t.files[k.file]
	h.Write(blob[:])
	for _, field := range slices.Sorted(maps.Keys(drop)) {
		h.Write([]byte(field))
		for _, i := range slices.Sorted(maps.Keys(drop[field])) {
			h.Write(strconv.AppendInt([]byte{','}, int64(i), 10))
		}
		h.Write([]byte{0})
	}
	var key runKey
	h.Sum(key[:0])
	if raw, ok := b.cache.getCut(key, b.gen); ok {
		return raw, nil
	}
	raw, err := k.cut(drop)
	if err == nil {
		b.cache.putCut(key, raw, b.gen)
	}
	return raw, err
}

// readAll reads every file a build needs, in path order (the benchmarks
// separate reading from kustomize with it; Build reads only what the runs
// that the cache does not hold need).
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
			b.partitioned = err == nil
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
	spec, err := b.spec(nil)
	if err != nil {
		return nil, err
	}
	results, err := b.runs(ctx, []*fsSpec{spec})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: kustomize build: %w", b.plan.rootFile, err)
	}
	return results[0], nil
}

// spec lists the in-memory filesystem of one kustomize run, for the
// snapshot objects in (nil: all of them, the build in one piece): the files
// the walk found, the kustomizations with the chunk's cuts, the chunk's
// object files and the derived kustomizations listing them. The
// repository sits at the root "/"; nothing else is there. Files of the
// commit are listed by blob hash, and read only if the run is not cached.
func (b *builder) spec(in map[string]bool) (*fsSpec, error) {
	s := &fsSpec{root: b.plan.root}
	blob := func(p string) { s.entries = append(s.entries, fsEntry{path: p, blob: b.t.files[p]}) }
	keep := func(f string) bool { return in == nil || in[f] }
	var cuts map[string]map[string]map[int]bool
	var routed map[*routedPatch]bool
	if in != nil {
		routed = b.routedTo(in)
		cuts = b.cuts(in, routed)
	}
	for _, m := range []map[string]bool{b.plan.files, b.plan.snapshotFiles} {
		for f := range m {
			blob(f)
		}
	}
	for _, k := range b.plan.kusts {
		// In a chunk, a routed unit is always re-encoded, cut or not: a
		// chunk's copy then stays the same when the unit gains a patch
		// for another chunk's object (its first).
		if drop := cuts[k.file]; len(drop) == 0 && (in == nil || k.unit == nil) {
			blob(k.file)
		} else {
			raw, err := b.cut(k, drop)
			if err != nil {
				return nil, err
			}
			s.entries = append(s.entries, fsEntry{path: k.file, data: raw, derived: true})
		}
		if k.unit == nil {
			continue
		}
		for _, p := range k.unit.patches {
			if p.file != "" && b.plan.routedFiles[p.file] && (in == nil || p.objects == nil || routed[p]) {
				blob(p.file)
			}
		}
	}
	// Every derived kustomization when the snapshot's root is reached (it
	// lists every directory) or in one piece; in a chunk, only those of
	// the directories holding its objects: the cuts drop the others.
	var only map[string]bool
	if in != nil && !b.plan.snapshotRefs[b.snap.root] {
		only = map[string]bool{}
		for f := range in {
			if b.snap.isObject(f) {
				only[path.Dir(path.Dir(f))] = true
			}
		}
	}
	for p, data := range b.snap.derived(keep, only) {
		s.entries = append(s.entries, fsEntry{path: p, data: data, derived: true})
	}
	for _, f := range b.objects {
		if keep(f) {
			blob(f)
		}
	}
	s.sort()
	if b.cache != nil {
		s.id = s.key()
	}
	return s, nil
}

// filesystem makes the in-memory filesystem of a spec, from the files read
// (readSpecs).
func (b *builder) filesystem(s *fsSpec) (filesys.FileSystem, error) {
	fs := filesys.MakeFsInMemory()
	for _, e := range s.entries {
		data := e.data
		if !e.derived {
			var ok bool
			if data, ok = b.t.content[e.path]; !ok {
				return nil, fmt.Errorf("%s: not read", e.path)
			}
		}
		if err := fs.WriteFile("/"+e.path, data); err != nil {
			return nil, fmt.Errorf("%s: %w", e.path, err)
		}
	}
	return fs, nil
}

// load reads the files of the commit that spec s needs and makes its
// filesystem; the snapshot objects read for it alone (not the pinned ones,
// which every chunk holds) are then dropped from the tree's contents.
func (b *builder) load(s *fsSpec) (filesys.FileSystem, error) {
	if err := b.readSpecs([]*fsSpec{s}); err != nil {
		return nil, err
	}
	fs, err := b.filesystem(s)
	if err != nil {
		return nil, err
	}
	pinned := make(map[string]bool, len(b.pinnedFiles))
	for _, f := range b.pinnedFiles {
		pinned[f] = true
	}
	for _, e := range s.entries {
		if !e.derived && b.snap.isObject(e.path) && !pinned[e.path] {
			delete(b.t.content, e.path)
		}
	}
	return fs, nil
}

// readSpecs reads, in path order, the files of the commit that specs need.
func (b *builder) readSpecs(specs []*fsSpec) error {
	need := map[string]bool{}
	for _, s := range specs {
		for _, e := range s.entries {
			if !e.derived {
				need[e.path] = true
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(need)) {
		if err := b.t.ctx.Err(); err != nil {
			return err
		}
		if _, err := b.t.read(p); err != nil {
			return err
		}
	}
	return nil
}

// runs runs kustomize over each spec, GOMAXPROCS at a time, or takes its
// objects from the cache: the objects of a run are a function of the
// files it reads, which its key names. The first failure stops the runs
// not yet started, and is returned.
func (b *builder) runs(ctx context.Context, specs []*fsSpec) ([][]*unstructured.Unstructured, error) {
	results := make([][]*unstructured.Unstructured, len(specs))
	keys := make([]runKey, len(specs))
	var todo []int
	for i, s := range specs {
		if b.cache != nil {
			keys[i] = s.id
			if objs, ok := b.cache.get(keys[i], b.gen); ok {
				results[i] = objs
				continue
			}
		}
		todo = append(todo, i)
	}
	if b.cache != nil {
		b.cache.count(len(specs)-len(todo), len(todo))
	}
	if len(todo) == 0 {
		return results, nil
	}
	// Each run's files are read just before it, and the snapshot objects
	// among them let go once in its filesystem: a first build of a large
	// snapshot holds the objects of the runs going, not of all.
	errs := make([]error, len(specs))
	var failed atomic.Bool
	type job struct {
		i  int
		fs filesys.FileSystem
	}
	work := make(chan job)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(todo)) {
		wg.Go(func() {
			for j := range work {
				var err error
				if results[j.i], err = runKustomize(j.fs, b.plan.root); err != nil {
					errs[j.i] = err
					failed.Store(true)
				} else if b.cache != nil {
					// Kept by the cache: compact (compact.go).
					compactAll(results[j.i])
				}
			}
		})
	}
	var readErr error
	for _, i := range todo {
		if ctx.Err() != nil || failed.Load() {
			break
		}
		fs, err := b.load(specs[i])
		if err != nil {
			readErr = err
			break
		}
		work <- job{i, fs}
	}
	close(work)
	wg.Wait()
	if readErr != nil && ctx.Err() == nil {
		return nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if b.cache != nil {
		for _, i := range todo {
			b.cache.put(keys[i], results[i], b.gen)
		}
	}
	return results, nil
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
		if u, ok := toUnstructured(&r.RNode); ok {
			objs = append(objs, u)
			continue
		}
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

// sortKey is what the objects of a build are sorted by: the object's
// identity (objectKey, as merge tells objects apart), then its version.
type sortKey struct {
	objectKey
	version string
}

func sortKeyOf(o *unstructured.Unstructured) sortKey {
	gvk := o.GroupVersionKind()
	return sortKey{objectKey{gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName()}, gvk.Version}
}

func compareSortKeys(a, b sortKey) int {
	return cmp.Or(
		strings.Compare(a.group, b.group),
		strings.Compare(a.kind, b.kind),
		strings.Compare(a.namespace, b.namespace),
		strings.Compare(a.name, b.name),
		strings.Compare(a.version, b.version),
	)
}

func sortObjects(objs []*unstructured.Unstructured) {
	// Each object's key read once, not at every comparison.
	type keyed struct {
		key sortKey
		obj *unstructured.Unstructured
	}
	ks := make([]keyed, len(objs))
	for i, o := range objs {
		ks[i] = keyed{sortKeyOf(o), o}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return compareSortKeys(a.key, b.key) })
	for i := range ks {
		objs[i] = ks[i].obj
	}
}

// joinErrors joins errors one per line, sorted, so that a report of many
// problems reads the same every time.
func joinErrors(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}
