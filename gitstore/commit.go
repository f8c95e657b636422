package gitstore

import (
	"bufio"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage"
)

// Change is one file of a commit.
type Change struct {
	Path    string // slash-separated, relative to the repository root
	Content []byte // nil deletes the file; an empty non-nil slice is an empty file
}

// CommitOptions says where and how Commit records changes.
type CommitOptions struct {
	Branch  string    // short branch name, e.g. "main"; created by the first commit
	Message string    // the whole message, trailers included; a final newline is added if missing
	Author  Signature // also used as committer; see Signature for defaults
}

// Signature is the author of a commit. An empty Name defaults to "dr-syncer",
// an empty Email to "dr-syncer@localhost", a zero When to time.Now().
type Signature struct {
	Name, Email string
	When        time.Time
}

// ErrNoChange is returned by Commit when the changes leave the tree of the
// branch as it is; nothing is written then.
var ErrNoChange = errors.New("no change")

// Commit writes changes on top of the tip of opts.Branch as one commit and
// returns its hash. It works on git objects directly (blobs, the trees along
// the changed paths, a commit, a reference update), never by scanning or
// staging a work tree, so its cost grows with the number of changes, not with
// the size of the repository.
//
// New objects are written loose, or, from packThreshold of them on (a first
// snapshot, a large change), as one pack with its index, so that a commit of
// 10,000 new files writes two files instead of 10,000. Each such commit adds
// a pack; `git gc` (or `git repack -d`) merges them when there are many.
//
// Paths are checked before anything is written: no empty, ".", ".." or
// ".git" segment, no leading "/", no NUL, no path given twice, and no path
// that must be both a file and a directory in the new tree; an invalid path
// is an error naming it. Deleting a file that does not exist is not an error.
// Existing executable files stay executable; every other file is written as
// a regular file. Commit returns ErrNoChange, writing nothing, when the new
// tree equals the tip's.
//
// The branch moves with a check-and-set against the tip Commit started from
// (compared and written under git's "<ref>.lock" file, renamed into place), so when
// another writer moved it in the meantime Commit fails with an error
// satisfying errors.Is(err, storage.ErrReferenceHasChanged) instead of
// losing a commit; calling Commit again is safe.
//
// If the repository has a work tree and HEAD points at opts.Branch, the files
// and index entries of the paths the commit changed are updated to match it
// (written or removed; directories left empty by removals are removed), under
// git's index.lock. Every other file and index entry is left alone, so edits
// people make in the same work tree survive. Once the branch has moved,
// Commit completes this update even if ctx is cancelled; if the update fails,
// Commit returns the new commit's hash together with the error.
func (r *Repository) Commit(ctx context.Context, changes []Change, opts CommitOptions) (plumbing.Hash, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: commit on %s: %w", opts.Branch, err) }
	refName, err := branchRef(opts.Branch)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if opts.Message == "" {
		return plumbing.ZeroHash, fail(errors.New("empty message"))
	}
	sig, err := opts.Author.withDefaults()
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	plan, err := planChanges(changes)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, fail(err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	pc, err := r.prepare(ctx, refName, plan, sig, opts.Message)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	hash, err := r.publish(ctx, pc)
	if err != nil {
		return hash, fail(err)
	}
	return hash, nil
}

// pendingCommit is a commit built in memory, not written yet.
type pendingCommit struct {
	ref     plumbing.ReferenceName
	old     *plumbing.Reference // the tip it goes on; nil for a new branch
	oldTree plumbing.Hash
	hash    plumbing.Hash
	tree    *treeBuilder // the objects to write and the paths changed
}

// prepare builds the trees and the commit object on top of the tip of ref.
func (r *Repository) prepare(ctx context.Context, ref plumbing.ReferenceName, plan *planNode, sig object.Signature, msg string) (*pendingCommit, error) {
	pc := &pendingCommit{ref: ref, tree: &treeBuilder{r: r}}
	var err error
	if pc.old, err = r.tip(ref); err != nil {
		return nil, err
	}
	var parents []plumbing.Hash
	if pc.old != nil {
		c, err := object.GetCommit(r.st, pc.old.Hash())
		if err != nil {
			return nil, fmt.Errorf("tip %s: %w", pc.old.Hash(), err)
		}
		pc.oldTree, parents = c.TreeHash, []plumbing.Hash{pc.old.Hash()}
	}

	newTree, _, err := pc.tree.rewrite(ctx, pc.oldTree, plan, "")
	if err != nil {
		return nil, err
	}
	if len(pc.tree.updates) == 0 {
		return nil, ErrNoChange
	}
	if newTree.IsZero() { // everything deleted: the commit has the empty tree
		if newTree, err = pc.tree.encodeTree(nil); err != nil {
			return nil, err
		}
	}
	if !strings.HasSuffix(msg, "\n") {
		msg += "\n"
	}
	commit := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: newTree, ParentHashes: parents}
	if pc.hash, err = pc.tree.add(commit); err != nil {
		return nil, err
	}
	return pc, nil
}

