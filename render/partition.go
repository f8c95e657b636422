package render

import (
	"context"
	"crypto/sha256"
	"fmt"
	"hash/fnv"
	"maps"
	"path"
	"regexp/syntax"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
)

// Partitioned builds.
//
// kustomize keeps the objects of a build in a list and checks every object
// it adds against all the others, several times per build: its time grows
// with the square of the number of objects (0.4 s for 1,000 objects, more
// than three minutes for 10,000 on the machines the tests run on). When the
// overlay only changes each object on its own (kustomizationFields), a build
// of all objects is the union of builds of parts of them: Build then runs
// the whole overlay once per chunk of the snapshot, where each chunk's
// derived kustomizations list only its objects.
//
// What could relate objects of different chunks is kept together:
//   - chunk 0 holds every object that kustomize's name references follow
//     across objects with a namespace (ServiceAccounts and the
//     (Cluster)RoleBindings whose subjects name them; Services and the
//     webhook configurations that name them, when there are any), and the
//     Namespaces;
//   - every chunk holds the targets of patches that fail without their
//     target (strategic-merge patches without target, replicas), and every
//     object the overlay adds itself;
//   - a patch of a kustomization that lists snapshot directories only goes
//     to the chunks that hold an object its target may select.
//
// And what gives nothing in a chunk is left out of it (cuts): the patches
// that cannot apply to its objects, and the kustomizations of namespaces it
// holds no object of, so that a chunk costs what its objects cost, not what
// the whole overlay costs.
//
// The results are checked: an object that more than one chunk gives must
// come from every chunk, identical (chunk 0 holds no other object of the
// snapshot, so two different snapshot objects that end up with the same
// name cannot both pass). If a chunk fails or the check does, Build builds
// the overlay in one piece, and kustomize has the last word.

// chunkSize is the mean number of snapshot objects per chunk (chunkEnd);
// small chunks keep kustomize's square small, and its cost per run is low.
var chunkSize = 32

// colocated are the kinds kept in chunk 0 (group/Kind).
var colocated = map[string]bool{
	"/ServiceAccount": true, "/Namespace": true,
	"rbac.authorization.k8s.io/RoleBinding": true, "rbac.authorization.k8s.io/ClusterRoleBinding": true,
}

// webhookKinds name Services (by namespace and name) in their webhooks;
// when the snapshot has any, Services go to chunk 0 with them.
var webhookKinds = map[string]bool{
	"admissionregistration.k8s.io/ValidatingWebhookConfiguration": true,
	"admissionregistration.k8s.io/MutatingWebhookConfiguration":   true,
}

// partition splits the snapshot objects into chunks, or returns nil when
// the build must be (or might as well be) one piece. The first chunk holds
// the pinned objects (pinned, which every chunk starts with) and those
// related across objects; the delta builds (delta.go) leave it alone.
func (b *builder) partition() [][]string {
	if !b.partitionedOnce {
		b.chunks, b.partitionedOnce = b.split(), true
	}
	return b.chunks
}

func (b *builder) split() [][]string {
	if b.plan.whole != "" || len(b.objects) <= chunkSize {
		return nil
	}
	b.pins = map[pin]bool{}
	for _, p := range b.plan.pins {
		b.pins[p] = true
	}
	kinds := map[string]bool{}
	for k := range colocated {
		kinds[k] = true
	}
	for _, f := range b.objects {
		if webhookKinds[b.groupKind(f)] {
			for k := range webhookKinds {
				kinds[k] = true
			}
			kinds["/Service"] = true
			break
		}
	}
	var pinned, first, rest []string
	for _, f := range b.objects {
		switch {
		case b.pinned(f):
			pinned = append(pinned, f)
		case kinds[b.groupKind(f)]:
			first = append(first, f)
		default:
			rest = append(rest, f)
		}
	}
	b.pinnedFiles = pinned
	chunks := [][]string{append(slices.Clone(pinned), first...)}
	for len(rest) > 0 {
		n := chunkEnd(rest)
		chunks = append(chunks, append(slices.Clone(pinned), rest[:n]...))
		rest = rest[n:]
	}
	return chunks
}

// chunkEnd returns the length of the chunk that starts list. A chunk ends
// after a file whose path hashes to a multiple of chunkSize (or at four
// times chunkSize), not after a count: an object added or removed changes
// its own chunk only, not every chunk after it, so that the cache (cache.go)
// keeps the runs of the others.
func chunkEnd(list []string) int {
	limit := min(len(list), 4*chunkSize)
	for i, f := range list[:limit] {
		h := fnv.New32a()
		h.Write([]byte(f))
		if h.Sum32()%uint32(chunkSize) == 0 {
			return i + 1
		}
	}
	return limit
}

