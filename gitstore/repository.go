package gitstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Repository is a DR repository on disk, bare or with a work tree. It is safe
// for concurrent use; its operations run one at a time. Other processes may
// use the same repository: Commit detects a branch moved under it.
type Repository struct {
	mu sync.Mutex

	git   *git.Repository
	st    storage.Storer
	packs []string // the packs st was opened with; see refresh

	workTree  string // absolute; "" for a bare repository
	gitDir    string // holds HEAD and the index
	commonDir string // holds refs and objects (differs from gitDir in linked work trees)

	idx indexCache // the index Commit last wrote, if it has a work tree

	trees treeMemo // the directories the last walks read

	// beforeRefUpdate, when set by a test, runs after Commit has read the
	// tip and written its objects, just before it moves the branch.
	beforeRefUpdate func()

	// remote is the remote Clone made the repository from; nil for Init
	// and Open. See remote.go.
	remote *remote
}

// Init creates a new repository with a work tree in dir (created if missing)
// whose HEAD points at refs/heads/main, with no commit yet. It is an error if
// dir already holds a repository, bare or not.
func Init(ctx context.Context, dir string) (*Repository, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: init %s: %w", dir, err) }
	if err := ctx.Err(); err != nil {
		return nil, fail(err)
	}
	if _, err := git.PlainOpen(dir); err == nil {
		return nil, fail(git.ErrRepositoryAlreadyExists)
	}
	if _, err := os.Lstat(filepath.Join(dir, git.GitDirName)); err == nil {
		return nil, fail(git.ErrRepositoryAlreadyExists)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fail(err)
	}
	_, err := git.PlainInitWithOptions(dir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		return nil, fail(err)
	}
	r, err := open(dir)
	if err != nil {
		return nil, fail(err)
	}
	return r, nil
}

// Open opens the existing repository in dir, bare or with a work tree (also a
// linked work tree made by `git worktree add`).
func Open(ctx context.Context, dir string) (*Repository, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gitstore: open %s: %w", dir, err)
	}
	r, err := open(dir)
	if err != nil {
		return nil, fmt.Errorf("gitstore: open %s: %w", dir, err)
	}
	if err := r.recoverOnOpen(ctx); err != nil {
		return nil, fmt.Errorf("gitstore: open %s: %w", dir, err)
	}
	return r, nil
}

func open(dir string) (*Repository, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	g, err := plainOpen(abs)
	if err != nil {
		return nil, err
	}
	r := &Repository{git: g, st: g.Storer, gitDir: abs}
	wt, err := g.Worktree()
	switch {
	case errors.Is(err, git.ErrIsBareRepository):
	case err != nil:
		return nil, err
	default:
		r.workTree = wt.Filesystem.Root()
		if r.gitDir, err = gitDirOf(r.workTree); err != nil {
			return nil, err
		}
	}
	r.commonDir = r.gitDir
	if b, err := os.ReadFile(filepath.Join(r.gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(r.gitDir, c)
		}
		r.commonDir = c
	}
	if r.packs, err = r.listPacks(); err != nil {
		return nil, err
	}
	return r, nil
}

// RefsDir is the directory that holds the repository's refs (and
// packed-refs): the git directory, or its common directory for a linked work
// tree. A watcher of new commits watches it.
func (r *Repository) RefsDir() string { return r.commonDir }

// gitDirOf finds the git directory of a work tree: ".git" itself, or where a
// ".git" file ("gitdir: <path>") points.
func gitDirOf(workTree string) (string, error) {
	dotGit := filepath.Join(workTree, git.GitDirName)
	fi, err := os.Lstat(dotGit)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return dotGit, nil
	}
	b, err := os.ReadFile(dotGit)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	gd, ok := strings.CutPrefix(strings.TrimSpace(line), "gitdir: ")
	if !ok {
		return "", fmt.Errorf("%s: no gitdir line", dotGit)
	}
	if !filepath.IsAbs(gd) {
		gd = filepath.Join(workTree, gd)
	}
	return gd, nil
}

