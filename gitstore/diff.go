package gitstore

import (
	"context"
	"errors"
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
	return r.DiffBlobs(ctx, branch, prefix, files, nil)
}

// ErrBlobMissing is returned (wrapped) by DiffBlobs when a file given by its
// blob hash differs from the tip and the blob is not in the repository, so
// that its content cannot be read: the caller must give the content.
var ErrBlobMissing = errors.New("blob not in the repository")

// DiffBlobs is Diff for files of which some, blobs, are given by their blob
// hash instead of their content: a caller that remembers what it wrote need
// not hold it. A path is in files or in blobs, not both. A blob that differs
// from the tip (or is not there) is read from the repository for its
// Change; one that is not in it gives an error wrapping ErrBlobMissing.
// Blobs equal to the tip's are never read.
func (r *Repository) DiffBlobs(ctx context.Context, branch, prefix string, files map[string][]byte, blobs map[string]plumbing.Hash) (ChangeSet, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: diff %s under %q: %w", branch, prefix, err) }
	name, err := branchRef(branch)
	if err != nil {
		return ChangeSet{}, fail(err)
	}
	dir, err := cleanPrefix(prefix)
	if err != nil {
		return ChangeSet{}, fail(err)
	}
	check := func(p string) error {
		if err := validatePath(p); err != nil {
			return fmt.Errorf("path %q: %w", p, err)
		}
		if !strings.HasPrefix(p, dir) {
			return fmt.Errorf("path %q: outside the prefix", p)
		}
		return nil
	}
	for p := range files {
		if err := check(p); err != nil {
			return ChangeSet{}, fail(err)
		}
	}
	for p := range blobs {
		if err := check(p); err != nil {
			return ChangeSet{}, fail(err)
		}
		if _, both := files[p]; both {
			return ChangeSet{}, fail(fmt.Errorf("path %q: given both as content and as a blob", p))
		}
	}
	if err := ctx.Err(); err != nil {
		return ChangeSet{}, fail(err)
	}

	old, err := r.filesAtTip(ctx, name, dir)
	if err != nil {
		return ChangeSet{}, fail(err)
	}

	// One pass over each map; no sort of every path (only of the changes).
	items := make([]diffItem, 0, len(files)+len(blobs))
	matched := 0
	for p, content := range files {
		h, exists := old[p]
		if exists {
			matched++
		}
		items = append(items, diffItem{path: p, content: content, old: h, exists: exists})
	}
	// Only files need hashing: a blob's hash is given (on a resync of a
	// controller, almost every file).
	if err := hashBlobs(ctx, items); err != nil {
		return ChangeSet{}, fail(err)
	}
	for p, hash := range blobs {
		h, exists := old[p]
		if exists {
			matched++
		}
		items = append(items, diffItem{path: p, old: h, exists: exists, hash: hash, blob: true})
	}
	var cs ChangeSet
	var unread []int // the changes of blobs, whose content is still to read
	for _, it := range items {
		switch {
		case !it.exists:
			cs.Added = append(cs.Added, it.path)
		case it.old != it.hash:
			cs.Modified = append(cs.Modified, it.path)
		default:
			continue
		}
		if it.blob {
			unread = append(unread, len(cs.Changes))
			cs.Changes = append(cs.Changes, Change{Path: it.path})
			continue
		}
		content := it.content
		if content == nil {
			content = []byte{} // nil would mean "delete" to Commit
		}
		cs.Changes = append(cs.Changes, Change{Path: it.path, Content: content})
	}
	if err := r.readChanged(ctx, cs.Changes, unread, blobs); err != nil {
		return ChangeSet{}, fail(err)
	}
	if matched < len(old) {
		for p := range old {
			_, inFiles := files[p]
			_, inBlobs := blobs[p]
			if !inFiles && !inBlobs {
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
// (if any), and the hash of its content (computed only when it had one, or
// given: blob).
type diffItem struct {
	path    string
	content []byte
	old     plumbing.Hash
	exists  bool
	hash    plumbing.Hash
	blob    bool // given by its hash, without content
}

// readChanged sets the content of changes[i] for each i of unread, a file
// given by its blob hash (blobs) that differs from the tip, from the
// repository's objects (ReadBlob). They are few: what changed since the
// caller wrote them.
func (r *Repository) readChanged(ctx context.Context, changes []Change, unread []int, blobs map[string]plumbing.Hash) error {
	for _, i := range unread {
		c := &changes[i]
		h := blobs[c.Path]
		b, err := r.ReadBlob(ctx, h)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return fmt.Errorf("path %q: blob %s: %w", c.Path, h, ErrBlobMissing)
		}
		if err != nil {
			return fmt.Errorf("path %q: %w", c.Path, err)
		}
		if b == nil {
			b = []byte{} // nil would mean "delete" to Commit
		}
		c.Content = b
	}
	return nil
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
