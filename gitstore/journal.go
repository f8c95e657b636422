package gitstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// journalFile, in the git directory, records a work tree update in
// progress: the trees before and after, written before the branch moves and
// removed once the files and the index match the new commit. A process
// killed in between (after the branch moved, before or while the files and
// index were written) leaves it behind, and the next writer finishes the
// update first: without it, the paths of the interrupted commit would stay
// stale in the work tree and index for good, since later commits update only
// the paths they change.
const journalFile = "dr-syncer-worktree"

func (r *Repository) journalPath() string { return filepath.Join(r.gitDir, journalFile) }

// beginWorkTreeUpdate records that the work tree goes from tree from to tree
// to. Call it before the branch moves.
func (r *Repository) beginWorkTreeUpdate(from, to plumbing.Hash) error {
	tmp := r.journalPath() + ".tmp"
	if err := os.WriteFile(tmp, []byte(from.String()+" "+to.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("work tree journal: %w", err)
	}
	if err := os.Rename(tmp, r.journalPath()); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("work tree journal: %w", err)
	}
	return nil
}

// endWorkTreeUpdate removes the record once the work tree and index match.
func (r *Repository) endWorkTreeUpdate() error {
	if err := os.Remove(r.journalPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("work tree journal: %w", err)
	}
	return nil
}

// recoverWorkTree finishes a work tree update that a killed process left
// (see journalFile), for the branch ref checked out in the work tree. r.mu
// is held; the caller has not taken the index lock.
func (r *Repository) recoverWorkTree(ctx context.Context, ref plumbing.ReferenceName) error {
	data, err := os.ReadFile(r.journalPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("work tree journal: %w", err)
	}
	var from, to plumbing.Hash
	fields := strings.Fields(string(data))
	if len(fields) != 2 || !plumbing.IsHash(fields[0]) || !plumbing.IsHash(fields[1]) {
		return fmt.Errorf("work tree journal %s: unreadable; check the work tree with git status, then remove it", r.journalPath())
	}
	from, to = plumbing.NewHash(fields[0]), plumbing.NewHash(fields[1])
	tip, err := r.tip(ref)
	if err != nil {
		return err
	}
	var tipTree plumbing.Hash
	if tip != nil {
		if tipTree, err = r.treeOf(tip.Hash()); err != nil {
			return err
		}
	}
	switch tipTree {
	case from:
		// Killed before the branch moved: nothing was written.
		return r.endWorkTreeUpdate()
	case to:
	default:
		return fmt.Errorf("work tree journal %s: %s moved on since an interrupted update (%s to %s); make the work tree match it (git checkout -f), then remove the journal", r.journalPath(), ref, from, to)
	}
	var updates []fileUpdate
	if err := r.diffTrees(ctx, from, to, "", &updates); err != nil {
		return err
	}
	idx, err := r.lockIndex()
	if err != nil {
		return err
	}
	defer idx.release()
	cur, err := r.readIndex(idx, from)
	if err != nil {
		return err
	}
	if err := r.updateWorkTree(idx, cur, updates); err != nil {
		return fmt.Errorf("finishing an interrupted work tree update: %w", err)
	}
	return r.endWorkTreeUpdate()
}

// recoverOnOpen finishes, when a repository is opened, a work tree update
// that a killed process left: a reader must not see a work tree older than
// HEAD just because no commit followed the crash yet.
func (r *Repository) recoverOnOpen(ctx context.Context) error {
	if r.workTree == "" {
		return nil
	}
	if _, err := os.Stat(r.journalPath()); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	head, err := r.st.Reference(plumbing.HEAD)
	if err != nil {
		return fmt.Errorf("HEAD: %w", err)
	}
	if head.Type() != plumbing.SymbolicReference {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recoverWorkTree(ctx, head.Target())
}
