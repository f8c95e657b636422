package gitstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ReadFile returns the content of the file at path in the commit that rev
// names: a branch, a tag, a commit hash (full or abbreviated) or any other
// revision git understands ("main~1"). A missing file is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func (r *Repository) ReadFile(ctx context.Context, rev, path string) ([]byte, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: read %s at %s: %w", path, rev, err) }
	if err := validatePath(path); err != nil {
		return nil, fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := r.resolveTree(ctx, rev)
	if err != nil {
		return nil, fail(err)
	}
	dir, base := splitPath(path)
	entries, err := r.subtree(ctx, root, dir)
	if err != nil {
		return nil, fail(err)
	}
	e, ok := findEntry(entries, base)
	switch {
	case !ok:
		return nil, fail(fs.ErrNotExist)
	case e.Mode == filemode.Dir:
		return nil, fail(errors.New("is a directory"))
	case e.Mode == filemode.Submodule:
		return nil, fail(errors.New("is a submodule"))
	}
	b, err := r.readBlob(e.Hash)
	if err != nil {
		return nil, fail(err)
	}
	return b, nil
}

// Files lists the files under prefix ("" for all) in the commit that rev
// names, keyed by path from the repository root, with their blob hashes, so
// that a reader can read only the ones it needs. A missing prefix gives an
// empty map. Submodule entries are not files and are left out.
func (r *Repository) Files(ctx context.Context, rev, prefix string) (map[string]plumbing.Hash, error) {
	files := map[string]plumbing.Hash{}
	if err := r.FilesInto(ctx, rev, prefix, files); err != nil {
		return nil, err
	}
	return files, nil
}

// FilesInto is Files, listing into the map files, which it clears first
// (on an error, what it holds is undefined). A reader that lists the
// files of every commit it reads can reuse a map it is done with: a map
// of 10,000 files allocates about 1 MB as it grows, again at each listing.
func (r *Repository) FilesInto(ctx context.Context, rev, prefix string, files map[string]plumbing.Hash) error {
	fail := func(err error) error { return fmt.Errorf("gitstore: files under %q at %s: %w", prefix, rev, err) }
	prefix, err := cleanPrefix(prefix)
	if err != nil {
		return fail(err)
	}
	clear(files)
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := r.resolveTree(ctx, rev)
	if err != nil {
		return fail(err)
	}
	err = r.walkPrefix(ctx, root, prefix, func(p string, e object.TreeEntry) {
		if e.Mode != filemode.Submodule {
			files[p] = e.Hash
		}
	})
	if err != nil {
		return fail(err)
	}
	return nil
}

// ReadBlob returns the content of a blob by its hash, as Files lists them:
// a reader that has listed a tree reads each file without resolving the
// commit and walking its trees again.
func (r *Repository) ReadBlob(ctx context.Context, h plumbing.Hash) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gitstore: read blob %s: %w", h, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil { // a gc may have packed it meanwhile
		return nil, fmt.Errorf("gitstore: read blob %s: %w", h, err)
	}
	b, err := r.readBlob(h)
	if err != nil {
		return nil, fmt.Errorf("gitstore: read blob %s: %w", h, err)
	}
	return b, nil
}

// Resolve returns the commit that rev names (a branch, a tag, a hash or any
// revision git understands), so that a caller can record exactly what it
// read.
func (r *Repository) Resolve(ctx context.Context, rev string) (plumbing.Hash, error) {
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("gitstore: resolve %s: %w", rev, err)
	}
	h, err := r.resolveCommit(rev)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("gitstore: resolve %s: %w", rev, err)
	}
	return h, nil
}

// resolveTree returns the root tree of the commit that rev names.
func (r *Repository) resolveTree(ctx context.Context, rev string) (plumbing.Hash, error) {
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := r.refresh(); err != nil {
		return plumbing.ZeroHash, err
	}
	h, err := r.resolveCommit(rev)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("commit %s: %w", h, err)
	}
	return c.TreeHash, nil
}

// resolveCommit resolves rev without scanning the object database for the
// common cases (a full hash, a branch, a tag); anything else goes to go-git's
// revision parser.
func (r *Repository) resolveCommit(rev string) (plumbing.Hash, error) {
	if rev == "" {
		return plumbing.ZeroHash, errors.New("empty revision")
	}
	if len(rev) == 40 && plumbing.IsHash(rev) {
		return r.peel(plumbing.NewHash(rev))
	}
	for _, name := range []plumbing.ReferenceName{
		plumbing.NewBranchReferenceName(rev),
		plumbing.NewTagReferenceName(rev),
	} {
		if name.Validate() != nil {
			continue
		}
		ref, err := r.st.Reference(name)
		if errors.Is(err, plumbing.ErrReferenceNotFound) {
			continue
		}
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if ref.Type() != plumbing.HashReference {
			break
		}
		return r.peel(ref.Hash())
	}
	h, err := r.git.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("revision %q: %w", rev, err)
	}
	return *h, nil
}

