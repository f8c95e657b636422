//go:build !unix

package gitstore

// processGone cannot tell here: a lock is never taken for stale.
func processGone(int) bool { return false }