// Head returns the commit at the tip of branch, or plumbing.ZeroHash and no
// error when the branch has no commit yet.
func (r *Repository) Head(ctx context.Context, branch string) (plumbing.Hash, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: head of %s: %w", branch, err) }
	name, err := branchRef(branch)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if err := ctx.Err(); err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, err := r.tip(name)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if ref == nil {
		return plumbing.ZeroHash, nil
	}
	return ref.Hash(), nil
}

// tip returns the reference of a branch, nil if it does not exist.
func (r *Repository) tip(name plumbing.ReferenceName) (*plumbing.Reference, error) {
	ref, err := r.st.Reference(name)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if ref.Type() != plumbing.HashReference {
		return nil, fmt.Errorf("%s is a symbolic reference", name)
	}
	return ref, nil
}

// refresh reopens the object storage when the set of packs changed since it
// was opened: go-git reads the list of packs once, so after a `git gc` or
// `git repack` by someone else it would look for objects in packs that no
// longer exist and never see the new ones. Listing one directory per
// operation is cheap.
func (r *Repository) refresh() error {
	packs, err := r.listPacks()
	if err != nil || slices.Equal(packs, r.packs) {
		return err
	}
	g, err := plainOpen(r.workTreeOrGitDir())
	if err != nil {
		return fmt.Errorf("reopen after repack: %w", err)
	}
	r.git, r.st, r.packs = g, g.Storer, packs
	return nil
}

// objectCacheSize and blobCacheSize bound go-git's cache of the objects it
// read, whose default (96 MiB for all kinds of objects) a first build of a
// large snapshot filled with object files read once each (an object goes
// into the cache as it is read, and readBlob copies it out): about 30 MiB
// held for good with 10,000 objects, and more at the peak. Trees and
// commits, read again at every commit and build, keep a cache of their own
// that blobs cannot evict; blobs keep a small one, for the bases of the
// deltas of a packed repository. Both are small: what a commit or a delta
// build reads again is the trees along the changed paths of the newest
// commits (about 1 MiB with 10,000 objects in 10 namespaces), and a cache
// holds more than its bound (an object's buffer grows by doubling): 8 and 4
// MiB held 16 MiB for good in the lag benchmark (controller/run_bench_test.go,
// 10,000 objects), without a measurable gain in lag over 2 and 1.
const (
	objectCacheSize = 2 * cache.MiByte
	blobCacheSize   = 1 * cache.MiByte
)

// objectCache is go-git's object cache split in two LRUs: blobs, and the
// rest.
type objectCache struct{ blobs, rest cache.Object }

func newObjectCache() *objectCache {
	return &objectCache{blobs: cache.NewObjectLRU(blobCacheSize), rest: cache.NewObjectLRU(objectCacheSize)}
}

func (c *objectCache) of(t plumbing.ObjectType) cache.Object {
	if t == plumbing.BlobObject {
		return c.blobs
	}
	return c.rest
}

func (c *objectCache) Put(o plumbing.EncodedObject) { c.of(o.Type()).Put(o) }

func (c *objectCache) Get(h plumbing.Hash) (plumbing.EncodedObject, bool) {
	if o, ok := c.rest.Get(h); ok {
		return o, true
	}
	return c.blobs.Get(h)
}

func (c *objectCache) Clear() {
	c.blobs.Clear()
	c.rest.Clear()
}

// plainOpen opens the repository at path as git.PlainOpenWithOptions does
// (with the common directory of a linked work tree), with objectCache for
// its object cache.
func plainOpen(path string) (*git.Repository, error) {
	g, err := git.PlainOpenWithOptions(path, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
	if err != nil {
		return nil, err
	}
	dot, ok := g.Storer.(*filesystem.Storage)
	if !ok {
		return g, nil
	}
	st := filesystem.NewStorage(dot.Filesystem(), newObjectCache())
	wt, err := g.Worktree()
	switch {
	case errors.Is(err, git.ErrIsBareRepository):
		return git.Open(st, nil)
	case err != nil:
		return nil, err
	}
	return git.Open(st, wt.Filesystem)
}

func (r *Repository) listPacks() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(r.commonDir, "objects", "pack"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var packs []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".idx") {
			packs = append(packs, e.Name())
		}
	}
	return packs, nil
}

func (r *Repository) workTreeOrGitDir() string {
	if r.workTree != "" {
		return r.workTree
	}
	return r.gitDir
}
