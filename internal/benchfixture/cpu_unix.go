//go:build unix

package benchfixture

import (
	"syscall"
	"time"
)

// CPUTime is the user and system CPU time the process has used so far (0
// where it cannot be read): benchmarks report it next to wall time, which
// on shared machines says more about the neighbours.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