// publish writes the objects of pc, moves the branch and, when the work tree
// has the branch checked out, updates it. Once the branch has moved it
// returns the commit's hash, with an error if the work tree update failed.
func (r *Repository) publish(ctx context.Context, pc *pendingCommit) (plumbing.Hash, error) {
	// Take the index lock and read the index before moving the branch, so
	// that a git command holding the lock, or an index Commit cannot
	// update, makes Commit fail before anything is visible.
	var idx *indexLock
	var cur *currentIndex
	if r.workTree != "" {
		onBranch, err := r.headIs(pc.ref)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if onBranch {
			if err := r.recoverWorkTree(ctx, pc.ref); err != nil {
				return plumbing.ZeroHash, err
			}
			if idx, err = r.lockIndex(); err != nil {
				return plumbing.ZeroHash, err
			}
			defer idx.release()
			if cur, err = r.readIndex(idx, pc.oldTree); err != nil {
				return plumbing.ZeroHash, err
			}
		}
	}
	if err := pc.tree.store(ctx); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, err
	}
	if r.beforeRefUpdate != nil {
		r.beforeRefUpdate()
	}
	if idx != nil {
		newTree, err := r.treeOf(pc.hash)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		if err := r.beginWorkTreeUpdate(pc.oldTree, newTree); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	if err := r.moveBranch(pc.ref, pc.old, pc.hash); err != nil {
		if idx != nil {
			_ = r.endWorkTreeUpdate()
		}
		return plumbing.ZeroHash, err
	}
	if idx == nil {
		return pc.hash, nil
	}
	if err := r.updateWorkTree(idx, cur, pc.tree.updates); err != nil {
		return pc.hash, fmt.Errorf("commit %s written; work tree: %w", pc.hash, err)
	}
	if err := r.endWorkTreeUpdate(); err != nil {
		return pc.hash, err
	}
	return pc.hash, nil
}

func (s Signature) withDefaults() (object.Signature, error) {
	sig := object.Signature{Name: s.Name, Email: s.Email, When: s.When}
	if sig.Name == "" {
		sig.Name = "dr-syncer"
	}
	if sig.Email == "" {
		sig.Email = "dr-syncer@localhost"
	}
	if sig.When.IsZero() {
		sig.When = time.Now()
	}
	for _, f := range []string{sig.Name, sig.Email} {
		if strings.ContainsAny(f, "<>\n\x00") {
			return object.Signature{}, fmt.Errorf("author %q: contains '<', '>', newline or NUL", f)
		}
	}
	return sig, nil
}

// headIs reports whether HEAD is a symbolic reference to name.
func (r *Repository) headIs(name plumbing.ReferenceName) (bool, error) {
	head, err := r.st.Reference(plumbing.HEAD)
	if err != nil {
		return false, fmt.Errorf("HEAD: %w", err)
	}
	return head.Type() == plumbing.SymbolicReference && head.Target() == name, nil
}

