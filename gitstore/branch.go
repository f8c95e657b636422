package gitstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
)

// IsURL reports whether location names a remote (https://, http://, ssh://,
// file:// or the scp-like [user@]host:path) rather than a directory. A
// path with a slash before its first colon, or no colon at all, is a
// directory, as git reads it.
func IsURL(location string) bool {
	if i := strings.Index(location, "://"); i > 0 {
		return true
	}
	colon := strings.IndexByte(location, ':')
	if colon <= 0 {
		return false
	}
	if slash := strings.IndexByte(location, '/'); slash >= 0 && slash < colon {
		return false
	}
	// A Windows drive letter (C:\...) is a path.
	return colon > 1
}

// CacheDir returns the directory under root where Clone keeps the clone of
// rm: one per URL, named by a hash of the URL without user information, so
// that neither a credential nor a path separator of the URL reaches the
// file system.
func CacheDir(root string, rm Remote) string {
	sum := sha256.Sum256([]byte(rm.String()))
	return filepath.Join(root, hex.EncodeToString(sum[:12]))
}

// Remote returns the URL of the remote the repository was cloned from,
// without user information, or "" for a repository made by Init or Open.
func (r *Repository) Remote() string {
	if r.remote == nil {
		return ""
	}
	return r.remote.display
}

// Count returns how many commits are reachable from rev and not from base:
// what `git rev-list --count base..rev` prints. Its cost grows with the
// history of rev down to where it meets base.
func (r *Repository) Count(ctx context.Context, base, rev string) (int, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: count %s..%s: %w", base, rev, err) }
	from, err := r.Resolve(ctx, rev)
	if err != nil {
		return 0, fail(err)
	}
	stop, err := r.Resolve(ctx, base)
	if err != nil {
		return 0, fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// Mark what base reaches first (walking no further than needed is not
	// possible without generation numbers), then count the rest.
	inBase, err := r.reachable(ctx, stop, nil)
	if err != nil {
		return 0, fail(err)
	}
	n := 0
	if _, err := r.reachable(ctx, from, func(h plumbing.Hash) bool {
		if inBase[h] {
			return false
		}
		n++
		return true
	}); err != nil {
		return 0, fail(err)
	}
	return n, nil
}

// reachable walks the history from h (all parents) and returns the commits
// seen; visit, when set, decides whether to walk on past a commit. r.mu is
// held.
func (r *Repository) reachable(ctx context.Context, h plumbing.Hash, visit func(plumbing.Hash) bool) (map[plumbing.Hash]bool, error) {
	seen := map[plumbing.Hash]bool{}
	queue := []plumbing.Hash{h}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h := queue[0]
		queue = queue[1:]
		if h.IsZero() || seen[h] {
			continue
		}
		seen[h] = true
		if visit != nil && !visit(h) {
			continue
		}
		c, err := r.commitObject(h)
		if err != nil {
			return nil, err
		}
		queue = append(queue, c.ParentHashes...)
	}
	return seen, nil
}

// ResetBranch points branch at the commit rev names, whatever it holds,
// but only if it is still at expect (the zero hash: it does not exist);
// otherwise the error wraps storage.ErrReferenceHasChanged. It is for a
// branch whose commits are known to be in rev by content — squash-merged,
// say — so that dropping them loses nothing. The work tree follows as for
// FastForward. It does not push.
func (r *Repository) ResetBranch(ctx context.Context, branch string, expect plumbing.Hash, rev string) (plumbing.Hash, error) {
	return r.moveTo(ctx, branch, rev, "reset", func(cur *plumbing.Reference, to plumbing.Hash) (bool, error) {
		var at plumbing.Hash
		if cur != nil {
			at = cur.Hash()
		}
		if at != expect {
			return false, fmt.Errorf("%s is at %s, not %s: %w", branch, at, expect, storage.ErrReferenceHasChanged)
		}
		return at == to, nil
	})
}

// moveTo points branch at the commit rev names, the work tree following,
// if allow, given the branch's tip (nil: no branch) and that commit, says
// so: done, the branch stays where it is; an error, the move is refused.
func (r *Repository) moveTo(ctx context.Context, branch, rev, verb string, allow func(cur *plumbing.Reference, to plumbing.Hash) (done bool, err error)) (plumbing.Hash, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: %s %s to %s: %w", verb, branch, rev, err) }
	name, err := branchRef(branch)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	to, err := r.Resolve(ctx, rev)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, err := r.tip(name)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	done, err := allow(cur, to)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	if done {
		return to, nil
	}
	if err := r.moveAndCheckout(ctx, name, cur, to); err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	return to, nil
}

// ErrNotFastForward is returned (wrapped) by FastForward when the branch
// has commits the new tip does not contain.
var ErrNotFastForward = errors.New("not a fast-forward")

// FastForward points branch at the commit rev names, creating the branch
// when it does not exist. A branch with commits that commit does not
// contain is left alone and the error wraps ErrNotFastForward. The work
// tree follows as for Fetch when the branch is checked out. It does not
// push: Push (or CommitAndPush) publishes the branch.
func (r *Repository) FastForward(ctx context.Context, branch, rev string) (plumbing.Hash, error) {
	return r.moveTo(ctx, branch, rev, "fast-forward", func(cur *plumbing.Reference, to plumbing.Hash) (bool, error) {
		if cur == nil {
			return false, nil
		}
		if cur.Hash() == to {
			return true, nil
		}
		ff, err := r.isAncestor(ctx, cur.Hash(), to)
		if err != nil {
			return false, err
		}
		if !ff {
			return false, fmt.Errorf("%s is at %s: %w", branch, cur.Hash(), ErrNotFastForward)
		}
		return false, nil
	})
}
