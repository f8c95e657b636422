package controller

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
)

// BenchmarkContinuousLag measures the lag of continuous mode — from a
// change written to the source to the change visible in the target — with
// the 10,000 objects of BenchmarkFullSnapshot in the mapped namespaces:
//
//   - single: 20 changes one after the other, each waiting for the last;
//   - burst: 50 changes a second for 10 seconds, each to another ConfigMap.
//
// A change sets the label bench-seq=<n> on a ConfigMap; a metadata
// informer on the target (label selector bench-seq, so it holds only those)
// records when each value arrives. It reports p50 and p99 of each, in
// seconds, and the process's peak and current RSS (VmHWM, VmRSS) in MiB
// from the controller's start: the controller, its informers on the 10,000
// objects, and the test's own small share (the peak of creating the objects
// is reported apart, as setup-VmHWM-MiB, and returned to the system before
// the controller starts); also the peak RSS at the end of the warm-up, the
// live heap after a collection at the end, and VmHWM's two parts apart:
// the peak of the anonymous memory (peak-RssAnon-MiB, sampled every 20
// ms: the heap, stacks and runtime) and the pages of the binary mapped at
// that moment (RssFile-MiB, about 70 MiB: a file the kernel may drop and
// read again, but which RSS counts); and the process's CPU time in the
// measured part (cpu-s). The controller runs with the garbage collector's
// target `dr-syncer run` sets (DefaultGCPercent), unless GOGC is set. Run
// it as the image builds the
// controller, without cgo (deploy/controller/Dockerfile; make bench does):
//
//	CGO_ENABLED=0 go test -run '^$' -bench BenchmarkContinuousLag -benchtime 1x ./controller/
//
// With cgo, kustomize's import of package plugin makes the linker export
// every symbol of the binary: its dynamic symbol tables add ~18 MiB to
// RssFile (55 → 73 MiB), which the deployed controller does not have.
func BenchmarkContinuousLag(b *testing.B) {
	// The changes go to config-0000 … config-0249 of each namespace.
	const configMapsUsed = 250
	if n := benchConfigMaps / benchNamespaces; n < configMapsUsed {
		b.Fatalf("DR_SYNCER_BENCH_OBJECTS=%d gives %d ConfigMaps a namespace; the changes need %d (at least %d objects)",
			benchObjects, n, configMapsUsed, (configMapsUsed*benchNamespaces*100+69)/70)
	}
	if cgo := buildSetting("CGO_ENABLED"); cgo != "0" {
		b.Logf("built with cgo (CGO_ENABLED=%q), unlike the controller's image: RssFile counts ~18 MiB of dynamic symbol tables", cgo)
	}
	benchSource(b)
	ctx := b.Context()
	cfg, id, sealer := benchConfig(b, "bench-run", "  replication: {mode: continuous}\n")
	repo, _ := skeletonRepo(b, cfg)

	// The target needs room for the ClusterIPs of the 1,000 Services too.
	if err := benchServiceCIDR(ctx, clusters.Target.Clientset()); err != nil {
		b.Fatal(err)
	}
	arrivals := watchArrivals(b)
	// The peak RSS is the controller's: what the test itself held to create
	// the 10,000 objects (about 100 MiB resident) is given back first, and
	// the peak restarts from what remains.
	setupHWM, _ := residentMiB(b)
	// The garbage collector's target as `dr-syncer run` sets it
	// (--gc-percent auto), unless GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		defer debug.SetGCPercent(debug.SetGCPercent(DefaultGCPercent))
	}
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS(b)
	peakAnon := anonPeak(b.Context(), b)
	peakProfile(b)
	reg := prometheus.NewRegistry()
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- Run(runCtx, RunOptions{
			Repo: repo, Config: cfg, Source: clusters.Source.Config, Target: clusters.Target.Config,
			Sealer: sealer, Identity: id, Registry: reg,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: benchLogLevel()})),
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()

	// Warm-up: the first full snapshot and its apply of 10,000 objects.
	cms := func(i int) string { return fmt.Sprintf("config-%04d", i) }
	seq := 0
	change := func(ns, name string) (int, time.Time) {
		seq++
		patch := fmt.Sprintf(`{"metadata":{"labels":{"bench-seq":"%d"}}}`, seq)
		t0 := time.Now()
		if _, err := clusters.Source.Clientset().CoreV1().ConfigMaps(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			b.Fatal(err)
		}
		return seq, t0
	}
	n, _ := change(benchNamespace(0), cms(0))
	if _, ok := arrivals.wait(n, 10*time.Minute); !ok {
		b.Fatal("the first change did not reach the target")
	}
	// The first change shows while the first apply of the whole set is
	// still going (prune, inventory): the lag measured is the steady
	// state's, once the target's inventory holds the branch's tip.
	mgr, err := newManager(ApplyOptions{Config: cfg, Target: clusters.Target.Config})
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		tip, err := repo.Head(ctx, DefaultBranch)
		if err != nil {
			b.Fatal(err)
		}
		inv, err := mgr.Inventory(ctx)
		if err == nil && inv.Commit == tip.String() {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("the first apply did not complete within ten minutes")
		}
	}
	b.Logf("warm-up (full snapshot and first apply of %d objects, then one change): %v", benchObjects, time.Since(start).Round(time.Millisecond))
	warmHWM, _ := residentMiB(b)
	writeHeapProfile("warm") // the base of what the changes allocate
	stopProfile := steadyProfile(b)

	b.ResetTimer()
	cpu0 := benchfixture.CPUTime()
	var single []time.Duration
	for i := range 20 {
		n, t0 := change(benchNamespace(i%benchNamespaces), cms(100+i))
		at, ok := arrivals.wait(n, time.Minute)
		if !ok {
			b.Fatalf("single change %d did not arrive within a minute", n)
		}
		single = append(single, at.Sub(t0))
	}

	sent := map[int]time.Time{}
	tick := time.NewTicker(20 * time.Millisecond)
	for i := range 500 {
		<-tick.C
		n, t0 := change(benchNamespace(i%benchNamespaces), cms(200+i/benchNamespaces))
		sent[n] = t0
	}
	tick.Stop()
	var burst []time.Duration
	for n, t0 := range sent {
		at, ok := arrivals.wait(n, 2*time.Minute)
		if !ok {
			b.Fatalf("burst change %d did not arrive within two minutes", n)
		}
		burst = append(burst, at.Sub(t0))
	}
	b.StopTimer()
	cpu := benchfixture.CPUTime() - cpu0
	stopProfile()

	hwm, rss := residentMiB(b)
	// The live heap of the steady state (the controller still runs): what a
	// memory limit (GOMEMLIMIT, dr-syncer run --memory-limit) must leave
	// room for, or the garbage collector runs all the time.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	writeHeapProfile("steady")
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		p50, p99 := d[len(d)*50/100], d[min(len(d)-1, len(d)*99/100)]
		b.ReportMetric(p50.Seconds(), name+"-p50-s")
		b.ReportMetric(p99.Seconds(), name+"-p99-s")
		b.Logf("%s: %d changes, p50 %v, p99 %v, max %v", name, len(d), p50.Round(time.Millisecond), p99.Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
	report("single", single)
	report("burst50", burst)
	b.ReportMetric(hwm, "VmHWM-MiB")
	b.ReportMetric(warmHWM, "warmup-VmHWM-MiB")
	b.ReportMetric(setupHWM, "setup-VmHWM-MiB")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")
	b.ReportMetric(rss, "VmRSS-MiB")
	anon, file := peakAnon()
	b.ReportMetric(anon, "peak-RssAnon-MiB")
	b.ReportMetric(file, "RssFile-MiB")
	b.ReportMetric(metric(b, reg, "dr_syncer_commits_total", "mode", "continuous"), "commits")
	b.ReportMetric(cpu.Seconds(), "cpu-s")
}

