package render

import (
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Merging from the build before.
//
// merge takes every object of every chunk into a map, and sorting its
// union keys every object again: at 10,000 objects, about 2 MB of garbage
// a build (in a heap profile of the controller), however few chunks a
// commit changed. A cached run's objects come back as the
// same slice, so a build through the cache tells the chunks that ran again
// from the others by their slices: remerge starts from the objects of the
// last partitioned build (mergeBase), drops those of its chunks that are
// gone and splices in those of the chunks that ran, each by binary search.

// mergeBase is the merge of the last partitioned build through a cache:
// its chunks' objects, as the runs gave them (shared with the cache, read
// only), their union sorted (the build's objects), and the objects every
// chunk gave (merge checks the others come from one chunk each), by key.
type mergeBase struct {
	results [][]*unstructured.Unstructured
	objs    []*unstructured.Unstructured
	shared  map[objectKey]*unstructured.Unstructured
}

// remergeTrace, when a test sets it, learns whether each partitioned
// build merged from the build before (remerge) or merged all its chunks.
var remergeTrace func(ok bool)

// sortedMerge is merge(results) sorted, through remerge from the cache's
// merge base when it can; it makes the result the next build's base.
func (b *builder) sortedMerge(results [][]*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	if b.cache == nil {
		objs, err := merge(results)
		if err == nil {
			sortObjects(objs) // merge's slice is its own
		}
		return objs, err
	}
	b.cache.mu.Lock()
	base := b.cache.merged
	b.cache.mu.Unlock()
	objs, ok := remerge(base, results)
	if remergeTrace != nil {
		remergeTrace(ok)
	}
	next := &mergeBase{results: results, objs: objs}
	if ok {
		next.shared = base.shared
	} else {
		var err error
		if objs, err = merge(results); err != nil {
			return nil, err
		}
		sortObjects(objs)
		next.objs = objs
		if next.shared, ok = sharedOf(results); !ok {
			next = nil
		}
	}
	b.cache.mu.Lock()
	b.cache.merged = next
	b.cache.mu.Unlock()
	return objs, nil
}

// sharedOf returns the objects every chunk gives, of results that merge
// accepted: with more than one chunk, those the first two both give. ok is
// false when a chunk gives an object twice (merge counts it twice; a
// kustomize run gives each object once): remerge relies on each object of
// a chunk being there once.
func sharedOf(results [][]*unstructured.Unstructured) (shared map[objectKey]*unstructured.Unstructured, ok bool) {
	seen := map[objectKey]bool{}
	for _, s := range results {
		clear(seen)
		for _, o := range s {
			k := keyOf(o)
			if seen[k] {
				return nil, false
			}
			seen[k] = true
		}
	}
	if len(results) < 2 {
		return nil, true
	}
	first := make(map[objectKey]*unstructured.Unstructured, len(results[0]))
	for _, o := range results[0] {
		first[keyOf(o)] = o
	}
	shared = map[objectKey]*unstructured.Unstructured{}
	for _, o := range results[1] {
		k := keyOf(o)
		if s, ok := first[k]; ok {
			shared[k] = s
		}
	}
	return shared, true
}

// remerge returns what merge(results) gives, sorted, from base (nil:
// none): the chunks whose results are base's (the same slices: cached
// runs) keep their objects in base.objs, those of base's other chunks
// leave, and those of the new chunks come in through splice. ok is false
// when it cannot tell, or merge might refuse the results: then merge says.
//
// It holds with more than one chunk on each side, base's chunks giving
// each object once (sharedOf): the objects of a chunk in common other
// than the shared ones come from it alone, as in base; every new chunk
// must give each shared object, once and identical, and no other object
// that another chunk gives (splice checks it against base.objs without the
// chunks gone, and the new chunks between them).
func remerge(base *mergeBase, results [][]*unstructured.Unstructured) (objs []*unstructured.Unstructured, ok bool) {
	if base == nil || len(base.results) < 2 || len(results) < 2 {
		return nil, false
	}
	type sliceID struct {
		first **unstructured.Unstructured
		n     int
	}
	idOf := func(s []*unstructured.Unstructured) sliceID { return sliceID{&s[0], len(s)} } // s is not empty
	// 1: a chunk of base not (yet) found among results; -1: found.
	old := make(map[sliceID]int, len(base.results))
	for _, s := range base.results {
		if len(s) == 0 {
			return nil, false
		}
		old[idOf(s)]++
	}
	var added [][]*unstructured.Unstructured
	kept := 0
	for _, s := range results {
		if len(s) == 0 {
			return nil, false
		}
		switch k := idOf(s); old[k] {
		case 0:
			added = append(added, s)
		case 1:
			old[k] = -1
			kept++
		default: // twice in base or in results
			return nil, false
		}
	}
	if kept == 0 {
		return nil, false // nothing to start from: merge costs the same
	}
	var before, after []*unstructured.Unstructured
	for _, s := range base.results {
		if old[idOf(s)] != 1 {
			continue
		}
		for _, o := range s {
			if _, ok := base.shared[keyOf(o)]; !ok {
				before = append(before, o)
			}
		}
	}
	for _, s := range added {
		got := make(map[objectKey]bool, len(base.shared))
		for _, o := range s {
			k := keyOf(o)
			so, ok := base.shared[k]
			if !ok {
				after = append(after, o)
				continue
			}
			if got[k] || !equality.Semantic.DeepEqual(so.Object, o.Object) {
				return nil, false
			}
			got[k] = true
		}
		if len(got) != len(base.shared) {
			return nil, false
		}
	}
	return splice(base.objs, before, after)
}
