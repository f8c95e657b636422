package controller

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/pvcsync"
	"github.com/dr-syncer/dr-syncer/render"
)

// VolumeOptions say which commit's PVC data to copy, and how.
type VolumeOptions struct {
	// Repo, Ref, Config and Target as for Apply; the commit copied is Commit,
	// or the tip of Ref when zero.
	ApplyOptions
	Commit plumbing.Hash
	Source *rest.Config
	// Runner makes the copies: pvcsync.KubeRunner in the target cluster, or
	// pvcsync.LocalRunner for tests and the demo.
	Runner pvcsync.Runner
	// Credentials issues the credentials of one copy (see
	// pvcsync.IssueCredentials).
	Credentials func(pvcsync.Transfer) (pvcsync.Credentials, error)
	// KubeletDir is the kubelet's directory on the source nodes (default
	// /var/lib/kubelet); MountImage the image of the temporary pods that
	// mount unmounted claims under the Mount policy.
	KubeletDir string
	MountImage string
	// Render, when set, renders the commit through this cache (the
	// controller keeps one across commits); else the whole overlay is
	// built.
	Render *render.Cache
	// Backoff is the wait before the first retry (default 5 s).
	Backoff  time.Duration
	Progress func(pvcsync.Transfer, pvcsync.Progress)
	Logger   *slog.Logger
}

// Volumes is the PVC stage of one commit: it plans a copy for every claim
// the commit replicated (the target claim found in the commit's rendered
// state), copies the data of each, and records per claim the commit whose
// data the target holds. A copy that fails is a Failed result, not an
// error.
func Volumes(ctx context.Context, opts VolumeOptions) ([]pvcsync.Result, error) {
	cfg := opts.Config
	if cfg.Spec.Volumes.Disabled {
		return nil, nil
	}
	commit := opts.Commit
	if commit.IsZero() {
		var err error
		if commit, err = opts.Repo.Resolve(ctx, cmp.Or(opts.Ref, DefaultBranch)); err != nil {
			return nil, err
		}
	}
	source, err := kubernetes.NewForConfig(opts.Source)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Spec.Source.Name, err)
	}
	target, err := kubernetes.NewForConfig(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", cfg.Spec.Target.Name, err)
	}
	store := &pvcsync.RecordStore{Client: target, Name: pvcsync.RecordName(cfg.Metadata.Name)}
	claims, err := committedClaims(ctx, opts.Repo, commit, cfg.Spec.Source.Name)
	if err != nil {
		return nil, err
	}
	if len(claims) == 0 {
		// No claim left: no ghost either.
		if old, err := store.Load(ctx); err != nil || len(old) == 0 {
			return nil, err
		}
		return nil, store.Prune(ctx, nil)
	}
	build := render.Build
	if opts.Render != nil {
		// Read-only use: Plan only looks up claims by identity (kind,
		// namespace, name), which the cache's compact objects hold.
		build = opts.Render.Build
	}
	rendered, err := build(ctx, opts.Repo, commit.String(), cfg)
	if err != nil {
		return nil, err
	}
	plan, err := pvcsync.Plan(ctx, pvcsync.PlanInput{
		Config: cfg, Commit: commit.String(), Claims: claims, Rendered: rendered,
		Source: source, KubeletDir: opts.KubeletDir, MountImage: opts.MountImage,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := plan.Release(rctx); err != nil && opts.Logger != nil {
			opts.Logger.Warn("removing temporary mount pods", "error", err)
		}
	}()
	stage := &pvcsync.Stage{
		Runner: opts.Runner, Credentials: opts.Credentials,
		Recorder:    store,
		Concurrency: cfg.VolumeConcurrency(), Retries: cfg.VolumeRetries(), Backoff: opts.Backoff,
		Progress: opts.Progress, Logger: opts.Logger,
	}
	results, err := stage.Run(ctx, plan.Transfers, plan.Skipped)
	if err != nil {
		return results, err
	}
	// Claims that left the commit leave the record too.
	keep := make([]pvcsync.Claim, 0, len(results))
	for _, r := range results {
		keep = append(keep, r.Transfer.Target)
	}
	return results, store.Prune(ctx, keep)
}

