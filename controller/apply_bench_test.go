package controller

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// BenchmarkApplyCommit measures what one small commit costs the controller
// at 10,000 objects (the objects of BenchmarkFullSnapshot), commit after
// commit, each changing one ConfigMap of the snapshot:
//
//   - render: render.Cache.Build of the new commit (the runs its change
//     touches);
//   - apply: the controller's apply of it (applier.apply: the build again,
//     all from the cache, and reconciler.ApplyDelta of the change);
//   - full: the whole path for comparison, as before the cache and the
//     incremental apply — render.Build and reconciler.Apply of the set
//     (controller.Apply, as `dr-syncer apply` does).
//
// It reports medians in seconds. Run it with
//
//	go test -run '^$' -bench BenchmarkApplyCommit -benchtime 1x ./controller/
func BenchmarkApplyCommit(b *testing.B) {
	benchSource(b)
	ctx := b.Context()
	cfg, id, sealer := benchConfig(b, "bench-apply", "")
	// The target needs room for the ClusterIPs of the 1,000 Services too.
	if err := benchServiceCIDR(ctx, clusters.Target.Clientset()); err != nil {
		b.Fatal(err)
	}
	repo, _ := skeletonRepo(b, cfg)
	if _, err := Snapshot(ctx, SnapshotOptions{Repo: repo, Config: cfg, Source: clusters.Source.Config, Sealer: sealer}); err != nil {
		b.Fatal(err)
	}
	opts := ApplyOptions{Repo: repo, Config: cfg, Target: clusters.Target.Config, Identity: id, AllowMassPrune: true}
	a, err := newApplier(opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	head := func() plumbing.Hash {
		h, err := repo.Head(ctx, DefaultBranch)
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	start := time.Now()
	if _, _, err := a.apply(ctx, opts, head(), true); err != nil {
		b.Fatal(err)
	}
	b.Logf("first apply of the whole set: %v", time.Since(start).Round(time.Millisecond))

	path := "snapshots/bench-source/" + benchNamespace(0) + "/ConfigMap/config-0001.yaml"
	base, err := repo.ReadFile(ctx, DefaultBranch, path)
	if err != nil {
		b.Fatal(err)
	}
	edit := func(i int) plumbing.Hash {
		data := strings.Replace(string(base), "LOG_LEVEL: info", fmt.Sprintf("LOG_LEVEL: debug-%d", i), 1)
		h, err := repo.Commit(ctx, []gitstore.Change{{Path: path, Content: []byte(data)}},
			gitstore.CommitOptions{Branch: DefaultBranch, Message: fmt.Sprint(i)})
		if err != nil {
			b.Fatal(err)
		}
		return h
	}
	var renders, applies, fulls []time.Duration
	b.ResetTimer()
	for i := range 10 {
		h := edit(i)
		t0 := time.Now()
		if _, err := a.cache.Build(ctx, repo, h.String(), cfg); err != nil {
			b.Fatal(err)
		}
		renders = append(renders, time.Since(t0))
		t0 = time.Now()
		res, incremental, err := a.apply(ctx, opts, h, false)
		if err != nil {
			b.Fatal(err)
		}
		applies = append(applies, time.Since(t0))
		if !incremental || res.Counts()["Configured"] != 1 {
			b.Fatalf("commit %d: incremental %v, %v; want one object configured incrementally", i, incremental, res.Counts())
		}
	}
	for i := range 3 {
		h := edit(100 + i)
		t0 := time.Now()
		o := opts
		o.Ref = h.String()
		if _, err := Apply(ctx, o); err != nil {
			b.Fatal(err)
		}
		fulls = append(fulls, time.Since(t0))
	}
	b.StopTimer()
	median := func(name string, d []time.Duration) {
		slices.Sort(d)
		m := d[len(d)/2]
		b.ReportMetric(m.Seconds(), name+"-p50-s")
		b.Logf("%s: %d commits, median %v, max %v", name, len(d), m.Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	median("render", renders)
	median("apply", applies)
	median("full", fulls)
	hits, misses := a.cache.Stats()
	b.Logf("cache: %d runs from the cache, %d run", hits, misses)
}

// BenchmarkChangedObjects compares two rendered sets of 10,000 objects that
// share all but one (as two builds through a render.Cache do).
func BenchmarkChangedObjects(b *testing.B) {
	prev := make([]*unstructured.Unstructured, 10000)
	for i := range prev {
		prev[i] = configMap(fmt.Sprintf("ns%d", i%10), fmt.Sprintf("obj-%05d", i), "1")
	}
	next := slices.Clone(prev)
	next[4321] = configMap("ns1", "obj-04321", "2")
	_, prevSet := changedObjects(nil, nil, prev)
	for b.Loop() {
		if got, _ := changedObjects(prev, prevSet, next); len(got) != 1 {
			b.Fatalf("%d changed, want 1", len(got))
		}
	}
}
