package gitstore

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ChangeSet is what Diff found.
type ChangeSet struct {
	Changes                  []Change // ready for Commit, sorted by path
	Added, Modified, Removed []string // paths, sorted
}

// Diff returns the changes that make the subtree under prefix at the tip of
// branch equal to files, whose keys are paths from the repository root, all
// under prefix ("" for the whole tree; an error names a path outside it). It
// compares blob hashes (the new content is hashed, not written) and reads
// only the trees under prefix. A branch without commits, or a prefix that
// does not exist, means every file is added. Files outside prefix are never
// part of the result.
func (r *Repository) Diff(ctx context.Context, branch, prefix string, files map[string][]byte) (ChangeSet, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: diff %s under %q: %w", branch, prefix, err) }
	name, err := branchRef(branch)
	if err != nil {
		return ChangeSet{}, fail(err)
	}
	dir, err := cleanPrefix(prefix)
	if err != nil {
		return ChangeSet{}, fail(err)
	}
	for p := range files {
		if err := validatePath(p); err != nil {
			return ChangeSet{}, fail(fmt.Errorf("path %q: %w", p, err))
		}
		if !strings.HasPrefix(p, dir) {
			return ChangeSet{}, fail(fmt.Errorf("path %q: outside the prefix", p))
		}
	}
	if err := ctx.Err(); err != nil {
		return ChangeSet{}, fail(err)
	}

	old, err := r.filesAtTip(ctx, name, dir)
	if err != nil {
		return ChangeSet{}, fail(err)
	}

	// One pass over the map; no sort of every path (only of the changes).
	items := make([]diffItem, 0, len(files))
	matched := 0
	for p, content := range files {
		h, exists := old[p]
		if exists {
			matched++
		}
		items = append(items, diffItem{path: p, content: content, old: h, exists: exists})
	}
	if err := hashBlobs(ctx, items); err != nil {
		return ChangeSet{}, fail(err)
	}
	var cs ChangeSet
	for _, it := range items {
		switch {
		case !it.exists:
			cs.Added = append(cs.Added, it.path)
		case it.old != it.hash:
			cs.Modified = append(cs.Modified, it.path)
		default:
			continue
		}
		content := it.content
		if content == nil {
			content = []byte{} // nil would mean "delete" to Commit
		}
		cs.Changes = append(cs.Changes, Change{Path: it.path, Content: content})
	}
	if matched < len(old) {
		for p := range old {
			if _, ok := files[p]; !ok {
				cs.Removed = append(cs.Removed, p)
				cs.Changes = append(cs.Changes, Change{Path: p})
			}
		}
	}
	slices.Sort(cs.Added)
	slices.Sort(cs.Modified)
	slices.Sort(cs.Removed)
	slices.SortFunc(cs.Changes, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	return cs, nil
}

// diffItem is one file of a Diff: its content, the blob it had at the tip
// (if any), and the hash of its content (computed only when it had one).
type diffItem struct {
	path    string
	content []byte
	old     plumbing.Hash
	exists  bool
	hash    plumbing.Hash
}

// hashBlobs sets the blob hash of each item that exists at the tip (the
// others need none), hashing on every core: at 100,000 files hashing is most
// of what Diff does. It uses go-git's hash, the one Commit's objects get.
func hashBlobs(ctx context.Context, items []diffItem) error {
	workers := min(runtime.GOMAXPROCS(0), 1+len(items)/512)
	chunk := (len(items) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*chunk, min((w+1)*chunk, len(items))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				if (i-lo)%1024 == 0 && ctx.Err() != nil {
					return
				}
				if items[i].exists {
					items[i].hash = plumbing.ComputeHash(plumbing.BlobObject, items[i].content)
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// filesAtTip returns the entries under dir (canonical, see cleanPrefix) at
// the tip of branch name; none when the branch has no commit.
func (r *Repository) filesAtTip(ctx context.Context, name plumbing.ReferenceName, dir string) (map[string]plumbing.Hash, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return nil, err
	}
	ref, err := r.tip(name)
	if err != nil || ref == nil {
		return map[string]plumbing.Hash{}, err
	}
	c, err := object.GetCommit(r.st, ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("tip %s: %w", ref.Hash(), err)
	}
	files := map[string]plumbing.Hash{}
	err = r.walkPrefix(ctx, c.TreeHash, dir, func(p string, e object.TreeEntry) { files[p] = e.Hash })
	return files, err
}
