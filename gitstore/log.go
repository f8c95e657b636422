package gitstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// CommitInfo describes one commit.
type CommitInfo struct {
	Hash    plumbing.Hash
	Subject string
	Message string
	When    time.Time // the committer's time
}

// Trailer returns the value of a trailer (`Key: value` in the last
// paragraph of the message), or "".
func (c CommitInfo) Trailer(key string) string {
	paras := strings.Split(strings.TrimSpace(c.Message), "\n\n")
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Log walks the first-parent history from rev, newest first, calling fn for
// each commit until fn returns false or the history ends.
func (r *Repository) Log(ctx context.Context, rev string, fn func(CommitInfo) bool) error {
	h, err := r.Resolve(ctx, rev)
	if err != nil {
		return err
	}
	for !h.IsZero() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gitstore: log %s: %w", rev, err)
		}
		r.mu.Lock()
		c, err := object.GetCommit(r.st, h)
		r.mu.Unlock()
		if err != nil {
			return fmt.Errorf("gitstore: log %s: commit %s: %w", rev, h, err)
		}
		subject, _, _ := strings.Cut(c.Message, "\n")
		if !fn(CommitInfo{Hash: h, Subject: subject, Message: c.Message, When: c.Committer.When}) {
			return nil
		}
		h = plumbing.ZeroHash
		if len(c.ParentHashes) > 0 {
			h = c.ParentHashes[0]
		}
	}
	return nil
}