func (b *builder) groupKind(f string) string {
	id := b.snap.ids[f]
	return id.Group + "/" + id.Kind
}

func (b *builder) pinned(f string) bool {
	id := b.snap.ids[f]
	return b.pins[pin{kind: id.Kind, name: id.Name}] || b.pins[pin{name: id.Name}]
}

// buildChunks builds every chunk (or takes it from the cache) and merges
// the results, sorted; any failure is returned for Build to build in one
// piece.
func (b *builder) buildChunks(ctx context.Context, chunks [][]string) ([]*unstructured.Unstructured, error) {
	b.route()
	if b.cache != nil {
		b.planKeys()
	}
	specs := make([]*fsSpec, len(chunks))
	for i, files := range chunks {
		var key runKey
		if b.cache != nil {
			key = b.chunkKey(files)
			if s, ok := b.cache.getSpec(key, b.gen); ok {
				specs[i] = s
				continue
			}
		}
		in := make(map[string]bool, len(files))
		for _, f := range files {
			in[f] = true
		}
		var err error
		if specs[i], err = b.spec(in); err != nil {
			return nil, err
		}
		if b.cache != nil {
			b.cache.putSpec(key, specs[i], b.gen)
		}
	}
	results, err := b.runs(ctx, specs)
	if err != nil {
		return nil, err
	}
	return b.sortedMerge(results)
}

