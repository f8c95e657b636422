// Package controller runs the cycle that ties the stages together:
// snapshot → commit → render → apply → PVC stage, once for `dr-syncer sync`
// and forever for `dr-syncer run` (manual, scheduled and continuous modes),
// with leader election, metrics and replication lag.
//
// It must not reimplement any stage: it calls packages snapshot, gitstore,
// render, reconciler and pvcsync, and only it (and cmd) sees them all.
package controller