// steadyProfile writes a CPU profile of the measured part (the changes,
// not the warm-up) to $DR_SYNCER_BENCH_CPUPROFILE when it is set; the
// function it returns stops it.
func steadyProfile(b *testing.B) func() {
	path := os.Getenv("DR_SYNCER_BENCH_CPUPROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Logf("no CPU profile of the changes: %v", err) // -cpuprofile is on
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// peakProfile, when $DR_SYNCER_BENCH_HEAPPROFILE is set, follows the
// process's peak RSS (VmHWM) until the benchmark ends: each time it grew
// by 32 MiB or more it prints it and writes a heap profile (in-use memory
// as of the last GC) to the path and a sequence number; the benchmark
// writes one of the steady state to the path and ".steady" at its end, and
// one at the end of the warm-up to the path and ".warm".
func peakProfile(b *testing.B) {
	path := os.Getenv("DR_SYNCER_BENCH_HEAPPROFILE")
	if path == "" {
		return
	}
	// Finer than the default (one sample per 512 KiB): the peak is made
	// of many small objects.
	runtime.MemProfileRate = 64 << 10
	ctx := b.Context()
	start := time.Now()
	last, n := 0.0, 0
	go wait.UntilWithContext(ctx, func(context.Context) {
		hwm, rss := residentMiB(b)
		if hwm < last+32 {
			return
		}
		last = hwm
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Fprintf(os.Stderr, "peak %6.1fs: VmHWM %.0f MiB, VmRSS %.0f MiB, heap in use %d MiB, heap objects %d MiB, next GC %d MiB\n", time.Since(start).Seconds(), hwm, rss,
			ms.HeapInuse>>20, ms.HeapAlloc>>20, ms.NextGC>>20)
		n++
		if f, err := os.Create(fmt.Sprintf("%s.%02d", path, n)); err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
	}, 100*time.Millisecond)

}

// writeHeapProfile writes a heap profile to $DR_SYNCER_BENCH_HEAPPROFILE
// and "." and name, when it is set: "warm" at the end of the warm-up,
// "steady" at the end (go tool pprof -sample_index alloc_space -base
// <path>.warm <path>.steady: what the changes allocated).
func writeHeapProfile(name string) {
	path := os.Getenv("DR_SYNCER_BENCH_HEAPPROFILE")
	if path == "" {
		return
	}
	if f, err := os.Create(path + "." + name); err == nil {
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
}

// benchLogLevel is the controller's log level in the benchmark: warnings,
// or what DR_SYNCER_BENCH_LOG says (debug, info: each commit and apply
// with its duration).
func benchLogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(os.Getenv("DR_SYNCER_BENCH_LOG"))); err != nil {
		return slog.LevelWarn
	}
	return l
}

// arrivals records when each bench-seq value first reached the target.
type arrivals struct {
	mu   sync.Mutex
	at   map[int]time.Time
	cond *sync.Cond
}

func watchArrivals(b *testing.B) *arrivals {
	a := &arrivals{at: map[int]time.Time{}}
	a.cond = sync.NewCond(&a.mu)
	mc, err := metadata.NewForConfig(clusters.Target.Config)
	if err != nil {
		b.Fatal(err)
	}
	inf := metadatainformer.NewFilteredMetadataInformer(mc, schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "", 0,
		cache.Indexers{}, func(o *metav1.ListOptions) { o.LabelSelector = "bench-seq" }).Informer()
	record := func(o any) {
		now := time.Now()
		m, ok := o.(*metav1.PartialObjectMetadata)
		if !ok {
			return
		}
		n, err := strconv.Atoi(m.Labels["bench-seq"])
		if err != nil {
			return
		}
		a.mu.Lock()
		if _, seen := a.at[n]; !seen {
			a.at[n] = now
			a.cond.Broadcast()
		}
		a.mu.Unlock()
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, o any) { record(o) }})
	ctx := b.Context()
	go inf.RunWithContext(ctx)
	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
	// Wake the waiters, that they can time out.
	go wait.UntilWithContext(ctx, func(context.Context) { a.cond.Broadcast() }, 100*time.Millisecond)
	return a
}

