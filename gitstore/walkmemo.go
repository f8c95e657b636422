package gitstore

import (
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// treeMemo remembers the directories that the last walks read: for a
// directory at a path with a tree hash, its entries with their paths
// joined. A walk of a commit that changed a few files then reads and
// decodes only the trees along the changed paths, and allocates no path of
// a file it had listed before: a controller lists every file of the
// repository at every build (render's tree), and with 10,000 files that
// walk decoded every tree again (~7% of the controller's CPU in a burst of
// changes, 3 MB of garbage a build).
//
// It keeps the directories of the last two walks (by generation: a
// directory a walk uses moves to the current one), so it never holds more
// than twice the trees of the largest walk, and it is as valid as the
// object store: a tree hash names its content. Path lookups (subtree) and
// commits read from it but add nothing (see dirOf).
type treeMemo struct {
	mu        sync.Mutex
	cur, prev map[memoKey]*memoDir
}

type memoKey struct {
	dir  string // path of the directory, ending in "/"
	tree plumbing.Hash
}

// memoDir is a directory's entries, in tree order, each with its path
// (a subdirectory's ending in "/").
type memoDir struct {
	paths   []string
	entries []object.TreeEntry
}

// next starts a generation: what the walk before did not use is dropped.
func (m *treeMemo) next() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prev, m.cur = m.cur, make(map[memoKey]*memoDir, len(m.cur))
}

func (m *treeMemo) get(k memoKey) (*memoDir, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if d, ok := m.cur[k]; ok {
		return d, true
	}
	d, ok := m.prev[k]
	if ok {
		if m.cur == nil {
			m.cur = map[memoKey]*memoDir{}
		}
		m.cur[k] = d
		delete(m.prev, k)
	}
	return d, ok
}

func (m *treeMemo) put(k memoKey, d *memoDir) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		m.cur = map[memoKey]*memoDir{}
	}
	m.cur[k] = d
}

// dirOf returns the entries of the directory dir whose tree is h, from the
// memo or read. Only a walk (keep) puts what it read in the memo: the
// lookups of a path and the commits between two walks take what the last
// walk listed, and add nothing — commits with no walk between them (an
// apply loop backing off while the target is down, and continuous mode
// committing all the while) would otherwise fill it without bound.
func (r *Repository) dirOf(dir string, h plumbing.Hash, keep bool) (*memoDir, error) {
	k := memoKey{dir, h}
	if d, ok := r.trees.get(k); ok {
		return d, nil
	}
	entries, err := r.readTree(h)
	if err != nil {
		return nil, err
	}
	if !keep {
		return &memoDir{entries: entries}, nil // the callers read entries only
	}
	d := &memoDir{paths: make([]string, len(entries)), entries: entries}
	for i, e := range entries {
		d.paths[i] = dir + e.Name
		if e.Mode == filemode.Dir {
			d.paths[i] += "/"
		}
	}
	r.trees.put(k, d)
	return d, nil
}
