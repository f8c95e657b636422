package testcluster

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// watchdogEnv, when set, turns a test binary that calls Main into the
// watchdog of the clusters kept in the directory it names.
const watchdogEnv = "DR_SYNCER_TESTCLUSTER_WATCHDOG"

const tempPrefix = "dr-syncer-clusters-"

// Main starts a source and a target cluster, stores them in *pair, runs the
// package's tests and stops the clusters. Call it from TestMain; it does not
// return.
//
// The clusters are stopped when the tests end or fail, and on SIGINT or
// SIGTERM. So that nothing survives a panic, a -timeout or a SIGKILL either,
// Main first starts a watchdog (this same test binary, in its own process
// group) that holds the read end of a pipe: when the pipe closes without the
// word that all is clean, it kills the control planes and removes their
// directory.
func Main(m *testing.M, pair **Pair) {
	if dir := os.Getenv(watchdogEnv); dir != "" {
		os.Exit(watch(dir, os.Stdin))
	}
	if fuzzWorker() {
		os.Exit(m.Run())
	}
	os.Exit(runMain(m, pair))
}

// fuzzWorker reports whether this process is a worker of `go test -fuzz`:
// it runs only the fuzz target, which needs no clusters, and a pair per
// worker would cost seconds and memory for nothing (the coordinating
// process has its own).
func fuzzWorker() bool {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.fuzzworker")
	return f != nil && f.Value.String() == "true"
}

func runMain(m *testing.M, pair **Pair) int {
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	wd, err := startWatchdog(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	p, err := Start(context.Background(), Options{Dir: dir})
	if err != nil {
		_ = killAll(context.Background(), dir)
		_ = os.RemoveAll(dir)
		wd.allClean()
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	*pair = p

	stop := func() error {
		err := p.Stop()
		if rmErr := os.RemoveAll(dir); rmErr != nil && err == nil {
			err = rmErr
		}
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "testcluster: %v: stopping the clusters\n", sig)
		if err := stop(); err != nil {
			// Leave the rest to the watchdog: do not say all is clean.
			fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
			os.Exit(1)
		}
		wd.allClean()
		os.Exit(128 + int(sig.(syscall.Signal)))
	}()

	code := m.Run()
	signal.Stop(sigs)
	if err := stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1 // the watchdog cleans what is left
	}
	wd.allClean()
	return code
}

// watchdog is the parent's side of the watchdog's pipe.
type watchdog struct{ w io.WriteCloser }

const allCleanWord = "clean"

func startWatchdog(dir string) (*watchdog, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	// No context: the watchdog must outlive everything in this process.
	cmd := exec.Command(exe) //nolint:noctx
	cmd.Env = append(os.Environ(), watchdogEnv+"="+dir)
	// Its own process group keeps it out of reach of a terminal's Ctrl-C,
	// which the test binary handles. Its output goes nowhere: writing to a
	// closed pipe after `go test` has gone would kill it before it cleans.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	// Nobody waits for it; it exits on its own when the pipe closes.
	go func() { _ = cmd.Wait() }()
	return &watchdog{w: w}, nil
}

// allClean tells the watchdog that the clusters were stopped and their
// directory removed, so it has nothing to do.
func (wd *watchdog) allClean() {
	_, _ = io.WriteString(wd.w, allCleanWord+"\n")
	_ = wd.w.Close()
}

// watch is the watchdog: it waits for its standard input to close, and
// unless it was told that all is clean, kills the control planes kept in dir
// and removes dir.
func watch(dir string, in io.Reader) int {
	if !strings.HasPrefix(filepath.Base(dir), tempPrefix) {
		return 2 // never remove anything but a directory of ours
	}
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		if sc.Text() == allCleanWord {
			return 0
		}
	}
	code := 0
	if err := killAll(context.Background(), dir); err != nil {
		code = 1
	}
	if err := os.RemoveAll(dir); err != nil {
		code = 1
	}
	return code
}