// planKey names everything a chunk's spec reads besides the chunk's own
// object files and their patches: the overlay's root, the files of the
// walk by path and blob — the files only routed patches read by path —,
// every kustomization by blob with its directory children and routed
// patches (and whether the route found objects for each), the snapshot's
// directories and the directories the overlay reaches. A chunk's spec is a
// function of this key, of the files of the patches every chunk keeps, and
// of its files and their patches' (chunkKey); computing it costs the
// number of kustomizations and patches, not of snapshot objects. It is
// also the delta key, under which a delta build (delta.go) starts from the
// build before, finding what a changed patch file reaches by the route.
func (b *builder) planKey() runKey {
	h := sha256.New()
	// Written through a buffer: h.Write of each string, or blob hash,
	// allocates a copy of it.
	var buf []byte
	flush := func() {
		if len(buf) >= 4096 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	str := func(s string) { buf = append(append(buf, s...), 0); flush() }
	num := func(i int) { buf = append(strconv.AppendInt(buf, int64(i), 10), 0); flush() }
	file := func(p string) { str(p); blob := b.t.files[p]; buf = append(buf, blob[:]...) }
	str("render-plan-v2")
	str(b.plan.root)
	str(b.snap.root)
	for _, set := range []map[string]bool{b.plan.files, b.plan.snapshotFiles, b.plan.routedFiles} {
		str("files")
		for _, p := range slices.Sorted(maps.Keys(set)) {
			if !b.plan.routedFiles[p] || b.plan.files[p] || b.plan.snapshotFiles[p] {
				file(p)
			} else {
				str(p)
			}
		}
	}
	str("refs")
	for _, d := range slices.Sorted(maps.Keys(b.plan.snapshotRefs)) {
		str(d)
	}
	str("dirs")
	for _, d := range b.snap.dirs {
		str(d)
	}
	for _, d := range slices.Sorted(maps.Keys(b.plan.kusts)) {
		k := b.plan.kusts[d]
		str("kust")
		str(d)
		file(k.file)
		for _, c := range k.children {
			str(c.field)
			num(c.index)
			str(c.dir)
		}
		if k.unit == nil {
			continue
		}
		str("unit")
		for _, sd := range k.unit.dirs {
			str(sd)
		}
		for _, p := range k.unit.patches {
			str(p.field)
			num(p.index)
			str(p.file)
			if p.objects != nil {
				str("routed")
			}
		}
	}
	h.Write(buf)
	var k runKey
	h.Sum(k[:0])
	return k
}

// chunkKey names the spec of the chunk of files: planKey (the plan,
// with the files of routed patches by path), the files of the routed
// patches every chunk keeps (those the route found no object for) by path
// and blob, and the chunk's files by path and blob, each with the files of
// the patches routed to it by path and blob — which patches the chunk
// takes follows from the files' paths (route matches a patch against an
// object's path, by the selector the kustomization's blob holds). A patch
// file that changes (a generated patch, with its object) misses the
// chunks it is routed to, not every chunk.
func (b *builder) chunkKey(files []string) runKey {
	h := sha256.New()
	// Written through a buffer the builder keeps: h.Write of a path, or of
	// a blob hash, allocates a copy of it (10,000 a build).
	buf := append(b.keyBuf[:0], "render-chunk-v2\x00"...)
	buf = append(buf, b.deltaID[:]...)
	buf = append(buf, b.keptID[:]...)
	patchFiles := b.keyFiles[:0]
	for _, f := range files {
		buf = append(buf, f...)
		blob := b.t.files[f]
		buf = append(buf, blob[:]...)
		patchFiles = patchFiles[:0]
		for _, p := range b.patchesOf[f] {
			if p.file != "" {
				patchFiles = append(patchFiles, p.file)
			}
		}
		slices.Sort(patchFiles) // patchesOf's order is the route's, not stable
		for _, pf := range slices.Compact(patchFiles) {
			buf = append(buf, 0)
			buf = append(buf, pf...)
			pb := b.t.files[pf]
			buf = append(buf, pb[:]...)
		}
		buf = append(buf, '\n')
		if len(buf) >= 4096 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	b.keyBuf, b.keyFiles = buf[:0], patchFiles[:0]
	var k runKey
	h.Sum(k[:0])
	return k
}

// keptKey names the files of the routed patches that every chunk keeps
// (the route found no object for them), by path and blob.
func (b *builder) keptKey() runKey {
	h := sha256.New()
	for _, d := range slices.Sorted(maps.Keys(b.plan.kusts)) {
		k := b.plan.kusts[d]
		if k.unit == nil {
			continue
		}
		for _, p := range k.unit.patches {
			if p.objects == nil && p.file != "" {
				h.Write([]byte(p.file))
				blob := b.t.files[p.file]
				h.Write(blob[:])
			}
		}
	}
	var k runKey
	h.Sum(k[:0])
	return k
}

// cuts says, for a chunk holding the objects in, what each kustomization
// leaves out: the patches of routed units that cannot apply to any of the
// chunk's objects, and the directories (routed units, snapshot
// directories) that hold none of them. Leaving out what gives nothing is
// what makes a chunk cost what its objects cost, not what the overlay does.
func (b *builder) cuts(in map[string]bool, routed map[*routedPatch]bool) map[string]map[string]map[int]bool {
	holds := map[string]bool{} // snapshot directory → holds an object of the chunk
	for f := range in {
		holds[path.Dir(path.Dir(f))] = true
	}
	emptyDir := func(d string) bool {
		if d == b.snap.root {
			return len(in) == 0
		}
		return !holds[d]
	}
	empty := func(d string) bool {
		if b.snap.isDerived(d) {
			return emptyDir(d)
		}
		k := b.plan.kusts[d]
		if k == nil || k.unit == nil {
			return false
		}
		for _, sd := range k.unit.dirs {
			if !emptyDir(sd) {
				return false
			}
		}
		return true
	}
	out := map[string]map[string]map[int]bool{}
	drop := func(file, field string, i int) {
		if out[file] == nil {
			out[file] = map[string]map[int]bool{}
		}
		if out[file][field] == nil {
			out[file][field] = map[int]bool{}
		}
		out[file][field][i] = true
	}
	for _, k := range b.plan.kusts {
		for _, c := range k.children {
			if empty(c.dir) {
				drop(k.file, c.field, c.index)
			}
		}
		if k.unit == nil {
			continue
		}
		for _, p := range k.unit.patches {
			if p.objects != nil && !routed[p] {
				drop(k.file, p.field, p.index)
			}
		}
	}
	return out
}

// routedTo returns the routed patches that may apply to the objects in
// (those with objects; the others every chunk keeps).
func (b *builder) routedTo(in map[string]bool) map[*routedPatch]bool {
	out := map[*routedPatch]bool{}
	for f := range in {
		for _, p := range b.patchesOf[f] {
			out[p] = true
		}
	}
	return out
}

// planKeys computes planKey and keptKey once (route first).
func (b *builder) planKeys() {
	if !b.planned {
		b.deltaID, b.keptID = b.planKey(), b.keptKey()
		b.planned = true
	}
}

// route finds, for each patch of a routed unit, the snapshot objects its
// target may select (once). It over-approximates: version, namespace and
// label and annotation selectors are not looked at (the namespace may already
// have moved when a patch runs), so a patch goes to every chunk where it
// could apply, and kustomize decides there.
func (b *builder) route() {
	if b.patchesOf != nil {
		return
	}
	b.patchesOf = map[string][]*routedPatch{}
	for _, k := range b.plan.kusts {
		u := k.unit
		if u == nil {
			continue
		}
		var files []string
		for _, d := range u.dirs {
			if d == b.snap.root {
				files = b.snap.reached(map[string]bool{d: true})
				break
			}
			files = append(files, b.snap.objects[d]...)
		}
		// A target that names one object (every generated patch does) is
		// looked up, not matched against every file of the unit.
		var byName map[string][]string
		for _, p := range u.patches {
			group, gOK := literal(p.sel.Group)
			kind, kOK := literal(p.sel.Kind)
			name, nOK := literal(p.sel.Name)
			var match func(gitstore.ObjectID) bool
			candidates := files
			switch {
			case gOK && kOK && nOK && p.sel.Name != "":
				if byName == nil {
					byName = map[string][]string{}
					for _, f := range files {
						byName[b.snap.ids[f].Name] = append(byName[b.snap.ids[f].Name], f)
					}
				}
				candidates = byName[name]
				match = func(id gitstore.ObjectID) bool {
					return (p.sel.Group == "" || id.Group == group) && (p.sel.Kind == "" || id.Kind == kind)
				}
			default:
				sel := types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Group: p.sel.Group, Kind: p.sel.Kind}, Name: p.sel.Name}}
				re, err := types.NewSelectorRegex(&sel)
				if err != nil {
					continue // kustomize reports it; every chunk keeps the patch
				}
				match = func(id gitstore.ObjectID) bool {
					return re.MatchGvk(resid.Gvk{Group: id.Group, Kind: id.Kind}) && re.MatchName(id.Name)
				}
			}
			objects := map[string]bool{}
			for _, f := range candidates {
				if match(b.snap.ids[f]) {
					objects[f] = true
				}
			}
			if len(objects) > 0 {
				p.objects = objects
				for f := range objects {
					b.patchesOf[f] = append(b.patchesOf[f], p)
				}
			}
		}
	}
}