// committedClaims are the PersistentVolumeClaims of the commit's snapshot,
// with their labels (the mapping's volume selector reads them).
func committedClaims(ctx context.Context, repo *gitstore.Repository, commit plumbing.Hash, source string) ([]pvcsync.SourceClaim, error) {
	files, err := repo.Files(ctx, commit.String(), gitstore.SnapshotPrefix(source))
	if err != nil {
		return nil, err
	}
	var claims []pvcsync.SourceClaim
	for path, blob := range files {
		_, id, err := gitstore.ParseObjectPath(path)
		if err != nil || id.Group != "" || id.Kind != "PersistentVolumeClaim" {
			continue
		}
		data, err := repo.ReadBlob(ctx, blob)
		if err != nil {
			return nil, err
		}
		var obj struct {
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(data, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		claims = append(claims, pvcsync.SourceClaim{Namespace: id.Namespace, Name: id.Name, Labels: obj.Metadata.Labels})
	}
	return claims, nil
}

// VolumeStatusOf reads, from the target, the record of the PVC copies: per
// target claim, the commit whose data it holds and the last attempt.
func VolumeStatusOf(ctx context.Context, opts ApplyOptions) ([]pvcsync.VolumeStatus, error) {
	target, err := kubernetes.NewForConfig(opts.Target)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", opts.Config.Spec.Target.Name, err)
	}
	store := &pvcsync.RecordStore{Client: target, Name: pvcsync.RecordName(opts.Config.Metadata.Name)}
	record, err := store.Load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]pvcsync.VolumeStatus, 0, len(record))
	for _, k := range slices.Sorted(maps.Keys(record)) {
		out = append(out, record[k])
	}
	return out, nil
}

// VolumeStage returns the PVC stage as RunOptions.Volumes wants it: the copy
// of a commit's volumes, with its metrics registered in reg —
// dr_syncer_volume_bytes_total, dr_syncer_volume_copy_seconds,
// dr_syncer_volume_failures_total, and per target claim
// dr_syncer_volume_data_timestamp_seconds, the time of the last copy that
// succeeded: the age of the volumes' data is now minus that (their RPO).
// A failed copy makes the stage return an error naming the claims.
func VolumeStage(opts VolumeOptions, reg prometheus.Registerer) (func(context.Context, plumbing.Hash) error, error) {
	bytes := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dr_syncer_volume_bytes_total", Help: "Bytes received by PVC copies.",
	})
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dr_syncer_volume_copy_seconds", Help: "Duration of PVC copies that succeeded, retries included.",
		Buckets: prometheus.ExponentialBuckets(0.1, 3, 12),
	})
	failures := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "dr_syncer_volume_failures_total", Help: "PVC copies that failed after their retries.",
	})
	dataTime := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dr_syncer_volume_data_timestamp_seconds", Help: "Per target claim, when the copy of the data it holds ended, as a Unix time.",
	}, []string{"namespace", "claim"})
	for _, c := range []prometheus.Collector{bytes, seconds, failures, dataTime} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("volume metrics: %w", err)
		}
	}
	if opts.Render == nil {
		// Commits follow each other: render each one through the same
		// cache, so that a commit costs what it changed.
		opts.Render = render.NewCache()
	}
	return func(ctx context.Context, commit plumbing.Hash) error {
		o := opts
		o.Commit = commit
		results, err := Volumes(ctx, o)
		var failed []string
		for _, r := range results {
			switch r.State {
			case pvcsync.StateSucceeded:
				bytes.Add(float64(r.Stats.BytesReceived))
				seconds.Observe(r.Duration.Seconds())
				dataTime.WithLabelValues(r.Transfer.Target.Namespace, r.Transfer.Target.Name).Set(float64(r.Started.Add(r.Duration).Unix()))
			case pvcsync.StateFailed:
				failures.Inc()
				failed = append(failed, r.Transfer.Target.String()+": "+r.Reason)
			}
		}
		if err == nil && len(failed) > 0 {
			err = fmt.Errorf("%d of %d volumes failed: %s", len(failed), len(results), strings.Join(failed, "; "))
		}
		return err
	}, nil
}