// peel follows annotated tags to the commit they name.
func (r *Repository) peel(h plumbing.Hash) (plumbing.Hash, error) {
	for range 10 {
		o, err := r.st.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("object %s: %w", h, err)
		}
		switch o.Type() {
		case plumbing.CommitObject:
			return h, nil
		case plumbing.TagObject:
			t, err := object.DecodeTag(r.st, o)
			if err != nil {
				return plumbing.ZeroHash, fmt.Errorf("tag %s: %w", h, err)
			}
			h = t.Target
		default:
			return plumbing.ZeroHash, fmt.Errorf("object %s is a %s, not a commit", h, o.Type())
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("object %s: tag chain too long", h)
}

// readTree returns the entries of a tree; a zero hash is the empty tree.
func (r *Repository) readTree(h plumbing.Hash) ([]object.TreeEntry, error) {
	if h.IsZero() {
		return nil, nil
	}
	t, err := object.GetTree(r.st, h)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", h, err)
	}
	return t.Entries, nil
}

func (r *Repository) readBlob(h plumbing.Hash) ([]byte, error) {
	o, err := r.st.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	rd, err := o.Reader()
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", h, err)
	}
	return b, nil
}

// subtree returns the entries of directory dir ("" for the root, no trailing
// slash) under root, reading only the trees along dir (through treeMemo:
// the entries are shared, read only). A directory that does not exist, or
// is a file, has no entries.
func (r *Repository) subtree(ctx context.Context, root plumbing.Hash, dir string) ([]object.TreeEntry, error) {
	d, err := r.dirOf("", root, false)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return d.entries, nil
	}
	path := ""
	for seg := range strings.SplitSeq(dir, "/") {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		e, ok := findEntry(d.entries, seg)
		if !ok || e.Mode != filemode.Dir {
			return nil, nil
		}
		path += seg + "/"
		if d, err = r.dirOf(path, e.Hash, false); err != nil {
			return nil, err
		}
	}
	return d.entries, nil
}

// walkPrefix calls fn for every non-tree entry under prefix (canonical, see
// cleanPrefix), reading only the trees under it.
func (r *Repository) walkPrefix(ctx context.Context, root plumbing.Hash, prefix string, fn func(path string, e object.TreeEntry)) error {
	entries, err := r.subtree(ctx, root, strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return err
	}
	return r.walk(ctx, entries, prefix, fn)
}

// walk calls fn with the path of every file under the entries of directory
// dir, recursively, in tree order. The trees below are read through the
// repository's treeMemo: each walk starts a generation of it.
func (r *Repository) walk(ctx context.Context, entries []object.TreeEntry, dir string, fn func(string, object.TreeEntry)) error {
	r.trees.next()
	for _, e := range entries {
		if err := r.walkEntry(ctx, dir+e.Name, e, fn); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repository) walkEntry(ctx context.Context, path string, e object.TreeEntry, fn func(string, object.TreeEntry)) error {
	if e.Mode != filemode.Dir {
		fn(path, e)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !strings.HasSuffix(path, "/") {
		path += "/"
	}
	d, err := r.dirOf(path, e.Hash, true)
	if err != nil {
		return err
	}
	for i, sub := range d.entries {
		if err := r.walkEntry(ctx, d.paths[i], sub, fn); err != nil {
			return err
		}
	}
	return nil
}

func findEntry(entries []object.TreeEntry, name string) (object.TreeEntry, bool) {
	for _, e := range entries {
		if e.Name == name {
			return e, true
		}
	}
	return object.TreeEntry{}, false
}

// splitPath splits a valid path into its directory ("" at the root) and base.
func splitPath(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// TreeHash returns the hash of the tree of directory dir in the commit rev
// names; the zero hash when there is no such directory. Two commits with
// the same TreeHash of a directory hold the same files under it, whatever
// their histories: a squash or a rebase merge leaves it as it was.
func (r *Repository) TreeHash(ctx context.Context, rev, dir string) (plumbing.Hash, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: tree of %q at %s: %w", dir, rev, err) }
	p, err := cleanPrefix(dir)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	root, err := r.resolveTree(ctx, rev)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if p == "" {
		return root, nil
	}
	parent, base := splitPath(strings.TrimSuffix(p, "/"))
	entries, err := r.subtree(ctx, root, parent)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if e, ok := findEntry(entries, base); ok && e.Mode == filemode.Dir {
		return e.Hash, nil
	}
	return plumbing.ZeroHash, nil
}