// moveBranch points name at hash if it still points at old (nil: if it
// still does not exist). It holds git's "<ref>.lock" so that git commands and
// other gitstore writers wait their turn, and go-git's check-and-set does the
// compare under the file lock other go-git writers use.
func (r *Repository) moveBranch(name plumbing.ReferenceName, old *plumbing.Reference, hash plumbing.Hash) error {
	refFile := filepath.Join(r.commonDir, filepath.FromSlash(string(name)))
	if err := os.MkdirAll(filepath.Dir(refFile), 0o755); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	lock, unown, err := r.createLock(refFile + ".lock")
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("update %s: %s.lock exists: another process is updating the branch (remove the file if none is): %w",
				name, name, storage.ErrReferenceHasChanged)
		}
		return fmt.Errorf("update %s: %w", name, err)
	}
	committed := false
	defer func() {
		if !committed {
			lock.Close()
			os.Remove(lock.Name())
			unown()
		}
	}()
	// Compare under the lock, then write the new value into the lock file
	// and rename it over the ref, as git does: the ref file is replaced
	// whole, so a process killed at any moment leaves the old value or the
	// new one, never an empty or half-written file (go-git's
	// CheckAndSetReference truncates the ref file in place).
	cur, err := r.tip(name)
	if err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	switch {
	case old == nil && cur != nil:
		return fmt.Errorf("update %s: created concurrently at %s: %w", name, cur.Hash(), storage.ErrReferenceHasChanged)
	case old != nil && (cur == nil || cur.Hash() != old.Hash()):
		now := "deleted"
		if cur != nil {
			now = "now at " + cur.Hash().String()
		}
		return fmt.Errorf("update %s from %s: %s: %w", name, old.Hash(), now, storage.ErrReferenceHasChanged)
	}
	if _, err := lock.WriteString(hash.String() + "\n"); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	if err := lock.Close(); err != nil {
		return fmt.Errorf("update %s: %w", name, err)
	}
	committed = true
	defer unown()
	if err := os.Rename(lock.Name(), refFile); err != nil {
		os.Remove(lock.Name())
		return fmt.Errorf("update %s: %w", name, err)
	}
	return nil
}

// planNode is the part of the directory tree a commit touches.
type planNode struct {
	dirs  map[string]*planNode
	files map[string]*Change
}

// planChanges validates changes and arranges them as a tree. A name may be
// both a file and a directory of the plan: replacing a file by a directory
// (delete "a", write "a/b") or the reverse is one commit.
func planChanges(changes []Change) (*planNode, error) {
	root := &planNode{}
	seen := make(map[string]bool, len(changes))
	for i := range changes {
		c := &changes[i]
		if err := validatePath(c.Path); err != nil {
			return nil, fmt.Errorf("path %q: %w", c.Path, err)
		}
		if seen[c.Path] {
			return nil, fmt.Errorf("path %q: given twice", c.Path)
		}
		seen[c.Path] = true
		n := root
		dir, base := splitPath(c.Path)
		if dir != "" {
			for seg := range strings.SplitSeq(dir, "/") {
				next := n.dirs[seg]
				if next == nil {
					next = &planNode{}
					if n.dirs == nil {
						n.dirs = map[string]*planNode{}
					}
					n.dirs[seg] = next
				}
				n = next
			}
		}
		if n.files == nil {
			n.files = map[string]*Change{}
		}
		n.files[base] = c
	}
	return root, nil
}

// fileUpdate is one path whose entry the commit changed.
type fileUpdate struct {
	path    string
	content []byte // nil: removed
	mode    filemode.FileMode
	hash    plumbing.Hash
}

type treeBuilder struct {
	r       *Repository
	objects []packObject // to store, in no particular order; may repeat
	updates []fileUpdate
}

