package controller

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/reconciler"
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
	// ChangeLag is, for the last commit of continuous mode applied, the
	// longest time from a source event to the apply of its change, as
	// `dr-syncer run` recorded it at ChangeLagTime (zero: not recorded).
	ChangeLag     time.Duration `json:"changeLag,omitempty"`
	ChangeLagTime time.Time     `json:"changeLagTime,omitzero"`
	// Review is set in review mode.
	Review *ReviewStatus `json:"review,omitempty"`
}

// ReviewStatus is the snapshot branch of review mode and what waits there.
type ReviewStatus struct {
	Branch string `json:"branch"`
	// Waiting counts the commits of Branch that the followed ref does not
	// hold: snapshot commits waiting for a person to merge them. None when
	// the followed ref holds what they wrote (a squash or rebase merge).
	Waiting int `json:"waiting"`

	tip string // "": the branch does not exist yet
}

// StatusOf reads the branch's history and the target's inventory. In
// review mode (the mapping's spec.review) it also counts the snapshot
// commits waiting for review, and finds the last snapshot on the snapshot
// branch.
func StatusOf(ctx context.Context, opts ApplyOptions) (Status, error) {
	branch := cmp.Or(opts.Ref, DefaultBranch)
	st := Status{Source: opts.Config.Spec.Source.Name, Target: opts.Config.Spec.Target.Name, Branch: branch, Behind: -1}
	if err := reviewStatus(ctx, opts, &st); err != nil {
		return st, err
	}
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
	if st.Review != nil && st.Review.tip != "" {
		// The last snapshot is on the snapshot branch, merged or not.
		st.LastSnapshot = nil
		err = opts.Repo.Log(ctx, st.Review.tip, func(c gitstore.CommitInfo) bool {
			if c.Trailer("Source-Cluster") == st.Source {
				st.LastSnapshot = &CommitRef{Commit: c.Hash.String(), Time: c.When}
			}
			return st.LastSnapshot == nil
		})
		if err != nil {
			return st, err
		}
	}
	if inv.Commit != "" && st.Applied == nil {
		st.Applied = &CommitRef{Commit: inv.Commit}
	}
	if st.LastSnapshot != nil && st.Applied != nil && !st.Applied.Time.IsZero() {
		st.Lag = max(0, st.LastSnapshot.Time.Sub(st.Applied.Time))
	}
	err = readChangeLag(ctx, opts, &st)
	return st, err
}

// reviewStatus fills st.Review in review mode.
func reviewStatus(ctx context.Context, opts ApplyOptions, st *Status) error {
	rb := opts.Config.ReviewBranch()
	if rb == "" {
		return nil
	}
	st.Review = &ReviewStatus{Branch: rb}
	tip, err := opts.Repo.Head(ctx, rb)
	if err != nil || tip.IsZero() {
		return err // no snapshot yet: nothing waits
	}
	st.Review.tip = tip.String()
	st.Review.Waiting, err = opts.Repo.Count(ctx, st.Branch, tip.String())
	if err != nil || st.Review.Waiting == 0 {
		return err
	}
	// Squash- or rebase-merged: the commits are not in the branch, what
	// they wrote is; the next snapshot starts the review branch again.
	base, err := opts.Repo.Resolve(ctx, st.Branch)
	if err != nil {
		return err
	}
	merged, err := mergedByContent(ctx, opts.Repo, base, tip)
	if merged {
		st.Review.Waiting = 0
	}
	return err
}

// readChangeLag reads what the controller recorded (run.go, writeStatus).
func readChangeLag(ctx context.Context, opts ApplyOptions, st *Status) error {
	kube, err := kubernetes.NewForConfig(opts.Target)
	if err != nil {
		return err
	}
	name := statusName(opts.Config)
	cm, err := kube.CoreV1().ConfigMaps(reconciler.DefaultInventoryNamespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ConfigMap/%s/%s: %w", reconciler.DefaultInventoryNamespace, name, err)
	}
	if secs, err := strconv.ParseFloat(cm.Data["changeLag"], 64); err == nil {
		st.ChangeLag = time.Duration(secs * float64(time.Second))
	}
	st.ChangeLagTime, _ = time.Parse(time.RFC3339Nano, cm.Data["changeLagTime"])
	return nil
}
