package render

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// repoTree is the file list of one commit, read lazily through gitstore:
// render never looks at a work tree.
type repoTree struct {
	ctx     context.Context
	cache   *Cache // blobs and what the walk learnt of them; may be nil
	gen     uint64
	repo    *gitstore.Repository
	rev     string
	files   map[string]plumbing.Hash
	dirs    map[string]bool
	content map[string][]byte
	// uncached is the prefix of the files whose blobs the cache does not
	// keep (the snapshot's objects).
	uncached string
}

// loadTree lists the files of the commit that rev names, into the map
// files when it is not nil (a map no build uses any more: see
// Cache.spareFiles). A branch is resolved to its commit first, so that
// every file comes from the same commit even if the branch moves while
// the build reads.
func loadTree(ctx context.Context, repo *gitstore.Repository, rev string, files map[string]plumbing.Hash) (*repoTree, error) {
	h, err := repo.Resolve(ctx, rev)
	if err != nil {
		return nil, err
	}
	rev = h.String()
	if files == nil {
		files = map[string]plumbing.Hash{}
	}
	if err := repo.FilesInto(ctx, rev, "", files); err != nil {
		return nil, err
	}
	t := &repoTree{ctx: ctx, repo: repo, rev: rev, files: files, dirs: map[string]bool{}, content: map[string][]byte{}}
	for f := range files {
		for d := path.Dir(f); d != "." && !t.dirs[d]; d = path.Dir(d) {
			t.dirs[d] = true
		}
	}
	return t, nil
}

// takeSpareFiles takes the cache's spare file list (nil: none).
func (c *Cache) takeSpareFiles() map[string]plumbing.Hash {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.spare
	c.spare = nil
	return m
}

// spareFiles gives the cache the file list of a build that nothing uses any
// more: the builder of the build before, once the next one is done with it
// (delta, inherit). Two lists then serve every build, each listing into
// the one of the build before the last.
func (c *Cache) spareFiles(m map[string]plumbing.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spare = m
}

func (t *repoTree) isFile(p string) bool { _, ok := t.files[p]; return ok }
func (t *repoTree) isDir(p string) bool  { return p == "" || t.dirs[p] }

// under lists the files under directory dir, sorted.
func (t *repoTree) under(dir string) []string {
	var list []string
	for f := range t.files {
		if strings.HasPrefix(f, dir+"/") {
			list = append(list, f)
		}
	}
	slices.Sort(list)
	return list
}

func (t *repoTree) read(p string) ([]byte, error) {
	if b, ok := t.content[p]; ok {
		return b, nil
	}
	h, ok := t.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	if t.cache != nil {
		if e, ok := t.cache.getBlob(h, t.gen); ok {
			// The check depends on the name too: checked again.
			if err := checkYAML(p, e.data); err != nil {
				return nil, err
			}
			t.content[p] = e.data
			return e.data, nil
		}
	}
	// By hash: the tree was walked once in loadTree; reading by path
	// would resolve the commit and walk it again for every file.
	b, err := t.repo.ReadBlob(t.ctx, h)
	if err != nil {
		return nil, err
	}
	if err := checkYAML(p, b); err != nil {
		return nil, err
	}
	t.content[p] = b
	// Snapshot objects are not kept across builds: a build reads only the
	// objects of the runs the cache does not hold, a few after a small
	// commit, and keeping every object's blob would hold the whole
	// snapshot in memory between builds.
	if t.cache != nil && (t.uncached == "" || !strings.HasPrefix(p, t.uncached)) {
		t.cache.putBlob(h, b, t.gen)
	}
	return b, nil
}

// kustomization parses the kustomization file p (read), once per blob
// through the cache.
func (t *repoTree) kustomization(p string) (*parsedKustomization, error) {
	b, ok := t.content[p]
	if !ok {
		return nil, fmt.Errorf("%s: not read", p)
	}
	if t.cache == nil {
		return parseKustomization(b)
	}
	e, ok := t.cache.getBlob(t.files[p], t.gen)
	if !ok {
		return parseKustomization(b)
	}
	if k := t.cache.kustomizationOf(e); k != nil {
		return k, nil
	}
	k, err := parseKustomization(b)
	if err == nil {
		t.cache.setKustomization(e, k)
	}
	return k, err
}