// rewrite applies the planned changes under n to the tree h (zero: none) at
// directory dir ("" or ending in "/"), reading and encoding only the trees
// the plan touches. It returns the new tree's hash, zero when the directory
// ends up empty, and whether anything changed.
func (tb *treeBuilder) rewrite(ctx context.Context, h plumbing.Hash, n *planNode, dir string) (plumbing.Hash, bool, error) {
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, false, err
	}
	// Through treeMemo: the directories a commit rewrites are those of the
	// tip that the last build listed.
	old, err := tb.r.dirOf(dir, h, false)
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	entries := make(map[string]object.TreeEntry, len(old.entries)+len(n.files))
	for _, e := range old.entries {
		entries[e.Name] = e
	}
	changed := false
	files := slices.Sorted(maps.Keys(n.files))

	// Deletions first, then directories, then writes, so that a file can
	// become a directory and a directory a file in one commit.
	for _, name := range files {
		c := n.files[name]
		e, exists := entries[name]
		if c.Content != nil || !exists {
			continue
		}
		if e.Mode == filemode.Dir {
			return plumbing.ZeroHash, false, fmt.Errorf("path %q: is a directory", c.Path)
		}
		delete(entries, name)
		tb.updates = append(tb.updates, fileUpdate{path: c.Path, mode: e.Mode})
		changed = true
	}

	for _, name := range slices.Sorted(maps.Keys(n.dirs)) {
		e, exists := entries[name]
		if exists && e.Mode != filemode.Dir {
			return plumbing.ZeroHash, false, fmt.Errorf("path %q: %q is a file", firstPath(n.dirs[name], dir+name+"/"), dir+name)
		}
		sub, subChanged, err := tb.rewrite(ctx, e.Hash, n.dirs[name], dir+name+"/")
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		if !subChanged {
			continue
		}
		changed = true
		if sub.IsZero() {
			delete(entries, name)
		} else {
			entries[name] = object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: sub}
		}
	}

	for _, name := range files {
		c := n.files[name]
		if c.Content == nil {
			continue
		}
		e, exists := entries[name]
		if exists && e.Mode == filemode.Dir {
			return plumbing.ZeroHash, false, fmt.Errorf("path %q: is a directory", c.Path)
		}
		mode := filemode.Regular
		if exists && e.Mode == filemode.Executable {
			mode = filemode.Executable
		}
		bh := plumbing.ComputeHash(plumbing.BlobObject, c.Content)
		if exists && e.Hash == bh && e.Mode == mode {
			continue
		}
		tb.objects = append(tb.objects, packObject{typ: plumbing.BlobObject, hash: bh, data: c.Content})
		entries[name] = object.TreeEntry{Name: name, Mode: mode, Hash: bh}
		tb.updates = append(tb.updates, fileUpdate{path: c.Path, content: c.Content, mode: mode, hash: bh})
		changed = true
	}

	if !changed {
		return h, false, nil
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, true, nil
	}
	list := slices.Collect(maps.Values(entries))
	sort.Sort(object.TreeEntrySorter(list))
	nh, err := tb.encodeTree(list)
	return nh, true, err
}

func (tb *treeBuilder) encodeTree(entries []object.TreeEntry) (plumbing.Hash, error) {
	// As object.Tree.Encode writes it ("<octal mode> <name>\0<hash>" per
	// entry, sorted), into one buffer of the right size: Encode formats each
	// entry with fmt into a buffer that grows, and the copy out of it made
	// a commit that rewrites a directory of 1,000 files allocate ten times
	// its size.
	if !sort.IsSorted(object.TreeEntrySorter(entries)) {
		return plumbing.ZeroHash, object.ErrEntriesNotSorted
	}
	size := 0
	for _, e := range entries {
		if strings.IndexByte(e.Name, 0) >= 0 {
			return plumbing.ZeroHash, fmt.Errorf("malformed filename %q", e.Name)
		}
		size += 7 + len(e.Name) + 1 + len(e.Hash)
	}
	data := make([]byte, 0, size)
	for _, e := range entries {
		data = strconv.AppendUint(data, uint64(e.Mode), 8)
		data = append(data, ' ')
		data = append(data, e.Name...)
		data = append(data, 0)
		data = append(data, e.Hash[:]...)
	}
	h := plumbing.ComputeHash(plumbing.TreeObject, data)
	tb.objects = append(tb.objects, packObject{typ: plumbing.TreeObject, hash: h, data: data})
	return h, nil
}

