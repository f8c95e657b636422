// Command bench runs every benchmark of dr-syncer on local control planes
// and writes a side-by-side report of the ratios measured in the same run,
// each next to its goal (issue 10): .cache/bench/report.md for people and
// report.json for tools.
//
//	go run ./hack/bench [-n 1000,10000] [-large] [-count 3] [-only REGEXP] [-out DIR]
//
// Each package's test binary is built once (`go test -c`, so the build is
// not timed) and run with -test.bench, one package at a time, never in
// parallel: the control planes and the machine are shared by nothing else
// the runner starts.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A suite is one benchmark invocation of one package.
type suite struct {
	Name      string // what -only matches
	Pkg       string // ./controller
	Bench     string // -test.bench
	Benchtime string // -test.benchtime
	// PerN: the benchmark builds its fixture of DR_SYNCER_BENCH_OBJECTS
	// objects; it runs once per -n value. Otherwise it runs once, at the
	// sizes it fixes itself.
	PerN bool
	// FixedN is the object count of a suite that fixes it, for the report.
	FixedN int
	// TimeV wraps the run in /usr/bin/time -v (for the process's peak RSS).
	TimeV bool
	// OnePerProcess: the benchmark cannot repeat within a process, so
	// each of the -count runs is a process of its own.
	OnePerProcess bool
	Note          string
}

// suites are the project's benchmarks, in the order they run: the quick
// ones first.
var suites = []suite{
	{Name: "commit", Pkg: "./gitstore", Bench: "^Benchmark(CommitOneChange|CommitFirst|Diff)$", Benchtime: "1s",
		Note: "gitstore at 10,000 files (and 100,000 with -large, DR_SYNCER_BENCH_LARGE=1); -n does not apply"},
	{Name: "render", Pkg: "./render", Bench: "^Benchmark(Build|BuildParts|CacheBuild)$", Benchtime: "1s",
		Note: "render at 1,000 and 10,000 objects, fixed by the benchmark; -n does not apply"},
	{Name: "snapshot", Pkg: "./controller", Bench: "^BenchmarkFullSnapshot$", Benchtime: "3x", PerN: true},
	{Name: "apply", Pkg: "./reconciler", Bench: "^BenchmarkApply$", Benchtime: "1x", PerN: true},
	{Name: "lag", Pkg: "./controller", Bench: "^BenchmarkContinuousLag$", Benchtime: "1x", FixedN: 10_000, TimeV: true, OnePerProcess: true,
		Note: "fixed at 10,000 objects: controller/run_bench_test.go changes config-0100..0249 of each namespace and sizes the target's ServiceCIDR for 10,000, so it runs with DR_SYNCER_BENCH_OBJECTS unset; one process per run (a second run in the same process finds the labels of the first in the target and reports negative lags)"},
	{Name: "apply-commit", Pkg: "./controller", Bench: "^BenchmarkApplyCommit$", Benchtime: "1x", FixedN: 10_000,
		Note: "fixed at 10,000 objects (the target's ServiceCIDR is sized for them), DR_SYNCER_BENCH_OBJECTS unset"},
	{Name: "pull", Pkg: "./pvcsync", Bench: "^BenchmarkPull$", Benchtime: "1x",
		Note: "2 GiB file and 50,000 × 4 KiB files; the ratios are the benchmark's own, of one iteration in which every method ran"},
}

type options struct {
	counts []int
	large  bool
	count  int
	only   *regexp.Regexp
	out    string
	root   string
}

