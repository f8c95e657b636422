package controller

import (
	"cmp"
	"context"
	"time"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// CommitRef is a commit and when it was made.
type CommitRef struct {
	Commit string    `json:"commit"`
	Time   time.Time `json:"time"`
}

// Status says how far the target is behind the source, as the repository
// and the target's inventory tell it.
type Status struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Branch string `json:"branch"`
	// LastSnapshot is the newest snapshot commit on the branch.
	LastSnapshot *CommitRef `json:"lastSnapshot,omitempty"`
	// Applied is the commit the target holds (nil: never applied), and
	// AppliedAt when it was applied.
	Applied   *CommitRef `json:"applied,omitempty"`
	AppliedAt time.Time  `json:"appliedAt,omitzero"`
	Objects   int        `json:"objects"`
	// Behind counts the commits of the branch the target does not hold yet;
	// -1 when the target holds nothing yet, or a commit that is not on the
	// branch.
	Behind int `json:"behind"`
	// Lag is how much older the target's commit is than the last snapshot:
	// what a failover now would lose, as far as the repository knows.
	Lag time.Duration `json:"lag"`
}

// StatusOf reads the branch's history and the target's inventory.
func StatusOf(ctx context.Context, opts ApplyOptions) (Status, error) {
	branch := cmp.Or(opts.Ref, DefaultBranch)
	st := Status{Source: opts.Config.Spec.Source.Name, Target: opts.Config.Spec.Target.Name, Branch: branch, Behind: -1}
	m, err := newManager(opts)
	if err != nil {
		return st, err
	}
	inv, err := m.Inventory(ctx)
	if err != nil {
		return st, err
	}
	st.Objects, st.AppliedAt = len(inv.Entries), inv.AppliedAt
	n := 0
	err = opts.Repo.Log(ctx, branch, func(c gitstore.CommitInfo) bool {
		if st.LastSnapshot == nil && c.Trailer("Source-Cluster") == st.Source {
			st.LastSnapshot = &CommitRef{Commit: c.Hash.String(), Time: c.When}
		}
		if st.Applied == nil && inv.Commit != "" && c.Hash.String() == inv.Commit {
			st.Applied = &CommitRef{Commit: inv.Commit, Time: c.When}
			st.Behind = n
		}
		n++
		// Walk on until both are found: the target may hold a commit made
		// after the last snapshot (a revert, a failover).
		return st.LastSnapshot == nil || (inv.Commit != "" && st.Applied == nil)
	})
	if err != nil {
		return st, err
	}
	if inv.Commit != "" && st.Applied == nil {
		st.Applied = &CommitRef{Commit: inv.Commit}
	}
	if st.LastSnapshot != nil && st.Applied != nil && !st.Applied.Time.IsZero() {
		st.Lag = max(0, st.LastSnapshot.Time.Sub(st.Applied.Time))
	}
	return st, nil
}
