package render

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// remerge gives what merge gives, sorted, or leaves it to merge: random
// series of chunk results, each from the one before with chunks re-run
// (objects changed, added, removed, moved to another chunk, given twice,
// shared objects changed or missing), chunks added and removed.
func TestRemerge(t *testing.T) {
	obj := func(kind, name, v string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": kind, "metadata": map[string]any{"name": name, "namespace": "ns"}, "data": map[string]any{"v": v},
		}}
	}
	rnd := rand.New(rand.NewPCG(3, 9))
	shared := []*unstructured.Unstructured{obj("Namespace", "a", "0"), obj("Namespace", "b", "0")}
	var chunks [][]string // object names of each chunk, besides the shared ones
	for i := range 6 {
		var names []string
		for j := range 4 {
			names = append(names, fmt.Sprintf("o%d-%d", i, j))
		}
		chunks = append(chunks, names)
	}
	run := func(names []string, v string) []*unstructured.Unstructured {
		out := slices.Clone(shared)
		for _, n := range names {
			out = append(out, obj("ConfigMap", n, v))
		}
		rnd.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	var results [][]*unstructured.Unstructured
	for _, names := range chunks {
		results = append(results, run(names, "0"))
	}
	want := func(results [][]*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
		objs, err := merge(results)
		if err == nil {
			sortObjects(objs)
		}
		return objs, err
	}
	objs, err := want(results)
	if err != nil {
		t.Fatal(err)
	}
	shared0, _ := sharedOf(results)
	base := &mergeBase{results: results, objs: objs, shared: shared0}
	cur := results // the runs the next round's change from
	remerged, fellBack := 0, 0
	for round := range 400 {
		v := fmt.Sprint(round)
		next := slices.Clone(cur)
		for range 1 + rnd.IntN(3) {
			i := rnd.IntN(len(next))
			names := slices.Clone(chunks[i%len(chunks)])
			switch rnd.IntN(9) {
			case 0: // a new chunk
				names = []string{fmt.Sprintf("new-%d", round)}
				next = append(next, nil)
				i = len(next) - 1
			case 1: // a chunk gone
				if len(next) > 2 {
					next = slices.Delete(next, i, i+1)
					continue
				}
			case 2: // an object removed
				names = names[1:]
			case 3: // an object added
				names = append(names, fmt.Sprintf("add-%d", round))
			case 4: // an object of another chunk (merge refuses it, or takes it when in every chunk)
				names = append(names, chunks[rnd.IntN(len(chunks))][0])
			}
			next[i] = run(names, v)
			switch rnd.IntN(10) {
			case 0: // a shared object changed in this chunk only
				next[i] = slices.Clone(next[i])
				for j, o := range next[i] {
					if o.GetKind() == "Namespace" {
						next[i][j] = obj("Namespace", o.GetName(), v)
						break
					}
				}
			case 1: // a shared object missing
				next[i] = slices.DeleteFunc(slices.Clone(next[i]), func(o *unstructured.Unstructured) bool { return o.GetName() == "a" })
			case 2: // a chunk given twice
				next = append(next, next[rnd.IntN(len(next))])
			case 3: // a shared object given twice
				next[i] = append(slices.Clone(next[i]), shared[0])
			}
		}
		wantObjs, wantErr := want(next)
		got, ok := remerge(base, next)
		if ok {
			remerged++
			if wantErr != nil {
				t.Fatalf("round %d: remerge took results that merge refuses: %v", round, wantErr)
			}
			if !slices.Equal(names(got), names(wantObjs)) {
				t.Fatalf("round %d: remerge gives\n%v\nwant\n%v", round, names(got), names(wantObjs))
			}
			for i := range got {
				if !equalObjects(got[i], wantObjs[i]) {
					t.Fatalf("round %d: %s differs", round, names(got)[i])
				}
			}
		} else {
			fellBack++
		}
		// The next base, as sortedMerge makes it.
		switch {
		case ok:
			base = &mergeBase{results: next, objs: got, shared: base.shared}
		case wantErr == nil:
			base = nil
			if s, once := sharedOf(next); once {
				base = &mergeBase{results: next, objs: wantObjs, shared: s}
			}
		}
		if wantErr == nil {
			cur = next
		}
	}
	t.Logf("%d remerged, %d left to merge", remerged, fellBack)
	if remerged < 100 || fellBack < 20 {
		t.Errorf("%d remerged, %d left to merge: the test exercises too little", remerged, fellBack)
	}
}

func names(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func equalObjects(a, b *unstructured.Unstructured) bool {
	return reflect.DeepEqual(a.Object, b.Object)
}
