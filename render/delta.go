package render

import (
	"context"
	"maps"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Delta builds.
//
// A partitioned build is the union of its chunks' runs, and any set of
// snapshot objects outside chunk 0, with the pinned objects, is a chunk as
// good as those chunkEnd cuts (partition.go): its run gives, for each of
// its objects, what the build in one piece gives, besides the objects every
// chunk gives (the pinned ones, and those the overlay adds itself). When a
// commit changes objects spread over many chunks — a burst of continuous
// mode changes a few dozen objects over every namespace — re-running each
// chunk that holds one costs a kustomize run per changed object; a delta
// build runs two instead, each of the changed objects only:
//
//   - the changed objects as the commit before had them (D_old: modified
//     and removed), with the pinned objects, over the files of the commit
//     before: what they gave there;
//   - the changed objects as the commit has them (D_new: modified and
//     added), with the pinned objects, over the commit's files;
//
// and the objects of the build before, less those the first run gave, plus
// those the second gave, are the commit's. It applies when the build before
// was partitioned (or a delta build) and the commit changed nothing of the
// plan but snapshot objects outside chunk 0 and files of routed patches:
// planKey (which names those files by path only) is the same, and every
// object a changed patch file's route reaches counts as changed. It
// checks what it relies on: every object of the first run is in the build
// before, identical; an object of the second run that the first did not
// give is in no other object's place. Anything else, and every failure, is
// left to the partitioned build, which has kustomize's last word.
//
// A delta build keeps the runs of the last partitioned build in the cache
// (usage.base): the next partitioned build re-runs only the chunks that
// changed since.

// deltaMaxObjects bounds the objects a delta build runs: beyond, the
// chunks' runs, each of few objects, cost less than one run of many
// (kustomize's square).
const deltaMaxObjects = 128

// deltaMinChunks is the fewest chunks a commit must reach for a delta
// build: two runs, against one per chunk.
const deltaMinChunks = 3

// lastBuild is the newest partitioned or delta build of a cache: its
// builder (tree, snapshot, plan, partition, route; not the files' content)
// and its objects, sorted.
type lastBuild struct {
	b    *builder
	objs []*unstructured.Unstructured
}

// takeLast takes the last build out of the cache (a build uses its
// builder; another build at the same time does without).
func (c *Cache) takeLast() *lastBuild {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.last
	c.last = nil
	return l
}

// remember keeps the build b, whose objects objs are (sorted), for the
// next build to start from — or nothing, when b was not partitioned.
func (c *Cache) remember(b *builder, objs []*unstructured.Unstructured) {
	if !b.partitioned || !b.planned {
		c.mu.Lock()
		c.last = nil
		if !b.partitioned {
			c.merged = nil // its runs are not kept
		}
		c.mu.Unlock()
		return
	}
	c.keep(b, objs, false)
}

// keep makes b, a partitioned or delta build (delta), the cache's last
// build. The next build reads again what it needs: the files' content was
// for the runs of this one.
func (c *Cache) keep(b *builder, objs []*unstructured.Unstructured, delta bool) {
	b.t.content = map[string][]byte{}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = &lastBuild{b: b, objs: objs}
	if delta {
		c.deltas++
	}
}

// chunkZero returns the files of the first chunk (the pinned objects and
// those related to them), as a set.
func (b *builder) chunkZero() map[string]bool {
	set := make(map[string]bool, len(b.chunks[0]))
	for _, f := range b.chunks[0] {
		set[f] = true
	}
	return set
}

// delta builds the commit of b from last (nil: none) as the package
// comment above says. ok is false when it does not apply, or failed: the
// caller builds in chunks then. An error is the context's only.
func (b *builder) delta(ctx context.Context, last *lastBuild) (objs []*unstructured.Unstructured, ok bool, err error) {
	if last == nil {
		return nil, false, nil
	}
	chunks := b.partition()
	if chunks == nil {
		return nil, false, nil
	}
	b.route()
	b.planKeys()
	if b.deltaID != last.b.deltaID {
		return nil, false, nil
	}
	old := last.b
	chunk0, lastChunk0 := b.chunkZero(), old.chunkZero()
	changed := map[string]bool{} // object files, of either commit
	for _, f := range b.objects {
		if h, ok := old.t.files[f]; !ok || h != b.t.files[f] {
			changed[f] = true
		}
	}
	for _, f := range old.objects {
		if !b.snap.isObject(f) {
			changed[f] = true
		}
	}
	// A patch file changed: every object its route reaches, in either
	// commit (planKey says the same patches route to the same files, bar
	// the objects changed).
	for _, set := range []map[string][]*routedPatch{old.patchesOf, b.patchesOf} {
		for f, patches := range set {
			for _, p := range patches {
				if p.file != "" && old.t.files[p.file] != b.t.files[p.file] {
					changed[f] = true
				}
			}
		}
		if len(changed) > deltaMaxObjects {
			return nil, false, nil
		}
	}
	// Nothing changed: the chunks' runs are all in the cache.
	if len(changed) == 0 || len(changed) > deltaMaxObjects {
		return nil, false, nil
	}
	reached := map[int]bool{}
	for i, files := range chunks {
		for _, f := range files {
			if changed[f] {
				reached[i] = true
				break
			}
		}
	}
	var oldIn, newIn []string
	removed := 0
	for f := range changed {
		if chunk0[f] || lastChunk0[f] {
			return nil, false, nil
		}
		if old.snap.isObject(f) {
			oldIn = append(oldIn, f)
		}
		if b.snap.isObject(f) {
			newIn = append(newIn, f)
		} else {
			removed++ // its chunk of the commit before: at most one each
		}
	}
	if len(reached)+removed < deltaMinChunks {
		return nil, false, nil
	}
	var before, after []*unstructured.Unstructured
	var errBefore, errAfter error
	var wg sync.WaitGroup
	old.t.ctx = ctx
	wg.Go(func() { before, errBefore = old.runOnly(ctx, append(slices.Clone(old.pinnedFiles), oldIn...)) })
	after, errAfter = b.runOnly(ctx, append(slices.Clone(b.pinnedFiles), newIn...))
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if errBefore != nil || errAfter != nil {
		return nil, false, nil
	}
	objs, ok = splice(last.objs, before, after)
	if !ok {
		return nil, false, nil
	}
	b.cache.keep(b, objs, true)
	return objs, true, nil
}

// inherit takes from old, the builder of the build before, what this
// build would compute again the same: when both have the same snapshot
// (the same files: sameFiles), the partition, if the plan reaches the same
// directories and pins the same objects; and the route, if every routed
// unit is the same kustomization (blob) as before. Both are functions of
// exactly those, and of the files' paths; a commit that only modifies
// objects — a burst of continuous mode — keeps them.
func (b *builder) inherit(old *builder) {
	if old.snap != b.snap || b.plan.whole != "" || old.plan.whole != "" {
		return
	}
	if old.partitionedOnce && maps.Equal(old.plan.snapshotRefs, b.plan.snapshotRefs) && slices.Equal(old.plan.pins, b.plan.pins) {
		b.objects, b.chunks, b.pins, b.pinnedFiles, b.partitionedOnce = old.objects, old.chunks, old.pins, old.pinnedFiles, true
	}
	if old.patchesOf == nil || len(old.plan.kusts) != len(b.plan.kusts) {
		return
	}
	same := map[*routedPatch]*routedPatch{} // old → new
	for dir, k := range b.plan.kusts {
		o := old.plan.kusts[dir]
		if o == nil || o.file != k.file || (o.unit == nil) != (k.unit == nil) {
			return
		}
		if k.unit == nil {
			continue
		}
		if old.t.files[o.file] != b.t.files[k.file] || len(o.unit.patches) != len(k.unit.patches) || !slices.Equal(o.unit.dirs, k.unit.dirs) {
			return
		}
		for i, p := range k.unit.patches {
			same[o.unit.patches[i]] = p
		}
	}
	for op, p := range same {
		p.objects = op.objects // read only: shared
	}
	b.patchesOf = make(map[string][]*routedPatch, len(old.patchesOf))
	for f, ps := range old.patchesOf {
		np := make([]*routedPatch, len(ps))
		for i, p := range ps {
			np[i] = same[p]
		}
		b.patchesOf[f] = np
	}
}

// runOnly runs kustomize over the chunk of files, without the cache: a
// delta's chunk is its commit's only.
func (b *builder) runOnly(ctx context.Context, files []string) ([]*unstructured.Unstructured, error) {
	in := make(map[string]bool, len(files))
	for _, f := range files {
		in[f] = true
	}
	s, err := b.spec(in)
	if err != nil {
		return nil, err
	}
	fs, err := b.load(s)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.cache.count(0, 1)
	objs, err := runKustomize(fs, b.plan.root)
	if err != nil {
		return nil, err
	}
	// Compared with the build before's objects, or kept: compact, as the
	// cache's (compact.go).
	return compactAll(objs), nil
}

// splice returns prev (sorted) without the objects of before and with
// those of after, sorted; ok is false when an object of before is not in
// prev as it is, or an object of after would take the place of another
// object of prev (two files giving the same object: the partitioned build
// says what kustomize says of it).
func splice(prev, before, after []*unstructured.Unstructured) ([]*unstructured.Unstructured, bool) {
	find := func(k sortKey) (int, bool) {
		return slices.BinarySearchFunc(prev, k, func(o *unstructured.Unstructured, k sortKey) int {
			return compareSortKeys(sortKeyOf(o), k)
		})
	}
	drop := map[int]bool{}
	for _, o := range before {
		i, found := find(sortKeyOf(o))
		// Both compact: their JSON compared (compact.go).
		if !found || drop[i] || !equality.Semantic.DeepEqual(prev[i].Object, o.Object) {
			return nil, false
		}
		drop[i] = true
	}
	after = slices.Clone(after)
	sortObjects(after)
	// The same object in another version counts as the same object
	// (objectKey): kustomize tells them apart, the partitioned build
	// (merge) does not.
	at := make([]int, len(after))
	for j, o := range after {
		k := sortKeyOf(o)
		i, _ := find(k)
		for n := i - 1; n >= 0 && keyOf(prev[n]) == k.objectKey; n-- {
			if !drop[n] {
				return nil, false
			}
		}
		for n := i; n < len(prev) && keyOf(prev[n]) == k.objectKey; n++ {
			if !drop[n] {
				return nil, false
			}
		}
		if j > 0 && keyOf(after[j-1]) == k.objectKey {
			return nil, false
		}
		at[j] = i
	}
	out := make([]*unstructured.Unstructured, 0, len(prev)-len(drop)+len(after))
	j := 0
	for i, o := range prev {
		for ; j < len(after) && at[j] == i; j++ {
			out = append(out, after[j])
		}
		if !drop[i] {
			out = append(out, o)
		}
	}
	out = append(out, after[j:]...)
	return out, true
}
