// Package policies owns the DR mapping: the types of dr-syncer.yaml (clusters,
// namespace mappings, kinds taken, Secret handling, storage-class and
// access-mode mappings, DR standby, schedule and mode), their defaults and
// validation, the table of kinds that are never taken, and how an object is
// cleaned and transformed so that it can be applied again elsewhere.
//
// It must not talk to a cluster or to Git: everything here is a pure function
// of the mapping and of the objects handed in, so it is tested without either.
package policies
