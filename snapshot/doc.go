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
// then lists every taken namespaced kind in each mapped namespace that may
// hold objects of it, page by page (500 a page), with 8 lists in flight.
// Listing per namespace keeps the RBAC needed on the source to the mapped
// namespaces (plus namespaces and CRDs). A group whose discovery fails stops
// the snapshot: a DR copy with a silent gap is worse than a failed one. CRDs
// are taken when at least one of their custom objects is.
//
// Most kinds are empty in most namespaces (a bare cluster serves about 30
// namespaced kinds, a namespace uses a few), and an empty LIST costs the
// apiserver about what a small one does. So when more than one namespace is
// mapped, each kind is first probed with one cluster-wide LIST of the
// metadata of at most 100 objects. When that holds every object of the kind,
// only the mapped namespaces among theirs are listed, none for a kind
// without objects; when there are more, or the probe fails, every mapped
// namespace is listed, as without a probe. A source that grants rights in
// the mapped namespaces only denies the probe: the first probe goes alone,
// and once one is denied no other is made, so such a source sees one denied
// request per snapshot and is read as before. Secrets are never probed:
// their metadata can hold a value in plaintext (kubectl's
// last-applied-configuration annotation), which a probe would read from
// namespaces that are not mapped. An object that exists when its kind is
// probed is in the probe's answer, so nothing that exists throughout a
// snapshot is missed; one created while the snapshot runs may be in it or
// not, with or without probes, as one created after its namespace's LIST.
//
// Each page is decoded once, straight into the objects (the dynamic client
// decodes a page of a LIST twice over); the values are the same, integers
// as int64. Secrets are listed first and sealed as they come, on every
// core, while the other LISTs run.
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