// cut returns the kustomization without the list entries drop names (by
// field and index), re-encoded (even when it drops nothing). The
// kustomization is decoded once, for all the chunks. A kustomization left
// without resources gets a name, or kustomize would refuse it as empty.
func (k *kustFile) cut(drop map[string]map[int]bool) ([]byte, error) {
	k.once.Do(func() { k.decodeErr = yaml.Unmarshal(k.raw, &k.decoded) })
	if k.decodeErr != nil {
		return nil, fmt.Errorf("%s: %w", k.file, k.decodeErr)
	}
	m := maps.Clone(k.decoded)
	for field, indexes := range drop {
		list, _ := m[field].([]any)
		var kept []any
		for i, e := range list {
			if !indexes[i] {
				kept = append(kept, e)
			}
		}
		if len(kept) == 0 {
			delete(m, field)
		} else {
			m[field] = kept
		}
	}
	if _, ok := m["metadata"]; !ok {
		m["metadata"] = map[string]any{"name": "chunk"}
	}
	return yaml.Marshal(m)
}

type objectKey struct{ group, kind, namespace, name string }

func keyOf(o *unstructured.Unstructured) objectKey {
	gvk := o.GroupVersionKind()
	return objectKey{gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName()}
}

// merge unions the chunks' objects, checking that an object given by more
// than one chunk is given by all of them, identical.
func merge(results [][]*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	type seen struct {
		obj    *unstructured.Unstructured
		chunks int
	}
	all := map[objectKey]*seen{}
	var order []objectKey
	for _, objs := range results {
		for _, o := range objs {
			k := keyOf(o)
			s := all[k]
			if s == nil {
				all[k] = &seen{obj: o, chunks: 1}
				order = append(order, k)
				continue
			}
			// Through a cache, both compact: their JSON compared.
			if !equality.Semantic.DeepEqual(s.obj.Object, o.Object) {
				return nil, fmt.Errorf("%v: differs between chunks", k)
			}
			s.chunks++
		}
	}
	out := make([]*unstructured.Unstructured, 0, len(order))
	for _, k := range order {
		s := all[k]
		if s.chunks != 1 && s.chunks != len(results) {
			return nil, fmt.Errorf("%v: given by %d of %d chunks", k, s.chunks, len(results))
		}
		out = append(out, s.obj)
	}
	return out, nil
}

// literal returns the string a selector's regular expression matches when
// it matches exactly one (kustomize anchors it: "^(?:re)$"), as
// regexp.QuoteMeta makes them. An empty pattern is literal too (it matches
// anything: the callers look at it first).
func literal(pattern string) (string, bool) {
	if pattern == "" {
		return "", true
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return "", false
	}
	re = re.Simplify()
	if re.Op != syntax.OpLiteral || re.Flags&syntax.FoldCase != 0 {
		return "", false
	}
	return string(re.Rune), true
}
