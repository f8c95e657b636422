// Package deploycheck holds the tests of the manifests in deploy/: every
// kustomization there is built with the kustomize API, and every object it
// makes is server-side applied as a dry run against the real apiserver of
// the cluster it is meant for (the controller's against the target, the
// agent's and the read-only RBAC's against the source). A table of checks
// then holds the security properties that deploy/README.md promises to the
// built objects, and no file under deploy/ may name an image registry.
//
// It has no code of its own: deploy/ holds manifests and Dockerfiles only,
// and this package is where their tests live.
package deploycheck