func (a *arrivals) wait(n int, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		if at, ok := a.at[n]; ok {
			return at, true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		a.cond.Wait()
	}
}

// resetPeakRSS restarts the process's peak RSS (VmHWM) from its current
// RSS (proc(5), /proc/pid/clear_refs: "5").
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("the peak RSS counts the setup too: %v", err) // as residentMiB, no /proc: no figure
	}
}

// residentMiB reads the peak and current resident set of this process, in MiB.
func residentMiB(b *testing.B) (hwm, rss float64) {
	st := procStatus(b)
	return st["VmHWM:"], st["VmRSS:"]
}

// procStatus reads the memory figures of /proc/self/status (VmHWM:,
// VmRSS:, RssAnon:, RssFile:…), in MiB; empty without /proc.
func procStatus(b *testing.B) map[string]float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Logf("no /proc/self/status: %v", err)
		return nil
	}
	defer f.Close()
	st := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		if kb, err := strconv.ParseFloat(fields[1], 64); err == nil {
			st[fields[0]] = kb / 1024
		}
	}
	return st
}

// anonPeak follows the process's anonymous resident memory (RssAnon: the
// Go heap, stacks and runtime, not the pages of the binary, which RssFile
// counts and VmHWM includes) every 20 ms until ctx ends, and returns a
// function giving its peak and RssFile at that moment, in MiB.
func anonPeak(ctx context.Context, b *testing.B) func() (anon, file float64) {
	var mu sync.Mutex
	var peak, file float64
	sample := func() {
		st := procStatus(b)
		mu.Lock()
		if st["RssAnon:"] > peak {
			peak, file = st["RssAnon:"], st["RssFile:"]
		}
		mu.Unlock()
	}
	go wait.UntilWithContext(ctx, func(context.Context) { sample() }, 20*time.Millisecond)
	return func() (float64, float64) {
		sample()
		mu.Lock()
		defer mu.Unlock()
		return peak, file
	}
}

// buildSetting is a setting of the test binary's build (CGO_ENABLED…), or
// "" when it has none.
func buildSetting(key string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}
