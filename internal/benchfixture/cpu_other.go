//go:build !unix

package benchfixture

import "time"

// CPUTime is 0 where the process's CPU time is not read (see cpu_unix.go).
func CPUTime() time.Duration { return 0 }
