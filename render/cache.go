package render

import (
	"context"
	"crypto/sha256"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

// Cache makes the builds of a long-running controller cost what changed
// between commits rather than what the repository holds: it remembers the
// objects of each kustomize run of Build (each chunk of a partitioned build,
// or the build in one piece) by a key that names exactly the files that run
// reads — each file of the commit by its path and git blob hash, each file
// render derives in memory (a chunk's cut kustomizations, the derived
// kustomizations of the snapshot) by its path and content hash — and the
// overlay's directory. kustomize runs with fixed options, no plugins and no
// process-wide state (a custom openapi schema is refused), so its output is
// a function of those files: a run whose key is known is not run again.
//
// Nothing is assumed about what an edit can reach. The user's
// kustomization, every file it names and every kustomization above the
// snapshot are in every run's files, so editing them misses every run;
// an overlay built in one piece has one run, whose key changes with any
// file; a chunk misses when one of its objects, or a patch routed to it,
// changes. Chunks end at boundaries that depend on the file paths only
// (chunkEnd), so an object added or removed moves no other chunk.
//
// The spec of a chunk (the files of its run, with its cuts and derived
// kustomizations, and the run's key) is kept too, by chunkKey: the hash of
// planKey — every input of the spec besides the chunk's objects and
// their patches: the overlay's root, the walk's files and kustomizations
// by blob, their children and routed patches (their files by path), which
// patches the route found objects for, the snapshot's directories — of the
// files of the routed patches every chunk keeps by blob, and of the
// chunk's object files by path and blob, each with the files of the
// patches routed to it. Listing and cutting a chunk costs a pass over
// every routed patch of the overlay; with the specs kept, a build lists
// only the chunks whose objects, or their patches, or the plan changed.
//
// A Cache keeps the runs of its last two builds. It is safe for concurrent
// use.
type Cache struct {
	mu   sync.Mutex
	runs map[runKey]*cachedRun
	// cuts are cut kustomizations, by blob and cut; blobs are the
	// kustomizations and patches the walk reads, and what it learnt of
	// each patch, by blob hash: all content-addressed.
	cuts  map[runKey]*cachedBytes
	blobs map[plumbing.Hash]*cachedBlob
	// specs are the specs of chunks, by plan and chunk (chunkKey): a
	// chunk whose files did not change, under the same overlay, is not
	// listed and cut again.
	specs map[runKey]*cachedSpec
	gen   uint64
	// last is the newest partitioned or delta build, which the next
	// build may start from (delta.go); nil while a build uses it.
	last *lastBuild
	// merged is the merge of the last partitioned build, which the next
	// one starts from (remerge.go).
	merged *mergeBase
	// spare is the file list of a build that no build uses any more,
	// for the next build to list its files into (loadTree).
	spare map[string]plumbing.Hash
	// hits and misses count runs, for tests and logs; deltas counts the
	// delta builds.
	hits, misses, deltas int
}

type runKey [sha256.Size]byte

type cachedRun struct {
	objs []*unstructured.Unstructured
	usage
}

type cachedSpec struct {
	spec *fsSpec // read only: shared between builds
	usage
}

type cachedBytes struct {
	data []byte
	usage
}

type cachedBlob struct {
	data  []byte
	patch *patchFacts // nil until the walk parsed it as a patch
	kust  *parsedKustomization
	usage
}

// usage is which builds used an entry of the cache.
type usage struct {
	used uint64 // the build that last used it
	// base: the last partitioned build used it. A
	// delta build (delta.go) keeps such entries, that the next
	// partitioned build finds the runs of the chunks no delta changed.
	base bool
}

func (u *usage) touch(gen uint64) { u.used = max(u.used, gen) }

// stale says whether eviction after build gen drops the entry: neither gen
// nor the build before used it and, after a delta build, the last
// partitioned build did not either. After any other build, base says
// whether that build used the entry.
func (u *usage) stale(gen uint64, delta bool) bool {
	recent := u.used+1 >= gen
	if delta {
		return !recent && !u.base
	}
	u.base = u.used >= gen
	return !recent
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{runs: map[runKey]*cachedRun{}, cuts: map[runKey]*cachedBytes{}, specs: map[runKey]*cachedSpec{}, blobs: map[plumbing.Hash]*cachedBlob{}}
}

func (c *Cache) getCut(k runKey, gen uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cuts[k]
	if !ok {
		return nil, false
	}
	e.touch(gen)
	return e.data, true
}

func (c *Cache) putCut(k runKey, data []byte, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cuts[k] = &cachedBytes{data: data, usage: usage{used: gen}}
}

func (c *Cache) getSpec(k runKey, gen uint64) (*fsSpec, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.specs[k]
	if !ok {
		return nil, false
	}
	e.touch(gen)
	return e.spec, true
}

func (c *Cache) putSpec(k runKey, s *fsSpec, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.specs[k] = &cachedSpec{spec: s, usage: usage{used: gen}}
}

func (c *Cache) getBlob(h plumbing.Hash, gen uint64) (*cachedBlob, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.blobs[h]
	if ok {
		e.touch(gen)
	}
	return e, ok
}

func (c *Cache) putBlob(h plumbing.Hash, data []byte, gen uint64) *cachedBlob {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &cachedBlob{data: data, usage: usage{used: gen}}
	c.blobs[h] = e
	return e
}

func (c *Cache) kustomizationOf(e *cachedBlob) *parsedKustomization {
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.kust
}

func (c *Cache) setKustomization(e *cachedBlob, k *parsedKustomization) {
	c.mu.Lock()
	e.kust = k
	c.mu.Unlock()
}

func (c *Cache) patchOf(e *cachedBlob) *patchFacts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.patch
}

