package gitstore

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// moveAndCheckout moves branch name from old (nil: it does not exist) to
// commit to, with the same check-and-set as Commit, and, when the work tree
// has the branch checked out, updates the files and index entries of the
// paths that differ between the two commits, and nothing else, as Commit
// does. It is how Fetch fast-forwards and CommitAndPush resets a branch.
// r.mu is held.
func (r *Repository) moveAndCheckout(ctx context.Context, name plumbing.ReferenceName, old *plumbing.Reference, to plumbing.Hash) error {
	var idx *indexLock
	var cur *currentIndex
	var updates []fileUpdate
	if r.workTree != "" {
		onBranch, err := r.headIs(name)
		if err != nil {
			return err
		}
		if onBranch {
			if err := r.recoverWorkTree(ctx, name); err != nil {
				return err
			}
			var oldTree plumbing.Hash
			if old != nil {
				if oldTree, err = r.treeOf(old.Hash()); err != nil {
					return err
				}
			}
			newTree, err := r.treeOf(to)
			if err != nil {
				return err
			}
			// Read what the work tree needs before anything moves.
			if err := r.diffTrees(ctx, oldTree, newTree, "", &updates); err != nil {
				return err
			}
			if idx, err = r.lockIndex(); err != nil {
				return err
			}
			defer idx.release()
			if cur, err = r.readIndex(idx, oldTree); err != nil {
				return err
			}
			if err := r.beginWorkTreeUpdate(oldTree, newTree); err != nil {
				return err
			}
		}
	}
	if err := r.moveBranch(name, old, to); err != nil {
		if idx != nil {
			_ = r.endWorkTreeUpdate()
		}
		return err
	}
	if idx == nil {
		return nil
	}
	if len(updates) > 0 {
		if err := r.updateWorkTree(idx, cur, updates); err != nil {
			return fmt.Errorf("%s moved to %s; work tree: %w", name, to, err)
		}
	}
	return r.endWorkTreeUpdate()
}

func (r *Repository) commitObject(h plumbing.Hash) (*object.Commit, error) {
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

func (r *Repository) treeOf(commit plumbing.Hash) (plumbing.Hash, error) {
	c, err := r.commitObject(commit)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return c.TreeHash, nil
}

// diffTrees appends to out the file updates that turn tree a into tree b
// (either zero: empty) under dir ("" or ending in "/"), descending only into
// directories whose trees differ. Submodule entries are left out: there is
// nothing to write for them. A symbolic link is written as a file holding
// its target, which is what git does where links are not supported.
func (r *Repository) diffTrees(ctx context.Context, a, b plumbing.Hash, dir string, out *[]fileUpdate) error {
	if a == b {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	ea, err := r.readTree(a)
	if err != nil {
		return err
	}
	eb, err := r.readTree(b)
	if err != nil {
		return err
	}
	inB := make(map[string]object.TreeEntry, len(eb))
	for _, e := range eb {
		inB[e.Name] = e
	}
	for _, e := range ea {
		n, ok := inB[e.Name]
		switch {
		case ok && n.Mode == e.Mode && n.Hash == e.Hash:
		case ok && n.Mode == filemode.Dir && e.Mode == filemode.Dir:
			if err := r.diffTrees(ctx, e.Hash, n.Hash, dir+e.Name+"/", out); err != nil {
				return err
			}
		case ok && n.Mode != filemode.Dir && e.Mode != filemode.Dir:
			if err := r.addFile(dir+n.Name, n, out); err != nil {
				return err
			}
		default: // gone, or a file became a directory or the reverse
			switch e.Mode {
			case filemode.Dir:
				if err := r.diffTrees(ctx, e.Hash, plumbing.ZeroHash, dir+e.Name+"/", out); err != nil {
					return err
				}
			case filemode.Submodule:
			default:
				*out = append(*out, fileUpdate{path: dir + e.Name, mode: e.Mode})
			}
			if ok {
				if err := r.addEntry(ctx, dir, n, out); err != nil {
					return err
				}
			}
		}
		delete(inB, e.Name)
	}
	for _, n := range eb {
		if _, ok := inB[n.Name]; !ok {
			continue // handled above
		}
		if err := r.addEntry(ctx, dir, n, out); err != nil {
			return err
		}
	}
	return nil
}

// addEntry appends the writes of a new entry: a file, or every file of a
// directory.
func (r *Repository) addEntry(ctx context.Context, dir string, e object.TreeEntry, out *[]fileUpdate) error {
	if e.Mode == filemode.Dir {
		return r.diffTrees(ctx, plumbing.ZeroHash, e.Hash, dir+e.Name+"/", out)
	}
	return r.addFile(dir+e.Name, e, out)
}

func (r *Repository) addFile(path string, e object.TreeEntry, out *[]fileUpdate) error {
	if e.Mode == filemode.Submodule {
		return nil
	}
	b, err := r.readBlob(e.Hash)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if b == nil {
		b = []byte{} // nil would mean "remove"
	}
	*out = append(*out, fileUpdate{path: path, content: b, mode: e.Mode, hash: e.Hash})
	return nil
}
