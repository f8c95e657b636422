package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is what report.json holds; report.md is written from it.
type report struct {
	Started   time.Time         `json:"started"`
	Finished  time.Time         `json:"finished"`
	Machine   machine           `json:"machine"`
	Versions  map[string]string `json:"versions"`
	LoadStart string            `json:"loadAverageStart"`
	LoadEnd   string            `json:"loadAverageEnd"`
	Options   map[string]string `json:"options"`
	Commands  []string          `json:"commands"`
	Runs      []runRecord       `json:"runs"`
	Goals     []goalRow         `json:"goals"`
	Growth    []goalRow         `json:"growth"`
	Figures   []*figure         `json:"figures"`

	counts []int
	large  bool
	ran    map[string]bool // suites selected by -only
}

type machine struct {
	CPU      string  `json:"cpu"`
	Cores    int     `json:"cores"`
	MemGiB   float64 `json:"memoryGiB"`
	Kernel   string  `json:"kernel"`
	Hostname string  `json:"hostname"`
}

// runRecord is one run of a suite's test binary.
type runRecord struct {
	Suite     string            `json:"suite"`
	Package   string            `json:"package,omitempty"`
	N         int               `json:"objects,omitempty"` // DR_SYNCER_BENCH_OBJECTS, or the count the suite fixes
	PerN      bool              `json:"perN,omitempty"`
	Note      string            `json:"note,omitempty"`
	Command   string            `json:"command,omitempty"`
	Seconds   float64           `json:"seconds"`
	Raw       string            `json:"rawOutput,omitempty"`
	Header    map[string]string `json:"header,omitempty"`
	Results   []result          `json:"results,omitempty"`
	MaxRSSMiB float64           `json:"maxRSSMiB,omitempty"` // /usr/bin/time -v of the whole test process
	Error     string            `json:"error,omitempty"`
}

// figure is one benchmark figure over the runs of -count: its samples in
// run order, their median and spread.
type figure struct {
	Suite     string    `json:"suite"`
	N         int       `json:"objects,omitempty"`
	Benchmark string    `json:"benchmark"`
	Unit      string    `json:"unit"`
	Samples   []float64 `json:"samples"`
	Median    float64   `json:"median"`
	Min       float64   `json:"min"`
	Max       float64   `json:"max"`
}

// stat is a median with its spread.
type stat struct {
	Samples []float64 `json:"samples"`
	Median  float64   `json:"median"`
	Min     float64   `json:"min"`
	Max     float64   `json:"max"`
}