func (c *Cache) setPatch(e *cachedBlob, f *patchFacts) {
	c.mu.Lock()
	e.patch = f
	c.mu.Unlock()
}

// Build is [Build] through the cache. The objects it returns are compact
// (CompactJSON): their maps hold their identity only — apiVersion, kind,
// metadata.name and metadata.namespace — and [Expand] gives the object
// [Build] gives. They are shared with the cache and with other builds: a
// caller must not modify them. The same object (pointer) coming back from
// two builds has the same content; two compact objects of the same
// content have equal maps.
func (c *Cache) Build(ctx context.Context, repo *gitstore.Repository, rev string, cfg *policies.SyncConfig) ([]*unstructured.Unstructured, error) {
	c.mu.Lock()
	c.gen++
	gen := c.gen
	c.mu.Unlock()
	objs, delta, err := build(ctx, repo, rev, cfg, c, gen)
	if err != nil {
		return nil, err
	}
	c.evict(gen, delta)
	return objs, nil
}

// Stats returns how many kustomize runs the builds through c took from it
// (hits) and ran (misses).
func (c *Cache) Stats() (hits, misses int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses
}

func (c *Cache) count(hits, misses int) {
	c.mu.Lock()
	c.hits += hits
	c.misses += misses
	c.mu.Unlock()
}

func (c *Cache) get(k runKey, gen uint64) ([]*unstructured.Unstructured, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.runs[k]
	if !ok {
		return nil, false
	}
	r.touch(gen)
	return r.objs, true
}

func (c *Cache) put(k runKey, objs []*unstructured.Unstructured, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs[k] = &cachedRun{objs: objs, usage: usage{used: gen}}
}

// evict drops the entries that neither build gen nor the one before used
// and, when gen was a delta build, that the last partitioned build did not
// use either.
func (c *Cache) evict(gen uint64, delta bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, r := range c.runs {
		if r.stale(gen, delta) {
			delete(c.runs, k)
		}
	}
	for k, e := range c.cuts {
		if e.stale(gen, delta) {
			delete(c.cuts, k)
		}
	}
	for k, e := range c.specs {
		if e.stale(gen, delta) {
			delete(c.specs, k)
		}
	}
	for k, e := range c.blobs {
		if e.stale(gen, delta) {
			delete(c.blobs, k)
		}
	}
}

// fsSpec is the in-memory filesystem of one kustomize run: each file by
// its blob in the commit, or by the bytes render derives.
type fsSpec struct {
	root    string
	entries []fsEntry
	id      runKey // key(), when built for a cache
}

type fsEntry struct {
	path    string
	blob    plumbing.Hash // a file of the commit
	data    []byte        // derived: bytes made in memory
	derived bool
}

// sort orders the entries by path, the last of the same path winning (as
// writing them in order would).
func (s *fsSpec) sort() {
	slices.SortStableFunc(s.entries, func(a, b fsEntry) int { return strings.Compare(a.path, b.path) })
	out := s.entries[:0]
	for i, e := range s.entries {
		if i+1 < len(s.entries) && s.entries[i+1].path == e.path {
			continue
		}
		out = append(out, e)
	}
	s.entries = out
}

// key names the run: the overlay's directory and every file, by path and
// content (blob hash, or hash of derived bytes).
func (s *fsSpec) key() runKey {
	h := sha256.New()
	h.Write([]byte("render-run-v1\x00" + s.root + "\x00"))
	for _, e := range s.entries {
		h.Write([]byte(e.path))
		if e.derived {
			sum := sha256.Sum256(e.data)
			h.Write([]byte{0, 'd'})
			h.Write(sum[:])
		} else {
			h.Write([]byte{0, 'b'})
			h.Write(e.blob[:])
		}
		h.Write([]byte{'\n'})
	}
	var k runKey
	h.Sum(k[:0])
	return k
}
