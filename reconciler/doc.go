// Package reconciler makes the target cluster match a rendered commit:
// staged server-side apply with one field manager, prune through an inventory
// kept in the target, immutable-field handling, health waits, drift diff and
// status.
//
// It must not read the source cluster: everything it applies comes from a
// rendered commit.
package reconciler
