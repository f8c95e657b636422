package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics of the controller, all prefixed dr_syncer_. The PVC stage
// registers its own in the same registry (RunOptions.Registry).
type metrics struct {
	cycles         *prometheus.CounterVec // mode, result
	commits        *prometheus.CounterVec // mode
	commitObjects  prometheus.Histogram   // objects changed per commit
	applied        *prometheus.CounterVec // action
	prunes         prometheus.Counter     // objects deleted by prune
	errors         *prometheus.CounterVec // stage
	lag            prometheus.Histogram   // seconds, source event → apply
	ticksSkipped   prometheus.Counter     // scheduled ticks that found the last cycle still running
	lastSuccess    prometheus.Gauge       // unix seconds of the last successful cycle
	leader         prometheus.Gauge       // 1 while leading
	volumesSkipped prometheus.Counter     // PVC stage runs coalesced into a later one
}

// The stages errors are counted by.
const (
	stageSnapshot = "snapshot"
	stageWatch    = "watch"
	stageApply    = "apply"
	stageVolumes  = "volumes"
	stageTrigger  = "trigger"
	stageStatus   = "status"
	stageFetch    = "fetch"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		cycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dr_syncer_cycles_total", Help: "Replication cycles (snapshot, commit if changed, apply), by mode and result.",
		}, []string{"mode", "result"}),
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dr_syncer_commits_total", Help: "Snapshot commits made, by mode.",
		}, []string{"mode"}),
		commitObjects: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dr_syncer_commit_objects", Help: "Objects added, changed or removed per snapshot commit.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dr_syncer_apply_objects_total", Help: "Objects of applies to the target, by result (created, configured, recreated, unchanged, deleted, skipped).",
		}, []string{"action"}),
		prunes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dr_syncer_prunes_total", Help: "Objects pruned from the target.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dr_syncer_errors_total", Help: "Errors, by stage (fetch, snapshot, watch, apply, volumes, trigger, status).",
		}, []string{"stage"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "dr_syncer_lag_seconds", Help: "Per change in continuous mode: time from the source event to the apply of the commit holding it.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300},
		}),
		ticksSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dr_syncer_ticks_skipped_total", Help: "Scheduled ticks skipped because the previous cycle was still running.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dr_syncer_last_success_timestamp_seconds", Help: "When the last cycle (or continuous commit) was applied successfully, as a Unix time.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dr_syncer_leader", Help: "1 while this replica holds the Lease.",
		}),
		volumesSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dr_syncer_volumes_coalesced_total", Help: "Commits whose PVC stage was folded into the run at a newer commit.",
		}),
	}
	for _, c := range []prometheus.Collector{m.cycles, m.commits, m.commitObjects, m.applied, m.prunes, m.errors,
		m.lag, m.ticksSkipped, m.lastSuccess, m.leader, m.volumesSkipped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return m, nil
}

// health answers /healthz and /readyz.
type health struct {
	ready atomic.Bool
}

// serve answers /metrics, /healthz and /readyz on addr until ctx is done.
// /readyz is ready when the leader has synced its informers and made its
// first cycle, or while a follower waits for the Lease.
func serve(ctx context.Context, addr string, g prometheus.Gatherer, h *health, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !h.ready.Load() {
			http.Error(w, "not ready\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("serving metrics and probes", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "error", err)
		}
	}()
	return nil
}
