// Package gitstore owns the DR repository: writing an object set as one
// commit in time proportional to what changed, reading the tree at a ref,
// history, revert, and remote fetch and push with credentials that never
// reach logs or errors.
//
// It must not know Kubernetes semantics beyond the paths of the repository
// layout (snapshots/<source>/<namespace>/<group>.<kind>/<name>.yaml).
//
// # Writing
//
// [Init] creates a repository, [Open] opens one (bare or with a work tree).
// [Repository.Diff] compares the files a snapshot produced with the tree
// under a prefix at the tip of a branch, hashing content without writing it,
// and returns a [ChangeSet] whose Changes go straight to [Repository.Commit]:
//
//	cs, err := repo.Diff(ctx, "main", gitstore.SnapshotPrefix("prod"), files)
//	...
//	hash, err := repo.Commit(ctx, cs.Changes, gitstore.CommitOptions{Branch: "main", Message: msg})
//	if errors.Is(err, gitstore.ErrNoChange) { ... }
//
// Commit writes git objects directly (blobs, the trees along the changed
// paths, the commit) and moves the branch with a check-and-set, so its cost
// does not grow with the size of the repository and a concurrent writer makes
// it fail instead of losing a commit. In a repository with a work tree whose
// HEAD is the branch, it also updates the changed files and their index
// entries, and nothing else: people edit overlays in the same work tree.
// From 20,000 entries on (or with core.splitIndex=true) the index is kept
// split as git's core.splitIndex does it: a shared index written once and
// an index file holding only what changed since, so that a commit does not
// rewrite an 11 MB index at 100,000 files (see splitindex.go for the rules;
// git reads and keeps such an index without any setting, go-git cannot
// read it; core.splitIndex=false turns it off).
//
// # Reading
//
// [Repository.Head] gives the tip of a branch, [Repository.Files] the files
// under a prefix at any revision with their blob hashes, and
// [Repository.ReadFile] one file's content.
//
// # Remotes
//
// [Clone] makes (or reopens) a clone of a [Remote] in a cache directory with
// a work tree; the rest of the package works on it unchanged.
// [Repository.Fetch] updates the remote-tracking branches and fast-forwards
// local branches without commits of their own; [Repository.Push] pushes a
// branch and fails with [ErrPushRejected] when the remote moved.
// [Repository.CommitAndPush] is the writer's loop: build the changes on the
// tip, commit, push, and on a rejection fetch, reset the branch to the
// remote's tip and build again, so that snapshot commits (derived data) are
// rebuilt on top of whatever others pushed, never merged:
//
//	repo, err := gitstore.Clone(ctx, gitstore.Remote{URL: url, Auth: auth}, cacheDir)
//	...
//	hash, err := repo.CommitAndPush(ctx, "main", func(ctx context.Context, tip plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
//		cs, err := repo.Diff(ctx, "main", gitstore.SnapshotPrefix("prod"), files)
//		return cs.Changes, gitstore.CommitOptions{Message: msg}, err
//	})
//
// [IsURL] tells a URL from a directory, [CacheDir] names a remote's clone
// under a cache root (by a hash of the URL without user information), and
// [Repository.Remote] gives the URL a clone came from. For review branches,
// [Repository.Count] counts the commits of one ref that another lacks and
// [Repository.FastForward] moves (or creates) a branch forward only;
// [Repository.RevertChanges] is [Repository.Revert] without the commit, for
// a BuildFunc that reverts the same commit again on a new tip.
//
// [Auth] holds https basic or token credentials, or an ssh key with a
// pinned known_hosts; [AuthFromEnv], [AuthFromDir] and [AuthFromSecretData]
// load it. Credentials stay in memory: they are never written to the cache,
// and errors and String methods show URLs without user information.
//
// # Layout
//
// [ObjectPath] and [ParseObjectPath] map an [ObjectID] of a source cluster to
// its file under [SnapshotPrefix] and back. Names are percent-encoded so that
// no object name can leave its directory or collide with another.
package gitstore
