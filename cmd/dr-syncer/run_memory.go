package main

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/dr-syncer/dr-syncer/controller"
)

// memoryLimitAuto is the default of --memory-limit: a share of the
// container's memory limit, when it has one.
const memoryLimitAuto = "auto"

// containerShare is the share of the container's memory limit given to the
// Go runtime: the rest is for what it does not count (the binary's pages,
// the kernel's buffers).
const containerShare = 0.9

// setMemoryLimit sets the soft memory limit of the Go runtime
// (runtime/debug.SetMemoryLimit) from --memory-limit: a quantity (512Mi),
// "auto" (90% of the container's cgroup limit, unless GOMEMLIMIT is set or
// there is none) or "none". Below the limit nothing changes; near it the
// garbage collector runs more often rather than let the heap grow to twice
// the live data (GOGC=100): what the first full snapshot and apply of a
// large namespace set leave behind is collected before the container's
// limit is reached. It is a complement, not a cap: a live heap above the
// limit still grows. It returns the limit set, 0 for none.
func setMemoryLimit(flag string) (int64, error) {
	var limit int64
	switch flag {
	case "none", "0":
		return 0, nil
	case memoryLimitAuto, "":
		if os.Getenv("GOMEMLIMIT") != "" {
			return 0, nil // the runtime read it at start
		}
		c, ok := cgroupMemoryLimit()
		if !ok {
			return 0, nil
		}
		limit = int64(float64(c) * containerShare)
	default:
		q, err := resource.ParseQuantity(flag)
		if err != nil || q.Sign() <= 0 {
			return 0, fmt.Errorf("--memory-limit %q: want a size such as 512Mi, auto or none", flag)
		}
		limit = q.Value()
	}
	debug.SetMemoryLimit(limit)
	return limit, nil
}

// setGCPercent sets the garbage collector's target (GOGC,
// runtime/debug.SetGCPercent) from --gc-percent: a percentage, or "auto"
// (controller.DefaultGCPercent unless GOGC is set). It returns the target
// set, 0 when it left the runtime's.
func setGCPercent(flag string) (int, error) {
	pct := controller.DefaultGCPercent
	switch flag {
	case "auto", "":
		if os.Getenv("GOGC") != "" {
			return 0, nil // the runtime read it at start
		}
	default:
		n, err := strconv.Atoi(flag)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("--gc-percent %q: want a percentage such as 50, or auto", flag)
		}
		pct = n
	}
	debug.SetGCPercent(pct)
	return pct, nil
}

// runRegistry is the registry of the controller's /metrics: besides
// dr-syncer's own metrics, the process's (process_resident_memory_bytes,
// process_cpu_seconds_total…) and the Go runtime's (go_memstats_*,
// go_gc_gogc_percent, go_gc_gomemlimit_bytes…), with which the memory the
// controller takes, and the targets it runs under, are seen where it runs.
func runRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// cgroupMemoryLimit reads the memory limit of the process's cgroup (v2,
// then v1); ok is false when there is none.
func cgroupMemoryLimit() (int64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(data))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 says "no limit" with a huge number.
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
