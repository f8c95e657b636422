// Package crashtest holds the tests that kill dr-syncer with SIGKILL in the
// middle of its work and check that it recovers: the repository stays
// valid (git fsck), no ref points at a half-written commit, the target
// converges to the commit on the next run, and nothing outside dr-syncer's
// inventory is touched. It has no code of its own; the tests build the real
// binary and run it against the real apiservers.
package crashtest
