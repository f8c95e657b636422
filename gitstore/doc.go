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
//
// # Reading
//
// [Repository.Head] gives the tip of a branch, [Repository.Files] the files
// under a prefix at any revision with their blob hashes, and
// [Repository.ReadFile] one file's content.
//
// # Layout
//
// [ObjectPath] and [ParseObjectPath] map an [ObjectID] of a source cluster to
// its file under [SnapshotPrefix] and back. Names are percent-encoded so that
// no object name can leave its directory or collide with another.
package gitstore
