//go:build unix

package gitstore

import (
	"errors"
	"syscall"
)

// processGone reports whether no process has the ID pid.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