func newStat(samples []float64) *stat {
	if len(samples) == 0 {
		return nil
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &stat{Samples: samples, Median: m, Min: s[0], Max: s[len(s)-1]}
}

// goalRow is one line of the goal table: a value (a ratio to a baseline of
// the same run, or an absolute figure), its goal, and whether it is met.
type goalRow struct {
	Figure   string  `json:"figure"`
	N        int     `json:"objects,omitempty"`
	Measured string  `json:"measured"`           // what the value is, e.g. "take / list-baseline-parallel (time)"
	Ours     *stat   `json:"ours,omitempty"`     // the figure's own median, in OursUnit
	Base     *stat   `json:"baseline,omitempty"` // the baseline's, in the same unit
	Unit     string  `json:"unit,omitempty"`
	Value    *stat   `json:"value,omitempty"` // ratio (or absolute figure) per run: median, spread
	ValueFmt string  `json:"valueUnit"`       // "×", "ms", "s", "MiB"
	Goal     string  `json:"goal"`
	Op       string  `json:"op,omitempty"` // <=, <, >=; empty: no goal at this N
	Target   float64 `json:"target,omitempty"`
	Status   string  `json:"status"` // met, not met, not measured, informational
	Note     string  `json:"note,omitempty"`
}

const (
	met          = "met"
	notMet       = "not met"
	notMeasured  = "not measured"
	informatinal = "informational"
)

func newReport(ctx context.Context, opts options) *report {
	r := &report{
		Started:   time.Now(),
		Machine:   readMachine(),
		Versions:  versions(ctx, opts.root),
		LoadStart: loadAverage(),
		Options: map[string]string{
			"n":     strings.Trim(strings.Join(strings.Fields(fmt.Sprint(opts.counts)), ","), "[]"),
			"count": strconv.Itoa(opts.count), "large": strconv.FormatBool(opts.large), "only": opts.only.String(),
		},
		counts: opts.counts,
		large:  opts.large,
		ran:    map[string]bool{},
	}
	for _, s := range suites {
		r.ran[s.Name] = opts.only.MatchString(s.Name)
	}
	return r
}

func (r *report) addRun(rec runRecord) { r.Runs = append(r.Runs, rec) }

var sizeInName = regexp.MustCompile(`/(?:objects=)?(\d{3,})(?:/|$)`)

// finish gathers the figures of every run and computes the goal table.
func (r *report) finish() {
	r.Finished = time.Now()
	r.LoadEnd = loadAverage()
	byKey := map[string]*figure{}
	for _, rec := range r.Runs {
		for _, res := range rec.Results {
			n := rec.N
			if !rec.PerN {
				if m := sizeInName.FindStringSubmatch(res.Name); m != nil {
					n, _ = strconv.Atoi(m[1])
				}
			}
			for unit, v := range res.Metrics {
				key := fmt.Sprintf("%s|%d|%s|%s", rec.Suite, n, res.Name, unit)
				f := byKey[key]
				if f == nil {
					f = &figure{Suite: rec.Suite, N: n, Benchmark: res.Name, Unit: unit}
					byKey[key] = f
					r.Figures = append(r.Figures, f)
				}
				f.Samples = append(f.Samples, v)
			}
		}
	}
	for _, f := range r.Figures {
		s := newStat(f.Samples)
		f.Median, f.Min, f.Max = s.Median, s.Min, s.Max
	}
	slices.SortStableFunc(r.Figures, func(a, b *figure) int {
		if c := strings.Compare(a.Suite, b.Suite); c != 0 {
			return c
		}
		if c := strings.Compare(a.Benchmark, b.Benchmark); c != 0 {
			return c
		}
		if a.N != b.N {
			return a.N - b.N
		}
		return strings.Compare(a.Unit, b.Unit)
	})
	r.goals()
	r.growth()
}

func (r *report) find(suite string, n int, bench, unit string) *figure {
	for _, f := range r.Figures {
		if f.Suite == suite && f.N == n && f.Benchmark == bench && f.Unit == unit {
			return f
		}
	}
	return nil
}

// paired is f(a[i], b[i]) for the i-th run of each: a ratio of the same run.
func paired(a, b *figure, f func(x, y float64) float64) *stat {
	if a == nil || b == nil {
		return nil
	}
	var v []float64
	for i := range min(len(a.Samples), len(b.Samples)) {
		if x := f(a.Samples[i], b.Samples[i]); !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	return newStat(v)
}

func div(x, y float64) float64 { return x / y }

func figStat(f *figure) *stat {
	if f == nil {
		return nil
	}
	return newStat(f.Samples)
}

func scaled(s *stat, k float64) *stat {
	if s == nil {
		return nil
	}
	v := make([]float64, len(s.Samples))
	for i, x := range s.Samples {
		v[i] = x * k
	}
	return newStat(v)
}

// judge sets the row's status from its median value.
func (r *report) judge(row goalRow, suite string) goalRow {
	switch {
	case row.Value == nil:
		row.Status = notMeasured
		if !r.ran[suite] {
			row.Note = strings.TrimPrefix(row.Note+"; not selected by -only", "; ")
		} else if row.Note == "" {
			row.Note = "no result (see the runs below)"
		}
	case row.Op == "":
		row.Status = informatinal
	default:
		v, t := row.Value.Median, row.Target
		ok := map[string]bool{"<=": v <= t, "<": v < t, ">=": v >= t}[row.Op]
		row.Status = map[bool]string{true: met, false: notMet}[ok]
	}
	return row
}

func (r *report) goals() {
	add := func(suite string, row goalRow) { r.Goals = append(r.Goals, r.judge(row, suite)) }
	snap := "BenchmarkFullSnapshot/"
	for _, n := range r.counts {
		base := r.find("snapshot", n, snap+"list-baseline-parallel", "ns/op")
		for _, c := range []struct{ sub, what, goal, op string }{
			{"take", "full snapshot of N objects, in memory (snapshot.Take)", "≤ 1.5× the LIST", "<="},
			{"snapshot-nochange", "full snapshot of N objects into its repository, nothing changed (periodic resync)", "≤ 1.5× the LIST", "<="},
			{"snapshot-commit", "first snapshot of N objects: Take, YAML, one commit of every file", "— (the goal is for a snapshot)", ""},
		} {
			ours := r.find("snapshot", n, snap+c.sub, "ns/op")
			add("snapshot", goalRow{Figure: c.what, N: n, Measured: c.sub + " / list-baseline-parallel (time; both with 8 workers)",
				Ours: figStat(ours), Base: figStat(base), Unit: "ns/op", Value: paired(ours, base, div), ValueFmt: "×",
				Goal: c.goal, Op: c.op, Target: 1.5})
		}
		seq := r.find("snapshot", n, snap+"list-baseline", "ns/op")
		take := r.find("snapshot", n, snap+"take", "ns/op")
		add("snapshot", goalRow{Figure: "full snapshot of N objects beside the one-worker LIST", N: n, Measured: "take / list-baseline (time)",
			Ours: figStat(take), Base: figStat(seq), Unit: "ns/op", Value: paired(take, seq, div), ValueFmt: "×", Goal: "— (for comparison)"})
	}
	r.Goals = append(r.Goals, goalRow{Figure: "full snapshot of N objects beside katafygio", Measured: "katafygio's dump / snapshot",
		Goal: "≤ 1.5× the LIST", Status: notMeasured, Note: "katafygio is not built here (it is not in the module graph, and go.mod stays as it is)"})

	commitSizes := []int{10_000}
	if r.large {
		commitSizes = append(commitSizes, 100_000)
	}
	for _, n := range commitSizes {
		cli := r.find("commit", n, fmt.Sprintf("BenchmarkCommitOneChange/%d/git-cli", n), "ns/op")
		for _, m := range []string{"gitstore-worktree", "gitstore-bare"} {
			ours := r.find("commit", n, fmt.Sprintf("BenchmarkCommitOneChange/%d/%s", n, m), "ns/op")
			add("commit", goalRow{Figure: "incremental commit, 1 change, repository of N files (" + m + ")", N: n, Measured: m + " time per commit",
				Ours: figStat(ours), Unit: "ns/op", Value: scaled(figStat(ours), 1e-6), ValueFmt: "ms", Goal: "< 20 ms", Op: "<", Target: 20})
			row := goalRow{Figure: "incremental commit beside `git add -A && git commit` (" + m + ")", N: n, Measured: "git-cli / " + m + " (time: speed-up)",
				Ours: figStat(ours), Base: figStat(cli), Unit: "ns/op", Value: paired(cli, ours, div), ValueFmt: "×"}
			if n == 100_000 {
				row.Goal, row.Op, row.Target = "≥ 10× faster at 100,000", ">=", 10
			} else {
				row.Goal = "— (≥ 10× is the goal at 100,000)"
			}
			add("commit", row)
		}
	}
	if !r.large {
		r.Goals = append(r.Goals, goalRow{Figure: "incremental commit beside `git add -A && git commit`", N: 100_000, Measured: "git-cli / gitstore",
			Goal: "≥ 10× faster at 100,000", Status: notMeasured, Note: "run with -large"})
	}

	for _, n := range r.counts {
		for _, c := range []struct {
			ours, base, what, goal string
			target                 float64
		}{
			{"first-apply", "kubectl-first-apply", "apply of N objects to an empty target", "≥ 3× faster", 3},
			{"unchanged-reapply", "kubectl-unchanged-reapply", "unchanged re-apply of N objects", "≥ 20× faster", 20},
		} {
			ours := r.find("apply", n, "BenchmarkApply/"+c.ours, "objects/s")
			base := r.find("apply", n, "BenchmarkApply/"+c.base, "objects/s")
			add("apply", goalRow{Figure: c.what, N: n, Measured: c.ours + " / `kubectl apply --server-side -f` (objects/s: speed-up)",
				Ours: figStat(ours), Base: figStat(base), Unit: "objects/s", Value: paired(ours, base, div), ValueFmt: "×",
				Goal: c.goal, Op: ">=", Target: c.target})
		}
	}

	lagN := 10_000
	for _, c := range []struct {
		unit, what, goal string
		target           float64
	}{
		{"single-p50-s", "continuous lag p50, single changes", "≤ 0.5 s", 0.5},
		{"single-p99-s", "continuous lag p99, single changes", "≤ 2 s", 2},
		{"burst50-p50-s", "continuous lag p50, 50 changes/s for 10 s", "≤ 0.5 s", 0.5},
		{"burst50-p99-s", "continuous lag p99, 50 changes/s for 10 s", "≤ 2 s", 2},
	} {
		f := r.find("lag", lagN, "BenchmarkContinuousLag", c.unit)
		add("lag", goalRow{Figure: c.what, N: lagN, Measured: "source change → visible in the target", Ours: figStat(f), Unit: "s",
			Value: figStat(f), ValueFmt: "s", Goal: c.goal, Op: "<=", Target: c.target, Note: "N fixed at 10,000 by the benchmark"})
	}

	for _, ds := range []string{"2GiB-file", "50000x4KiB"} {
		for _, c := range []struct{ phase, unit, what, goal, op, figure string }{
			{"full", "x-tput-agent/raw-a", "full copy", "≥ 0.9× throughput", ">=", "throughput"},
			{"delta-1pct", "x-time-agent/raw-a", "delta 1%", "≤ 1.1× time", "<=", "time"},
			{"no-change", "x-time-agent/raw-a", "no-change pass", "≤ 1.1× time", "<=", "time"},
		} {
			name := "BenchmarkPull/" + ds + "/" + c.phase
			f := r.find("pull", 0, name, c.unit)
			target := map[string]float64{">=": 0.9, "<=": 1.1}[c.op]
			add("pull", goalRow{Figure: "PVC " + c.what + ", " + ds, Measured: "agent / raw `rsync -a -e ssh` (" + c.figure + ")",
				Ours: figStat(r.find("pull", 0, name, "s-agent")), Base: figStat(r.find("pull", 0, name, "s-raw-a")), Unit: "s",
				Value: figStat(f), ValueFmt: "×", Goal: c.goal, Op: c.op, Target: target})
			g := r.find("pull", 0, name, strings.Replace(c.unit, "raw-a", "raw-flags", 1))
			add("pull", goalRow{Figure: "PVC " + c.what + ", " + ds + ", beside rsync with Pull's own flags", Measured: "agent / raw rsync with the same flags (the agent's own overhead)",
				Value: figStat(g), ValueFmt: "×", Goal: "— (for comparison)"})
		}
	}

	rss := goalRow{Figure: "controller RSS with N objects watched", N: lagN, Unit: "MiB", ValueFmt: "MiB", Goal: "≤ 256 MiB at 10,000", Op: "<=", Target: 256}
	if f := r.find("lag", lagN, "BenchmarkContinuousLag", "VmHWM-MiB"); f != nil {
		rss.Measured = "peak RSS (VmHWM) reported by BenchmarkContinuousLag from the controller's start (the test's setup memory returned and the peak reset before): controller and its informers plus the test's small share; static binary (no cgo) and the garbage collector's target `dr-syncer run` sets (50), as deployed"
		rss.Value = figStat(f)
	} else {
		var v []float64
		for _, rec := range r.Runs {
			if rec.Suite == "lag" && rec.MaxRSSMiB > 0 {
				v = append(v, rec.MaxRSSMiB)
			}
		}
		rss.Value = newStat(v)
		rss.Measured = "Maximum resident set size from /usr/bin/time -v of the whole test binary (BenchmarkContinuousLag reported no RSS)"
		if rss.Value == nil {
			rss.Measured = "BenchmarkContinuousLag's VmHWM-MiB, else /usr/bin/time -v of its test binary"
		}
	}
	add("lag", rss)
	// VmHWM's parts, that a reader sees what the heap takes and what the
	// pages of the binary do.
	for _, c := range []struct{ unit, what string }{
		{"peak-RssAnon-MiB", "controller peak anonymous memory (RssAnon, sampled every 20 ms): heap, stacks, runtime"},
		{"RssFile-MiB", "pages of the controller's binary mapped (RssFile) at that peak"},
		{"live-heap-MiB", "controller live heap after a collection at the end (what a memory limit must leave room for)"},
	} {
		if f := r.find("lag", lagN, "BenchmarkContinuousLag", c.unit); f != nil {
			add("lag", goalRow{Figure: c.what, N: lagN, Measured: "BenchmarkContinuousLag's " + c.unit, Unit: "MiB", Value: figStat(f), ValueFmt: "MiB", Goal: "— (informational)"})
		}
	}
	// What the memory costs in CPU: the garbage collector's share grows
	// as its target falls.
	if f := r.find("lag", lagN, "BenchmarkContinuousLag", "cpu-s"); f != nil {
		add("lag", goalRow{Figure: "controller CPU time during the 20 single changes and the 500 burst changes", N: lagN, Measured: "BenchmarkContinuousLag's cpu-s (the test process)", Unit: "s", Value: figStat(f), ValueFmt: "s", Goal: "— (informational)"})
	}
}

// growth compares each time figure measured at 10,000 and at 100,000.
func (r *report) growth() {
	for _, f := range r.Figures {
		if f.N != 100_000 || (f.Unit != "ns/op" && !strings.HasSuffix(f.Unit, "-s")) {
			continue
		}
		small := r.find(f.Suite, 10_000, strings.Replace(f.Benchmark, "100000", "10000", 1), f.Unit)
		if small == nil {
			continue
		}
		r.Growth = append(r.Growth, r.judge(goalRow{Figure: f.Benchmark, N: 100_000, Measured: "time at 100,000 / time at 10,000",
			Ours: figStat(f), Base: figStat(small), Unit: f.Unit, Value: paired(f, small, div), ValueFmt: "×",
			Goal: "≤ 11×", Op: "<=", Target: 11}, f.Suite))
	}
}

func readMachine() machine {
	m := machine{Cores: runtime.NumCPU()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = math.Round(kb/1024/1024*10) / 10
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	m.Hostname, _ = os.Hostname()
	return m
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	return strings.Join(f[:min(3, len(f))], " ")
}

// versions asks each tool the benchmarks run for its version.
func versions(ctx context.Context, root string) map[string]string {
	kb := filepath.Join(root, ".cache", "kube-bin")
	v := map[string]string{}
	for name, argv := range map[string][]string{
		"go":             {"go", "version"},
		"kube-apiserver": {filepath.Join(kb, "kube-apiserver"), "--version"},
		"etcd":           {filepath.Join(kb, "etcd"), "--version"},
		"kubectl":        {filepath.Join(kb, "kubectl"), "version", "--client"},
		"rsync":          {"rsync", "--version"},
		"git":            {"git", "--version"},
		"ssh":            {"ssh", "-V"},
	} {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		cancel()
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if err != nil && line == "" {
			line = "unavailable: " + err.Error()
		}
		v[name] = strings.TrimSpace(line)
	}
	return v
}

// write writes report.json and report.md into dir.
func (r *report) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(r.markdown()), 0o644)
}
