package render

import (
	"context"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A build through the cache gives compact objects, which expand to exactly
// what a build without the cache gives, and an object that a commit leaves
// as it was comes back as the same pointer: after a partitioned build that
// re-runs one chunk, and after a delta build (but for the pinned objects,
// which its runs give again).
func TestCacheCompactObjects(t *testing.T) {
	withChunkSize(t, 16)
	const n = 300
	repo, head, cfg := benchRepo(t, n)
	ctx := context.Background()
	c := NewCache()
	check := func(rev string) []*unstructured.Unstructured {
		t.Helper()
		got, want := buildBoth(t, c, repo, rev, cfg)
		if len(got) != len(want) {
			t.Fatalf("%d objects through the cache, %d without", len(got), len(want))
		}
		for i, o := range got {
			if isCompact(want[i]) {
				t.Fatalf("Build gave a compact object: %v", keyOf(want[i]))
			}
			if !isCompact(o) {
				t.Fatalf("the cache gave an object that is not compact: %v", keyOf(o))
			}
			if len(o.Object) != 4 || o.GetName() != want[i].GetName() || o.GetNamespace() != want[i].GetNamespace() ||
				o.GroupVersionKind() != want[i].GroupVersionKind() {
				t.Fatalf("compact object %v: identity %v", keyOf(want[i]), o.Object)
			}
			e, err := Expand(o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(e.Object, want[i].Object) {
				t.Fatalf("%v: expands to\n%#v\nBuild gives\n%#v", keyOf(o), e.Object, want[i].Object)
			}
			if w, _ := Expand(want[i]); w != want[i] {
				t.Fatalf("Expand of a full object is not the object itself")
			}
		}
		return got
	}
	// same returns how many objects of next whose content prev had for
	// the same key came back as another pointer.
	same := func(prev, next []*unstructured.Unstructured) (moved int) {
		byKey := map[objectKey]*unstructured.Unstructured{}
		for _, o := range prev {
			byKey[keyOf(o)] = o
		}
		for _, o := range next {
			p := byKey[keyOf(o)]
			if p != nil && p != o && reflect.DeepEqual(p.Object, o.Object) {
				moved++
			}
		}
		return moved
	}
	first := check(head)
	if again := check(head); same(first, again) != 0 {
		t.Errorf("the same commit built again gave other pointers")
	}
	// One object changed: its chunk runs again, the others come from the
	// cache.
	h1 := commit(t, repo, benchChanges(n, 1, 1), "one").String()
	hits0, _ := c.Stats()
	one := check(h1)
	moved1 := same(first, one)
	t.Logf("after one change: %d unchanged objects moved", moved1)
	if moved := moved1; moved > 16+10 {
		t.Errorf("%d unchanged objects came back as other pointers after a change of one", moved)
	}
	if hits, _ := c.Stats(); hits == hits0 {
		t.Errorf("nothing taken from the cache for the change of one")
	}
	// A burst: a delta build.
	d0 := c.deltaBuilds()
	h2 := commit(t, repo, benchChanges(n, 30, 2), "burst").String()
	burst := check(h2)
	if c.deltaBuilds() != d0+1 {
		t.Fatalf("the burst was not a delta build")
	}
	moved2 := same(one, burst)
	t.Logf("after a burst: %d unchanged objects moved", moved2)
	if moved := moved2; moved > 10 {
		t.Errorf("%d unchanged objects came back as other pointers after a delta build", moved)
	}
	// Stream writes the compact objects as the full ones.
	want, err := Build(ctx, repo, h2, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := string(stream(t, want)), string(stream(t, burst)); a != b {
		t.Errorf("Stream of the compact objects differs")
	}
}

// Every golden case: the cache's objects expand to exactly the maps Build
// gives (the same Go values: int64, float64, bool…), partitioned or not.
func TestCacheCompactGolden(t *testing.T) {
	for _, name := range goldenCases {
		for _, size := range []int{2, 64} {
			t.Run(name, func(t *testing.T) {
				withChunkSize(t, size)
				repo, head, cfg := goldenRepo(t, name)
				want, err := Build(context.Background(), repo, head, cfg)
				if err != nil {
					t.Fatal(err)
				}
				got, err := NewCache().Build(context.Background(), repo, head, cfg)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Fatalf("%d objects, want %d", len(got), len(want))
				}
				for i, o := range got {
					if !isCompact(o) {
						t.Fatalf("%v: not compact", keyOf(o))
					}
					e, err := Expand(o)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(e.Object, want[i].Object) {
						t.Fatalf("%v: expands to\n%#v\nBuild gives\n%#v", keyOf(o), e.Object, want[i].Object)
					}
				}
			})
		}
	}
}

func isCompact(o *unstructured.Unstructured) bool {
	_, ok := CompactJSON(o)
	return ok
}
