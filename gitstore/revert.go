package gitstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrRevertConflict is returned by Revert when a file that the reverted
// commit changed has changed again since: undoing it would lose that later
// change.
var ErrRevertConflict = errors.New("revert conflict")

// Revert makes a new commit on branch that undoes what commit changed, like
// `git revert --no-edit`: each file the commit added is removed, each file
// it changed or removed gets its content from before the commit back. When
// the tip holds another content for one of those files than the commit left
// there, Revert writes nothing and returns an error wrapping
// ErrRevertConflict that names the files. A commit with more than one
// parent (a merge) is refused.
func (r *Repository) Revert(ctx context.Context, branch, rev string, opts CommitOptions) (plumbing.Hash, error) {
	changes, msg, err := r.RevertChanges(ctx, branch, rev)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if opts.Message == "" {
		opts.Message = msg
	}
	opts.Branch = branch
	return r.Commit(ctx, changes, opts)
}

// RevertChanges returns the changes that undo commit rev on top of the
// commit onto names (a branch, or the tip CommitAndPush hands a BuildFunc),
// and the message `git revert` would write, without committing: Revert
// commits them, and a writer to a remote gives them to CommitAndPush so that
// a revert whose push is rejected is made again on the new tip. Errors are
// Revert's: ErrRevertConflict when a file changed again since rev, ErrNoChange
// when there is nothing to undo, and a merge commit is refused.
func (r *Repository) RevertChanges(ctx context.Context, onto, rev string) ([]Change, string, error) {
	fail := func(err error) error { return fmt.Errorf("gitstore: revert %s on %s: %w", rev, onto, err) }
	target, parent, err := r.commitAndParent(ctx, rev)
	if err != nil {
		return nil, "", fail(err)
	}
	after, err := r.Files(ctx, target.String(), "")
	if err != nil {
		return nil, "", fail(err)
	}
	before := map[string]plumbing.Hash{}
	if !parent.IsZero() {
		if before, err = r.Files(ctx, parent.String(), ""); err != nil {
			return nil, "", fail(err)
		}
	}
	tip, err := r.Files(ctx, onto, "")
	if err != nil {
		return nil, "", fail(err)
	}

	var changes []Change
	var conflicts []string
	paths := map[string]bool{}
	for p := range after {
		paths[p] = true
	}
	for p := range before {
		paths[p] = true
	}
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		a, inAfter := after[p]
		b, inBefore := before[p]
		if inAfter == inBefore && a == b {
			continue // not touched by the commit
		}
		if t, inTip := tip[p]; inTip != inAfter || t != a {
			conflicts = append(conflicts, p)
			continue
		}
		if !inBefore {
			changes = append(changes, Change{Path: p}) // added by the commit: remove
			continue
		}
		content, err := r.ReadFile(ctx, parent.String(), p)
		if err != nil {
			return nil, "", fail(err)
		}
		changes = append(changes, Change{Path: p, Content: content})
	}
	if len(conflicts) > 0 {
		return nil, "", fail(fmt.Errorf("%w: changed again since: %s", ErrRevertConflict, strings.Join(conflicts, ", ")))
	}
	if len(changes) == 0 {
		return nil, "", fail(ErrNoChange)
	}
	subject, err := r.subject(target)
	if err != nil {
		return nil, "", fail(err)
	}
	return changes, fmt.Sprintf("Revert %q\n\nThis reverts commit %s.\n", subject, target), nil
}

// commitAndParent resolves rev and its only parent (zero for a root commit).
func (r *Repository) commitAndParent(ctx context.Context, rev string) (plumbing.Hash, plumbing.Hash, error) {
	h, err := r.Resolve(ctx, rev)
	if err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return plumbing.ZeroHash, plumbing.ZeroHash, fmt.Errorf("commit %s: %w", h, err)
	}
	switch len(c.ParentHashes) {
	case 0:
		return h, plumbing.ZeroHash, nil
	case 1:
		return h, c.ParentHashes[0], nil
	default:
		return plumbing.ZeroHash, plumbing.ZeroHash, fmt.Errorf("commit %s is a merge: revert one of the commits it merged", h)
	}
}

func (r *Repository) subject(h plumbing.Hash) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := object.GetCommit(r.st, h)
	if err != nil {
		return "", fmt.Errorf("commit %s: %w", h, err)
	}
	subject, _, _ := strings.Cut(c.Message, "\n")
	return subject, nil
}
