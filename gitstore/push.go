package gitstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"
)

// Push pushes branch to the remote branch of the same name, never forcing.
// When the remote branch has commits the local one does not have, the error
// wraps ErrPushRejected. A branch the remote-tracking branch says is
// already there is not pushed again. The repository is locked for the
// whole push.
func (r *Repository) Push(ctx context.Context, branch string) error {
	c := r.remote
	if c == nil {
		return fmt.Errorf("gitstore: push %s: %w", branch, ErrNoRemote)
	}
	name, err := branchRef(branch)
	if err != nil {
		return c.wrap(err, "gitstore: push %s to %s", branch, c.display)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.push(ctx, name); err != nil {
		return c.wrap(err, "gitstore: push %s to %s", branch, c.display)
	}
	return nil
}

func trackingRef(branch plumbing.ReferenceName) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, branch.Short())
}

// push pushes one branch. r.mu is held.
func (r *Repository) push(ctx context.Context, name plumbing.ReferenceName) error {
	local, err := r.tip(name)
	if err != nil {
		return err
	}
	if local == nil {
		return errors.New("branch has no commit")
	}
	if t, err := r.tip(trackingRef(name)); err != nil {
		return err
	} else if t != nil && t.Hash() == local.Hash() {
		return nil
	}
	rem, err := r.git.Remote(remoteName)
	if err != nil {
		return err
	}
	spec := config.RefSpec(name.String() + ":" + name.String())
	err = rem.PushContext(ctx, &git.PushOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{spec},
		Auth:       r.remote.auth,
		CABundle:   r.remote.caBundle,
	})
	switch {
	case err == nil:
	case errors.Is(err, git.NoErrAlreadyUpToDate):
		// The remote had it already; record that as a fetch would.
		if err := r.st.SetReference(plumbing.NewHashReference(trackingRef(name), local.Hash())); err != nil {
			return err
		}
	case ctx.Err() != nil:
		return err
	default:
		// go-git reports a rejection as text, and receive-pack may reject
		// for other reasons (a hook, a lock): look at the remote branch.
		// A push that lost the race for the ref's lock to another push
		// sees the branch unmoved until that push completes: look again
		// a few times before calling it another failure.
		for wait := 20 * time.Millisecond; ; wait *= 2 {
			remoteTip, moved, lerr := r.remoteMoved(ctx, rem, name, local.Hash())
			if lerr == nil && moved {
				return &pushRejectedError{remoteTip: remoteTip, err: err}
			}
			if lerr == nil && remoteTip == local.Hash() {
				// Another writer pushed the very same commit (the same
				// snapshot on the same parent in the same second): it is
				// there, which is what this push was for.
				if err := r.st.SetReference(plumbing.NewHashReference(trackingRef(name), remoteTip)); err != nil {
					return err
				}
				return r.refresh()
			}
			if lerr != nil || wait > 500*time.Millisecond {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
		}
	}
	return r.refresh()
}

// remoteMoved lists the remote's branches and reports whether the remote
// branch is at a commit that the local one does not contain.
func (r *Repository) remoteMoved(ctx context.Context, rem *git.Remote, name plumbing.ReferenceName, local plumbing.Hash) (plumbing.Hash, bool, error) {
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: r.remote.auth, CABundle: r.remote.caBundle})
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	for _, ref := range refs {
		if ref.Name() != name || ref.Type() != plumbing.HashReference {
			continue
		}
		h := ref.Hash()
		if h == local {
			return h, false, nil
		}
		if r.st.HasEncodedObject(h) != nil {
			return h, true, nil // a commit this repository has never fetched
		}
		contained, err := r.isAncestor(ctx, h, local)
		return h, !contained, err
	}
	return plumbing.ZeroHash, false, nil
}

type pushRejectedError struct {
	remoteTip plumbing.Hash
	err       error
}

func (e *pushRejectedError) Error() string {
	return fmt.Sprintf("%v (remote branch at %s): %v", ErrPushRejected, e.remoteTip, e.err)
}

func (e *pushRejectedError) Is(target error) bool {
	return target == ErrPushRejected || target == git.ErrNonFastForwardUpdate
}

func (e *pushRejectedError) Unwrap() error { return e.err }

// BuildFunc computes the changes of a commit on top of tip (zero when the
// branch has no commit yet), typically with Diff. It may be called more
// than once by one CommitAndPush, each time on a newer tip, and must build
// from tip alone: what it returned for an older tip is void.
// CommitOptions.Branch may be left empty.
type BuildFunc func(ctx context.Context, tip plumbing.Hash) ([]Change, CommitOptions, error)

// pushAttempts bounds CommitAndPush: each rejected push costs a fetch and a
// rebuild, and a remote that moves this often has a writer in a loop.
const pushAttempts = 10

// backoff and maxBackoff bound the random wait before a new attempt.
const backoff, maxBackoff = 25 * time.Millisecond, time.Second

