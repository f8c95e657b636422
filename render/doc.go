// Package render builds the target's desired state: the kustomize overlay of a
// target at a given commit, built from that commit's tree (not the work tree)
// in a sandbox with no plugins, no exec and no file access outside the
// repository, into a deterministic list of objects.
//
// It must not apply anything to a cluster.
package render
