package controller

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

// Refs says where snapshots are committed and what the target follows.
type Refs struct {
	// Branch receives the snapshot commits.
	Branch string
	// Ref is what the target follows: a branch, a tag, or a commit that
	// pins it.
	Ref string
	// Base is set in review mode: the branch Branch starts from, and
	// starts from again once everything on it has been merged there (see
	// SnapshotOptions.Base).
	Base string
}

// Review reports whether snapshots wait for review on their own branch.
func (r Refs) Review() bool { return r.Base != "" }

// commitish matches what is a commit rather than a branch name: an
// abbreviated or full hexadecimal hash.
var commitish = regexp.MustCompile(`^[0-9a-f]{7,40}$`)

// RefsFor decides the branch and the followed ref from the mapping and the
// command line (empty: not given).
//
// Without review mode, snapshots go to branch (default main) and the
// target follows ref (default that branch). With spec.review.enabled,
// snapshots go to branch or else spec.review.branch (default
// snapshots/<source>), and the target follows ref or else main: a change
// reaches the target once a person merged it. A ref that is a commit pins
// the target there while snapshots go on; in review mode the snapshot
// branch then starts from main.
func RefsFor(cfg *policies.SyncConfig, branch, ref string) Refs {
	if rb := cfg.ReviewBranch(); rb != "" {
		r := Refs{Branch: cmp.Or(branch, rb), Ref: cmp.Or(ref, DefaultBranch), Base: cmp.Or(ref, DefaultBranch)}
		if commitish.MatchString(r.Base) {
			r.Base = DefaultBranch
		}
		return r
	}
	b := cmp.Or(branch, DefaultBranch)
	return Refs{Branch: b, Ref: cmp.Or(ref, b)}
}

// commit commits what build makes on the tip of branch and returns the
// commit. In a clone of a remote it goes through CommitAndPush: the commit
// is pushed, and when the push is rejected because the remote moved, build
// runs again on the remote's new tip. Otherwise it is one Commit on the
// local tip. Nothing to commit: an error satisfying
// errors.Is(err, gitstore.ErrNoChange).
func commit(ctx context.Context, repo *gitstore.Repository, branch string, build gitstore.BuildFunc) (plumbing.Hash, error) {
	if repo.Remote() != "" {
		return repo.CommitAndPush(ctx, branch, build)
	}
	tip, err := repo.Head(ctx, branch)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	changes, opts, err := build(ctx, tip)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if len(changes) == 0 {
		return plumbing.ZeroHash, fmt.Errorf("commit on %s: %w", branch, gitstore.ErrNoChange)
	}
	opts.Branch = branch
	return repo.Commit(ctx, changes, opts)
}

// startBranch prepares the review branch before a snapshot: it is created
// at base when it does not exist, and moved up to base when everything it
// holds has been merged there, so that each review starts from what the
// target follows (people's commits on base included) and shows only new
// snapshot commits. A branch with commits waiting for review stays where
// it is: the next snapshot commit adds to the same pull request. Merged
// means by content as well as by history: after a squash or rebase merge
// the branch's commits are not in base, but what they wrote is
// (mergedByContent), and the branch starts again from base.
func startBranch(ctx context.Context, repo *gitstore.Repository, branch, base string) error {
	baseTip, err := repo.Resolve(ctx, base)
	if err != nil {
		return fmt.Errorf("review branch %s: base %s: %w", branch, base, err)
	}
	tip, err := repo.Head(ctx, branch)
	if err != nil {
		return err
	}
	if tip == baseTip {
		return nil
	}
	if !tip.IsZero() {
		waiting, err := repo.Count(ctx, baseTip.String(), tip.String())
		if err != nil {
			return err
		}
		if waiting > 0 {
			merged, err := mergedByContent(ctx, repo, baseTip, tip)
			if err != nil || !merged {
				return err
			}
			_, err = repo.ResetBranch(ctx, branch, tip, baseTip.String())
			if errors.Is(err, storage.ErrReferenceHasChanged) {
				return nil // moved meanwhile: it has commits of its own now
			}
			return err
		}
	}
	_, err = repo.FastForward(ctx, branch, baseTip.String())
	if errors.Is(err, gitstore.ErrNotFastForward) {
		return nil // moved meanwhile: it has commits of its own now
	}
	return err
}

// mergedByContent reports whether base holds everything the snapshot
// commits of a review branch (tip) wrote: the same snapshots/ tree and the
// same generated overlays. A snapshot commit writes nothing else. When
// base changed those files again since, it says no: the branch stays, as
// if it still waited.
func mergedByContent(ctx context.Context, repo *gitstore.Repository, base, tip plumbing.Hash) (bool, error) {
	a, err := repo.TreeHash(ctx, base.String(), gitstore.SnapshotsDir)
	if err != nil {
		return false, err
	}
	b, err := repo.TreeHash(ctx, tip.String(), gitstore.SnapshotsDir)
	if err != nil || a != b {
		return false, err
	}
	generated := func(rev plumbing.Hash) (map[string]plumbing.Hash, error) {
		files, err := repo.Files(ctx, rev.String(), "overlays")
		maps.DeleteFunc(files, func(path string, _ plumbing.Hash) bool { return !strings.Contains(path, "/generated/") })
		return files, err
	}
	ga, err := generated(base)
	if err != nil {
		return false, err
	}
	gb, err := generated(tip)
	if err != nil {
		return false, err
	}
	return maps.Equal(ga, gb), nil
}

// Rollback reverts commit rev on the followed branch (opts.Ref) and
// applies the result. In a clone of a remote the revert is pushed; when the
// push is rejected because the remote moved, the same commit is reverted
// again on the new tip, and if it no longer applies there (a file it
// changed has changed again) nothing is written and the error wraps
// gitstore.ErrRevertConflict.
func Rollback(ctx context.Context, opts ApplyOptions, rev string) (plumbing.Hash, ApplyResult, error) {
	branch := cmp.Or(opts.Ref, DefaultBranch)
	revert, err := commit(ctx, opts.Repo, branch, func(ctx context.Context, tip plumbing.Hash) ([]gitstore.Change, gitstore.CommitOptions, error) {
		if tip.IsZero() {
			return nil, gitstore.CommitOptions{}, fmt.Errorf("branch %s has no commit", branch)
		}
		changes, msg, err := opts.Repo.RevertChanges(ctx, tip.String(), rev)
		return changes, gitstore.CommitOptions{Message: msg}, err
	})
	if err != nil {
		if errors.Is(err, gitstore.ErrRevertConflict) {
			return plumbing.ZeroHash, ApplyResult{}, fmt.Errorf("rollback of %s refused: it no longer applies on %s, nothing was committed: %w", rev, branch, err)
		}
		return plumbing.ZeroHash, ApplyResult{}, fmt.Errorf("rollback of %s on %s: %w", rev, branch, err)
	}
	// The revert may change the mapping itself (a failover undone).
	data, err := opts.Repo.ReadFile(ctx, revert.String(), policies.FileName)
	if err != nil {
		return revert, ApplyResult{}, err
	}
	if opts.Config, err = policies.Decode(policies.FileName, data); err != nil {
		return revert, ApplyResult{}, err
	}
	opts.Ref = revert.String()
	res, err := Apply(ctx, opts)
	return revert, res, err
}