// CommitAndPush commits what build produces on the tip of branch and pushes
// it. When the push is rejected because the remote branch moved, it fetches,
// resets the local branch to the remote's tip (the commit it made is
// derived data, rebuilt rather than merged: a snapshot describes the source
// as it is now, whatever came before), calls build again on that tip, and
// tries again, up to a bounded number of attempts with a random backoff
// between them. Nobody's commits are
// lost: whatever others pushed stays in history below the rebuilt commit.
// Local commits on branch that never reached the remote are dropped by the
// reset in the same way, so the branch must hold only derived commits.
//
// It returns the commit pushed. When build changes nothing, it pushes what
// the local branch may hold unpushed and returns an error satisfying
// errors.Is(err, ErrNoChange). A push that fails for another reason leaves
// the commit on the local branch, where the next CommitAndPush or Push
// publishes it, and returns its hash with the error.
//
// Writers race optimistically: one that pushes in a tight loop can keep a
// slower one from ever landing. Writers are expected to wait between
// commits (a schedule, a debounce), as dr-syncer's modes do.
func (r *Repository) CommitAndPush(ctx context.Context, branch string, build BuildFunc) (plumbing.Hash, error) {
	c := r.remote
	if c == nil {
		return plumbing.ZeroHash, fmt.Errorf("gitstore: commit and push %s: %w", branch, ErrNoRemote)
	}
	fail := func(err error) error { return c.wrap(err, "gitstore: commit and push %s to %s", branch, c.display) }
	name, err := branchRef(branch)
	if err != nil {
		return plumbing.ZeroHash, fail(err)
	}
	var lastErr error
	for attempt := 1; attempt <= pushAttempts; attempt++ {
		if attempt > 1 {
			// Writers that collided would collide again in lock step:
			// wait a random time, up to twice as long after each attempt,
			// and only then fetch, so that the rebuild starts from the
			// newest tip.
			d := time.Duration(rand.Int64N(int64(min(backoff<<(attempt-2), maxBackoff))))
			select {
			case <-ctx.Done():
				return plumbing.ZeroHash, fail(ctx.Err())
			case <-time.After(d):
			}
			if err := r.resetToRemote(ctx, name); err != nil {
				return plumbing.ZeroHash, fail(err)
			}
		}
		hash, err := r.commitAndPushOnce(ctx, name, build)
		switch {
		case err == nil:
			return hash, nil
		case errors.Is(err, storage.ErrReferenceHasChanged), errors.Is(err, ErrPushRejected):
			// Rejected, or the local branch moved between build and commit
			// (a Fetch, another writer on this clone): build again on the
			// remote's tip.
			lastErr = err
		default:
			return hash, fail(err)
		}
	}
	return plumbing.ZeroHash, fail(fmt.Errorf("gave up after %d attempts, the branch keeps moving: %w", pushAttempts, lastErr))
}

// commitAndPushOnce builds on the local tip, commits on exactly that tip and
// pushes.
func (r *Repository) commitAndPushOnce(ctx context.Context, name plumbing.ReferenceName, build BuildFunc) (plumbing.Hash, error) {
	tip, err := r.Head(ctx, name.Short())
	if err != nil {
		return plumbing.ZeroHash, err
	}
	changes, opts, err := build(ctx, tip)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("build on %s: %w", tip, err)
	}
	if opts.Branch == "" {
		opts.Branch = name.Short()
	}
	if opts.Branch != name.Short() {
		return plumbing.ZeroHash, fmt.Errorf("build returned branch %q", opts.Branch)
	}
	hash, cerr := r.commitOn(ctx, tip, changes, opts)
	if cerr != nil && !errors.Is(cerr, ErrNoChange) {
		return hash, cerr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if cerr != nil && tip.IsZero() {
		return plumbing.ZeroHash, cerr // nothing to commit and nothing to push
	}
	if err := r.push(ctx, name); err != nil {
		return hash, err
	}
	if cerr != nil {
		return plumbing.ZeroHash, cerr
	}
	return hash, nil
}

// commitOn is Commit with one more condition: the branch must still be at
// parent (zero: not exist) when the commit is made, or the error satisfies
// errors.Is(err, storage.ErrReferenceHasChanged). The changes were built
// for parent; on any other tip they would be wrong.
func (r *Repository) commitOn(ctx context.Context, parent plumbing.Hash, changes []Change, opts CommitOptions) (plumbing.Hash, error) {
	refName, err := branchRef(opts.Branch)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if opts.Message == "" {
		return plumbing.ZeroHash, errors.New("empty message")
	}
	sig, err := opts.Author.withDefaults()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	plan, err := planChanges(changes)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.refresh(); err != nil {
		return plumbing.ZeroHash, err
	}
	cur, err := r.tip(refName)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if curHash := hashOf(cur); curHash != parent {
		return plumbing.ZeroHash, fmt.Errorf("%s moved from %s to %s: %w", refName, parent, curHash, storage.ErrReferenceHasChanged)
	}
	pc, err := r.prepare(ctx, refName, plan, sig, opts.Message)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return r.publish(ctx, pc)
}

func hashOf(ref *plumbing.Reference) plumbing.Hash {
	if ref == nil {
		return plumbing.ZeroHash
	}
	return ref.Hash()
}

// resetToRemote fetches and points the local branch at its remote-tracking
// branch, dropping the local commits that are not there; other branches are
// fast-forwarded as Fetch does.
func (r *Repository) resetToRemote(ctx context.Context, name plumbing.ReferenceName) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fetch(ctx); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	remoteTip, err := r.tip(trackingRef(name))
	if err != nil {
		return err
	}
	if remoteTip == nil {
		return fmt.Errorf("reset %s: the remote has no such branch any more", name.Short())
	}
	local, err := r.tip(name)
	if err != nil {
		return err
	}
	if hashOf(local) != remoteTip.Hash() {
		if err := r.moveAndCheckout(ctx, name, local, remoteTip.Hash()); err != nil {
			return fmt.Errorf("reset %s to %s: %w", name.Short(), remoteTip.Hash(), err)
		}
	}
	return r.fastForward(ctx, name)
}