// patch reads the patch file p and parses it, once per blob through the
// cache.
func (t *repoTree) patch(p string) (*patchFacts, error) {
	b, err := t.read(p)
	if err != nil {
		return nil, err
	}
	if t.cache == nil {
		return parsePatch(string(b)), nil
	}
	e, ok := t.cache.getBlob(t.files[p], t.gen)
	if !ok {
		return parsePatch(string(b)), nil
	}
	if f := t.cache.patchOf(e); f != nil {
		return f, nil
	}
	f := parsePatch(string(b))
	t.cache.setPatch(e, f)
	return f, nil
}

// snapshot is the layout of snapshots/<source>/ in the commit. It has no
// kustomization files: render derives them (derived), listing every object
// file, and never commits them.
type snapshot struct {
	root    string              // snapshots/<source>
	dirs    []string            // its directories: one per namespace, and _cluster; sorted
	objects map[string][]string // object files of each directory, sorted
	ids     map[string]gitstore.ObjectID
}

func newSnapshot(t *repoTree, source string) (*snapshot, error) {
	prefix := gitstore.SnapshotPrefix(source)
	s := &snapshot{root: strings.TrimSuffix(prefix, "/"), objects: map[string][]string{}, ids: map[string]gitstore.ObjectID{}}
	var errs []error
	for f := range t.files {
		rest, ok := strings.CutPrefix(f, prefix)
		if !ok {
			continue
		}
		dir, _, nested := strings.Cut(rest, "/")
		if slices.Contains(kustomizationNames, path.Base(f)) && (!nested || path.Dir(f) == prefix+dir) {
			errs = append(errs, fmt.Errorf("%s: the snapshot holds no kustomization: render derives one for %s and each of its directories", f, prefix))
			continue
		}
		_, id, err := gitstore.ParseObjectPath(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not an object file of the snapshot layout: %w", f, err))
			continue
		}
		s.ids[f] = id
		s.objects[prefix+dir] = append(s.objects[prefix+dir], f)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	for d, list := range s.objects {
		slices.Sort(list)
		s.dirs = append(s.dirs, d)
	}
	slices.Sort(s.dirs)
	return s, nil
}

// sameFiles says whether the snapshot of source in t has the files of s,
// no more, no less: then it is s (a snapshot is a function of its paths).
func (s *snapshot) sameFiles(t *repoTree, source string) bool {
	prefix := gitstore.SnapshotPrefix(source)
	if s.root != strings.TrimSuffix(prefix, "/") {
		return false
	}
	n := 0
	for f := range t.files {
		if !strings.HasPrefix(f, prefix) {
			continue
		}
		if _, ok := s.ids[f]; !ok {
			return false
		}
		n++
	}
	return n == len(s.ids)
}

// isDerived says whether render derives the kustomization of directory p.
func (s *snapshot) isDerived(p string) bool {
	if len(s.dirs) == 0 {
		return false
	}
	_, ok := s.objects[p]
	return p == s.root || ok
}

// contains says whether p is inside the snapshot (not the root itself).
func (s *snapshot) contains(p string) bool { return strings.HasPrefix(p, s.root+"/") }

func (s *snapshot) isObject(p string) bool { _, ok := s.ids[p]; return ok }

// reached lists the object files that the derived directories refs reach,
// sorted.
func (s *snapshot) reached(refs map[string]bool) []string {
	var list []string
	for _, d := range s.dirs {
		if refs[s.root] || refs[d] {
			list = append(list, s.objects[d]...)
		}
	}
	return list
}

// derived returns the derived kustomization files, listing the object
// files for which keep is true: with only nil, the root's and every
// directory's (even one that lists nothing); else those of the directories
// in only.
func (s *snapshot) derived(keep func(string) bool, only map[string]bool) map[string][]byte {
	out := map[string][]byte{}
	var b strings.Builder
	if only == nil {
		b.WriteString(derivedHead)
		for _, d := range s.dirs {
			b.WriteString("- " + path.Base(d) + "\n")
		}
		out[s.root+"/kustomization.yaml"] = []byte(b.String())
	}
	for _, d := range s.dirs {
		if only != nil && !only[d] {
			continue
		}
		b.Reset()
		b.WriteString(derivedHead)
		for _, f := range s.objects[d] {
			if keep(f) {
				b.WriteString("- " + yamlString(strings.TrimPrefix(f, d+"/")) + "\n")
			}
		}
		out[d+"/kustomization.yaml"] = []byte(b.String())
	}
	return out
}

// derivedHead starts a derived kustomization. The name keeps kustomize
// from refusing one that lists nothing.
const derivedHead = "# Derived by render from the files of the commit; never committed.\n" +
	"apiVersion: " + kustomizationAPI + "\nkind: Kustomization\nmetadata:\n  name: snapshot\nresources:\n"