// add encodes o (a commit) as an object to store and returns its hash.
func (tb *treeBuilder) add(o interface {
	Encode(plumbing.EncodedObject) error
}) (plumbing.Hash, error) {
	obj := &plumbing.MemoryObject{}
	if err := o.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	rd, err := obj.Reader()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	tb.objects = append(tb.objects, packObject{typ: obj.Type(), hash: obj.Hash(), data: data})
	return obj.Hash(), nil
}

// store writes the objects the repository does not have yet: as loose
// objects when they are few, as one pack (see writePack) from packThreshold
// on, after which the object storage is reopened to see the new pack.
func (tb *treeBuilder) store(ctx context.Context) error {
	var missing []packObject
	seen := make(map[plumbing.Hash]bool, len(tb.objects))
	for _, o := range tb.objects {
		if seen[o.hash] {
			continue
		}
		seen[o.hash] = true
		if tb.r.st.HasEncodedObject(o.hash) == nil {
			continue
		}
		missing = append(missing, o)
	}
	if len(missing) >= packThreshold {
		if err := writePack(ctx, filepath.Join(tb.r.commonDir, "objects"), missing); err != nil {
			return fmt.Errorf("store %d objects as a pack: %w", len(missing), err)
		}
		return tb.r.refresh()
	}
	objectsDir := filepath.Join(tb.r.commonDir, "objects")
	for _, o := range missing {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeLoose(objectsDir, o); err != nil {
			return fmt.Errorf("store %s %s: %w", o.typ, o.hash, err)
		}
	}
	return nil
}

// zlibWriters keeps zlib writers for writeLoose: a new one allocates and
// clears about a megabyte of compressor state, which was a fifth of a
// one-change commit at 100,000 files.
var zlibWriters = sync.Pool{New: func() any {
	zw, _ := zlib.NewWriterLevel(io.Discard, zlib.BestSpeed)
	return zw
}}

// writeLoose writes o as a loose object, as git does: zlib of "<type>
// <size>\0<content>" in objects/xx/yyyy…, written under a temporary name
// and renamed into place (an object already there has the same content).
// Compression is zlib's fastest level, as in packs (see compressObjects):
// at 100,000 files, compressing the directory trees a commit rewrites at
// the default level was a third of the commit.
func writeLoose(objectsDir string, o packObject) error {
	hex := o.hash.String()
	dir := filepath.Join(objectsDir, hex[:2])
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "tmp_obj_")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, min(len(o.data)+64, 1<<16))
	zw := zlibWriters.Get().(*zlib.Writer)
	defer func() {
		zw.Reset(io.Discard) // holds no file while pooled
		zlibWriters.Put(zw)
	}()
	zw.Reset(bw)
	fmt.Fprintf(zw, "%s %d\x00", o.typ, len(o.data))
	if _, err := zw.Write(o.data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	done = true
	if err := os.Rename(f.Name(), filepath.Join(dir, hex[2:])); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}

// firstPath names one path of the plan under n, for messages.
func firstPath(n *planNode, dir string) string {
	for _, name := range slices.Sorted(maps.Keys(n.files)) {
		return n.files[name].Path
	}
	for _, name := range slices.Sorted(maps.Keys(n.dirs)) {
		return firstPath(n.dirs[name], dir+name+"/")
	}
	return dir
}
