// Package snapshot reads the source cluster: discovery of every listable kind
// (built-in and CRD), paginated lists and watches of the mapped namespaces, and
// the turning of live objects into the cleaned object set that the mapping
// (package policies) asks for.
//
// It must not know how the DR repository lays objects out in Git; it hands an
// object set to package gitstore and nothing more.
package snapshot