func main() {
	var (
		n     = flag.String("n", "1000,10000", "object counts of the N-object fixtures, comma-separated")
		large = flag.Bool("large", false, "add 100000 to -n, and the 100,000-file gitstore repository")
		count = flag.Int("count", 3, "runs of each benchmark (-test.count); medians and spread are over these")
		only  = flag.String("only", "", "run only the suites whose name matches this regular expression (commit, render, snapshot, apply, lag, apply-commit, pull)")
		out   = flag.String("out", "", "report directory (default .cache/bench at the repository root)")
	)
	flag.Parse()
	root, err := repoRoot()
	if err != nil {
		fatal(err)
	}
	opts := options{count: *count, large: *large, root: root, out: *out}
	if opts.out == "" {
		opts.out = filepath.Join(root, ".cache", "bench")
	}
	// The test binaries run in their package's directory.
	if opts.out, err = filepath.Abs(opts.out); err != nil {
		fatal(err)
	}
	for f := range strings.SplitSeq(*n, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 200 {
			fatal(fmt.Errorf("-n %q: want object counts of at least 200", f))
		}
		opts.counts = append(opts.counts, v)
	}
	if *large && !slices.Contains(opts.counts, 100_000) {
		opts.counts = append(opts.counts, 100_000)
	}
	if opts.count < 1 {
		fatal(errors.New("-count: want at least 1"))
	}
	if opts.only, err = regexp.Compile(*only); err != nil {
		fatal(fmt.Errorf("-only: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, opts)
	if rep != nil {
		if werr := rep.write(opts.out); werr != nil {
			fatal(werr)
		}
		fmt.Fprintf(os.Stderr, "bench: report in %s and %s\n", filepath.Join(opts.out, "report.md"), filepath.Join(opts.out, "report.json"))
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

// repoRoot is the directory of the main module's go.mod.
func repoRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the dr-syncer module")
	}
	return filepath.Dir(mod), nil
}

// run builds and runs the selected suites one after the other, and returns
// the report; a suite that fails is recorded and the others still run.
func run(ctx context.Context, opts options) (*report, error) {
	rep := newReport(ctx, opts)
	binDir := filepath.Join(opts.out, "bin")
	rawDir := filepath.Join(opts.out, "raw")
	for _, d := range []string{binDir, rawDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var selected []suite
	for _, s := range suites {
		if opts.only.MatchString(s.Name) {
			selected = append(selected, s)
		}
	}
	if len(selected) == 0 {
		return nil, fmt.Errorf("-only %q matches no suite", opts.only)
	}
	built := map[string]string{}
	var failed []string
	for _, s := range selected {
		if ctx.Err() != nil {
			break
		}
		bin, ok := built[s.Pkg]
		if !ok {
			bin = filepath.Join(binDir, strings.TrimPrefix(filepath.Base(s.Pkg), ".")+".test")
			args := []string{"test", "-c", "-o", bin, s.Pkg}
			rep.Commands = append(rep.Commands, "CGO_ENABLED=0 go "+shellJoin(args))
			logf("build %s", s.Pkg)
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = opts.root
			// As the images are built (deploy/*/Dockerfile): without cgo,
			// a static binary. With cgo, kustomize's import of package
			// plugin makes the linker export every symbol, and the
			// dynamic symbol tables add ~18 MiB to the RSS measured.
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				rep.addRun(runRecord{Suite: s.Name, Error: fmt.Sprintf("go test -c %s: %v: %s", s.Pkg, err, tail(out, 2000))})
				failed = append(failed, s.Name)
				continue
			}
			built[s.Pkg] = bin
		}
		sizes := []int{s.FixedN}
		if s.PerN {
			sizes = opts.counts
		}
		for _, n := range sizes {
			if ctx.Err() != nil {
				break
			}
			runs, o := 1, opts
			if s.OnePerProcess {
				runs, o.count = opts.count, 1
			}
			for i := range runs {
				if ctx.Err() != nil {
					break
				}
				rec := runSuite(ctx, o, rep, s, bin, n, rawDir, i)
				if rec.Error != "" {
					failed = append(failed, fmt.Sprintf("%s (N=%d)", s.Name, n))
				}
				rep.addRun(rec)
			}
		}
	}
	rep.finish()
	if ctx.Err() != nil {
		return rep, ctx.Err()
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("failed: %s (see the report)", strings.Join(failed, ", "))
	}
	return rep, nil
}

// runSuite runs one suite's test binary at N objects (0: the sizes it fixes).
// run is the process's index among a OnePerProcess suite's runs.
func runSuite(ctx context.Context, opts options, rep *report, s suite, bin string, n int, rawDir string, run int) runRecord {
	rec := runRecord{Suite: s.Name, Package: s.Pkg, N: n, PerN: s.PerN, Note: s.Note}
	args := []string{"-test.run", "^$", "-test.bench", s.Bench, "-test.benchtime", s.Benchtime,
		"-test.count", strconv.Itoa(opts.count), "-test.timeout", "90m"}
	env := []string{"KUBEBUILDER_ASSETS=" + filepath.Join(opts.root, ".cache", "kube-bin")}
	if s.PerN {
		env = append(env, "DR_SYNCER_BENCH_OBJECTS="+strconv.Itoa(n))
	}
	if s.Name == "commit" && opts.large {
		env = append(env, "DR_SYNCER_BENCH_LARGE=1")
	}
	name, argv := bin, args
	timeFile := ""
	if s.TimeV {
		if _, err := os.Stat("/usr/bin/time"); err == nil {
			timeFile = filepath.Join(rawDir, fmt.Sprintf("%s-time-%d.txt", s.Name, run+1))
			name, argv = "/usr/bin/time", append([]string{"-v", "-o", timeFile, bin}, args...)
		}
	}
	rec.Command = fmt.Sprintf("(cd %s && %s %s)", s.Pkg, strings.Join(env, " "), shellJoin(append([]string{name}, argv...)))
	rep.Commands = append(rep.Commands, rec.Command)
	rawName := s.Name
	if s.PerN {
		rawName += fmt.Sprintf("-n%d", n)
	}
	if s.OnePerProcess {
		rawName += fmt.Sprintf("-%d", run+1)
	}
	rawPath := filepath.Join(rawDir, rawName+".txt")
	rec.Raw = rel(opts.out, rawPath)
	raw, err := os.Create(rawPath)
	if err != nil {
		rec.Error = err.Error()
		return rec
	}
	defer raw.Close()

	logf("run %s%s: %s", s.Name, map[bool]string{true: fmt.Sprintf(" at N=%d", n)}[s.PerN], rec.Command)
	var buf bytes.Buffer
	cmd := exec.CommandContext(ctx, name, argv...)
	cmd.Dir = filepath.Join(opts.root, s.Pkg)
	cmd.Env = append(os.Environ(), env...)
	if !s.PerN {
		cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "DR_SYNCER_BENCH_OBJECTS=") })
	}
	// The whole process group, so that a cancelled run takes its
	// apiservers, etcds, sshd and agents with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	w := io.MultiWriter(raw, &buf, prefixWriter{os.Stderr, s.Name, new([]byte)})
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	err = cmd.Run()
	rec.Seconds = time.Since(start).Seconds()
	rec.Header = map[string]string{}
	rec.Results = parseResults(bytes.NewReader(buf.Bytes()), rec.Header)
	if err != nil {
		rec.Error = fmt.Sprintf("%v: %s", err, tail(buf.Bytes(), 1500))
	} else if len(rec.Results) == 0 {
		rec.Error = "no benchmark results: " + tail(buf.Bytes(), 1500)
	}
	if timeFile != "" {
		if data, err := os.ReadFile(timeFile); err == nil {
			if kib, ok := maxRSSKiB(string(data)); ok {
				rec.MaxRSSMiB = kib / 1024
			}
		}
	}
	logf("%s done in %s, %d results", s.Name, time.Duration(rec.Seconds*float64(time.Second)).Round(time.Second), len(rec.Results))
	return rec
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// prefixWriter shows a suite's output as it comes, line by line, for
// whoever watches (a benchmark's name and its figures come in two writes).
type prefixWriter struct {
	w      io.Writer
	prefix string
	line   *[]byte
}

func (p prefixWriter) Write(b []byte) (int, error) {
	*p.line = append(*p.line, b...)
	for {
		i := bytes.IndexByte(*p.line, '\n')
		if i < 0 {
			return len(b), nil
		}
		fmt.Fprintf(p.w, "  [%s] %s\n", p.prefix, (*p.line)[:i])
		*p.line = (*p.line)[i+1:]
	}
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func rel(base, p string) string {
	if r, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return p
}

// shellJoin quotes what a shell would otherwise interpret.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$^|()*?[]{}<>&;\\!#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
