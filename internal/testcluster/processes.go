package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a control-plane process found in /proc.
type process struct {
	pid  int
	name string // kube-apiserver or etcd
}

// controlPlaneProcesses lists the kube-apiserver and etcd processes whose
// arguments name a path inside dir (--cert-dir, --data-dir): the processes
// of the clusters kept in dir, whoever started them.
func controlPlaneProcesses(dir string) ([]process, error) {
	dir = filepath.Clean(dir) + string(filepath.Separator)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var found []process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(string(bytes.TrimRight(cmdline, "\x00")), "\x00")
		name := filepath.Base(args[0])
		if name != "kube-apiserver" && name != "etcd" {
			continue
		}
		for _, a := range args[1:] {
			if strings.Contains(a, dir) {
				found = append(found, process{pid: pid, name: name})
				break
			}
		}
	}
	return found, nil
}

// alive reports whether pid still runs. A zombie has finished: its parent
// (or init) has only not collected it yet.
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z'
}

// StopProcesses stops every control plane kept in dir, gracefully: all
// kube-apiservers first (SIGTERM, then SIGKILL after a grace period), then
// all etcds, since stopping etcd under a running apiserver can hang. It is
// what `make clusters-down` runs; finding nothing to stop is not an error.
func StopProcesses(ctx context.Context, dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	procs, err := controlPlaneProcesses(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range []string{"kube-apiserver", "etcd"} {
		var pids []int
		for _, p := range procs {
			if p.name == name {
				pids = append(pids, p.pid)
			}
		}
		if err := terminate(ctx, pids, syscall.SIGTERM, stopTimeout); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// killAll kills every control plane kept in dir at once, apiservers first.
// It is the watchdog's last resort, when nobody is left to stop them nicely.
func killAll(ctx context.Context, dir string) error {
	procs, err := controlPlaneProcesses(dir)
	if err != nil {
		return err
	}
	var pids []int
	for _, name := range []string{"kube-apiserver", "etcd"} {
		for _, p := range procs {
			if p.name == name {
				pids = append(pids, p.pid)
			}
		}
	}
	return terminate(ctx, pids, syscall.SIGKILL, 10*time.Second)
}

// terminate sends sig to pids and waits until all have ended; those still
// running after grace are killed.
func terminate(ctx context.Context, pids []int, sig syscall.Signal, grace time.Duration) error {
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal pid %d: %w", pid, err)
		}
	}
	deadline := time.Now().Add(grace)
	for {
		var running []int
		for _, pid := range pids {
			if alive(pid) {
				running = append(running, pid)
			}
		}
		if len(running) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if sig == syscall.SIGKILL {
				return fmt.Errorf("pids %v still running after SIGKILL", running)
			}
			return terminate(ctx, running, syscall.SIGKILL, 10*time.Second)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// CountProcesses counts the control-plane processes of the clusters kept in
// dir.
func CountProcesses(dir string) (int, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	procs, err := controlPlaneProcesses(dir)
	return len(procs), err
}
