// Package gitstore owns the DR repository: writing an object set as one
// commit in time proportional to what changed, reading the tree at a ref,
// history, revert, and remote fetch and push with credentials that never
// reach logs or errors.
//
// It must not know Kubernetes semantics beyond the paths of the repository
// layout (snapshots/<source>/<namespace>/<group>.<kind>/<name>.yaml).
package gitstore
