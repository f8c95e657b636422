package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader election.
//
// The Lease lives in the target cluster (by default): the controller runs
// there (deploy/), and the target is the cluster that must stay reachable
// for the controller to do anything useful in a disaster: when the source
// is gone, the last commits, a revert or a failover must still be applied,
// and a Lease in the source would leave every replica a follower exactly
// then. When the target is unreachable, nothing can be applied anyway; the
// leader steps down after RenewDeadline and the one that holds the Lease
// when the target is back catches up (full snapshot, apply of the followed
// ref).
//
// Leader election is not fencing: a leader that lost its Lease learns it
// RenewDeadline after its last renewal, while another replica may take the
// Lease LeaseDuration after it. The work of a leader stops as soon as it
// learns (its context is cancelled, and an apply in flight gets the rest
// of that margin, see applyGrace); the repository is protected besides by
// gitstore's check-and-set of refs (two writers never lose a commit) and
// the target by the inventory's resourceVersion check (two applies never
// both record).
//
// On SIGTERM (ctx cancelled) the work stops first and the Lease is
// released after (ReleaseOnCancel on a context that is only cancelled once
// the work returned), so a follower takes over at its next retry, not a
// LeaseDuration later.

// Default leader election timings, as kube-controller-manager's.
const (
	DefaultLeaseDuration = 15 * time.Second
	renewRatio           = 10.0 / 15 // RenewDeadline = 2/3 LeaseDuration
	retryRatio           = 2.0 / 15  // RetryPeriod = 2/15 LeaseDuration
)

// lead runs work whenever this replica holds the Lease, until ctx is done.
// work gets a context cancelled when the lease is lost or ctx is done;
// lead waits for it to return before it releases the Lease.
func lead(ctx context.Context, kube kubernetes.Interface, opts RunOptions, log *slog.Logger, onLeading func(bool), work func(context.Context)) error {
	if err := ensureNamespace(ctx, kube, opts.LeaseNamespace); err != nil {
		log.Warn("lease namespace", "namespace", opts.LeaseNamespace, "error", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaseNamespace, Name: opts.LeaseName},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.ID},
	}
	d := opts.LeaseDuration
	for ctx.Err() == nil {
		// The election's context outlives ctx until the work has returned,
		// so that the Lease is released only then.
		electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
		workDone := make(chan struct{})
		started := make(chan struct{})
		go func() {
			select {
			case <-ctx.Done():
			case <-electCtx.Done():
			}
			select {
			case <-started:
				<-workDone
			default:
			}
			stopElection()
		}()
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   d,
			RenewDeadline:   time.Duration(float64(d) * renewRatio),
			RetryPeriod:     time.Duration(float64(d) * retryRatio),
			ReleaseOnCancel: true,
			Name:            opts.LeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					close(started)
					defer close(workDone)
					wctx, cancel := context.WithCancel(lctx)
					defer cancel()
					stop := context.AfterFunc(ctx, cancel)
					defer stop()
					log.Info("leading", "lease", opts.LeaseNamespace+"/"+opts.LeaseName, "id", opts.ID)
					onLeading(true)
					work(wctx)
				},
				OnStoppedLeading: func() {
					onLeading(false)
					log.Info("not leading", "lease", opts.LeaseNamespace+"/"+opts.LeaseName, "id", opts.ID)
				},
			},
		})
		if err != nil {
			stopElection()
			return fmt.Errorf("Lease/%s/%s: %w", opts.LeaseNamespace, opts.LeaseName, err)
		}
		le.Run(electCtx)
		stopElection()
		// The work may still be returning after a lost Lease.
		select {
		case <-started:
			<-workDone
		default:
		}
	}
	return nil
}

// ensureNamespace creates a namespace if it is missing. Without the right
// to, the Lease's creation says what is wrong.
func ensureNamespace(ctx context.Context, kube kubernetes.Interface, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "dr-syncer"}}}
	_, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err == nil || apierrors.IsAlreadyExists(err) || apierrors.IsForbidden(err) {
		return nil
	}
	return fmt.Errorf("Namespace/%s: create: %w", name, err)
}
