// Package snapshot reads the source cluster: discovery of every listable kind
// (built-in and CRD), paginated lists of the mapped namespaces, and the
// turning of live objects into the cleaned object set that the mapping
// (package policies) asks for. Secrets are sealed with age here, before
// anything is written anywhere.
//
// It must not know how the DR repository lays objects out in Git; it hands an
// object set on and nothing more.
//
// # Reading the source
//
// Take discovers every resource that supports list (at its preferred
// version), lists the Namespace objects and keeps those the mapping maps,
// then lists every taken namespaced kind in each mapped namespace, page by
// page (500 a page), with 8 lists in flight. Listing per namespace keeps the
// RBAC needed on the source to the mapped namespaces (plus namespaces and
// CRDs). A group whose discovery fails stops the snapshot: a DR copy with a
// silent gap is worse than a failed one. CRDs are taken when at least one of
// their custom objects is.
//
// # Secrets
//
// With `secrets.mode: encrypt` (the default) each value of a Secret's data is
// replaced by ENC[AGE,v1,<mac>,<ciphertext>]: the age ciphertext for the
// mapping's recipients and a 128-bit HMAC-SHA256 of the plaintext bound to
// namespace, name and key. The MAC key is derived (HKDF) from the age
// identity that can decrypt the Secrets, so a snapshot needs that identity:
// with it, a value whose MAC matches the previous snapshot keeps its
// ciphertext byte for byte, and an unchanged Secret gives no diff; a changed
// key shows as a change of that key only. Plaintext never leaves this
// package: the object set holds sealed values only. Unseal reverses it on
// the way to the target.
package snapshot
