// Package pvcsync is the per-commit PVC data stage: it plans one transfer per
// replicated PersistentVolumeClaim, serves source volumes read-only through an
// SSH agent on the source node, pulls them with rsync from a temporary pod in
// the target cluster (or from local processes running the same commands, for
// tests and the demo), and reports one result per PVC.
//
// It must not apply non-PVC resources; the objects are the reconciler's.
package pvcsync
