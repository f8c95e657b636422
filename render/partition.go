package render

import (
	"context"
	"fmt"
	"maps"
	"path"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
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

// chunkSize is the number of snapshot objects per chunk; small chunks keep
// kustomize's square small, and its cost per run is low.
var chunkSize = 64

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
// the build must be (or might as well be) one piece.
func (b *builder) partition() [][]string {
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
	chunks := [][]string{append(slices.Clone(pinned), first...)}
	for len(rest) > 0 {
		n := min(chunkSize, len(rest))
		chunks = append(chunks, append(slices.Clone(pinned), rest[:n]...))
		rest = rest[n:]
	}
	return chunks
}

func (b *builder) groupKind(f string) string {
	id := b.snap.ids[f]
	return id.Group + "/" + id.Kind
}

func (b *builder) pinned(f string) bool {
	id := b.snap.ids[f]
	return b.pins[pin{kind: id.Kind, name: id.Name}] || b.pins[pin{name: id.Name}]
}

// buildChunks builds every chunk, two or more at a time, and merges the
// results; any failure is returned for Build to build in one piece.
func (b *builder) buildChunks(ctx context.Context, chunks [][]string) ([]*unstructured.Unstructured, error) {
	b.route()
	results := make([][]*unstructured.Unstructured, len(chunks))
	errs := make([]error, len(chunks))
	var failed atomic.Bool
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(chunks)) {
		wg.Go(func() {
			for i := range work {
				if results[i], errs[i] = b.buildChunk(chunks[i]); errs[i] != nil {
					failed.Store(true)
				}
			}
		})
	}
	for i := range chunks {
		if ctx.Err() != nil || failed.Load() {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return merge(results)
}

func (b *builder) buildChunk(files []string) ([]*unstructured.Unstructured, error) {
	in := make(map[string]bool, len(files))
	for _, f := range files {
		in[f] = true
	}
	fs, err := b.filesystem(in)
	if err != nil {
		return nil, err
	}
	return runKustomize(fs, b.plan.root)
}

// cuts says, for a chunk holding the objects in, what each kustomization
// leaves out: the patches of routed units that cannot apply to any of the
// chunk's objects, and the directories (routed units, snapshot
// directories) that hold none of them. Leaving out what gives nothing is
// what makes a chunk cost what its objects cost, not what the overlay does.
func (b *builder) cuts(in map[string]bool) map[string]map[string]map[int]bool {
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
			if !p.keptBy(in) {
				drop(k.file, p.field, p.index)
			}
		}
	}
	return out
}

// keptBy says whether a chunk holding the objects in needs the patch.
func (p *routedPatch) keptBy(in map[string]bool) bool {
	if p.objects == nil {
		return true
	}
	for f := range p.objects {
		if in[f] {
			return true
		}
	}
	return false
}

// route finds, for each patch of a routed unit, the snapshot objects its
// target may select. It over-approximates: version, namespace and label
// and annotation selectors are not looked at (the namespace may already
// have moved when a patch runs), so a patch goes to every chunk where it
// could apply, and kustomize decides there.
func (b *builder) route() {
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
		for _, p := range u.patches {
			sel := types.Selector{ResId: resid.ResId{Gvk: resid.Gvk{Group: p.sel.Group, Kind: p.sel.Kind}, Name: p.sel.Name}}
			re, err := types.NewSelectorRegex(&sel)
			if err != nil {
				continue // kustomize reports it; every chunk keeps the patch
			}
			objects := map[string]bool{}
			for _, f := range files {
				id := b.snap.ids[f]
				if re.MatchGvk(resid.Gvk{Group: id.Group, Kind: id.Kind}) && re.MatchName(id.Name) {
					objects[f] = true
				}
			}
			if len(objects) > 0 {
				p.objects = objects
			}
		}
	}
}

// cut returns the kustomization without the list entries drop names (by
// field and index). The kustomization is decoded once; a chunk re-encodes
// it only when it cuts something. A kustomization left without resources
// gets a name, or kustomize would refuse it as empty.
func (k *kustFile) cut(drop map[string]map[int]bool) ([]byte, error) {
	if len(drop) == 0 {
		return k.raw, nil
	}
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
