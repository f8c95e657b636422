package render

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func (c *Cache) deltaBuilds() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deltas
}

// goldenEditRepo is an editRepo holding the golden case name: its mapping,
// snapshot and user overlay, with the generated overlay following.
func goldenEditRepo(t *testing.T, name string) *editRepo {
	t.Helper()
	in := readDir(t, filepath.Join("testdata", name))
	for p := range in {
		if strings.HasPrefix(p, "generated/") || p == "rendered.yaml" {
			delete(in, p)
		}
	}
	cfg := loadConfig(t, in["dr-syncer.yaml"])
	r := &editRepo{t: t, cfg: cfg, objs: map[string]*unstructured.Unstructured{}}
	for _, o := range decodeSnapshot(t, in, "snapshots/"+cfg.Spec.Source.Name+"/") {
		r.put(o)
	}
	var err error
	if r.gen, err = Generate(cfg, r.list()); err != nil {
		t.Fatal(err)
	}
	maps.Copy(in, r.gen)
	repo, _, head := newRepo(t, in)
	r.repo, r.head = repo, head.String()
	return r
}

// A delta build (a commit changing objects of several chunks) gives what a
// fresh build gives, on every golden case — the user's patches, images,
// labels, an object the overlay adds, a patch that pins its target,
// RoleBindings, namespaces moved — through random commits that change,
// add and remove objects (and the generated patches that follow them).
func TestCacheDeltaGolden(t *testing.T) {
	for _, name := range goldenCases {
		t.Run(name, func(t *testing.T) {
			withChunkSize(t, 1)
			r := goldenEditRepo(t, name)
			var namespaces []string
			for _, o := range r.objs {
				if o.GetNamespace() != "" && !slices.Contains(namespaces, o.GetNamespace()) {
					namespaces = append(namespaces, o.GetNamespace())
				}
			}
			slices.Sort(namespaces)
			// More objects, that the partition has chunks to spare.
			added := map[string]*unstructured.Unstructured{}
			for i := range 12 {
				o := editObject(i%3, namespaces[i%len(namespaces)], fmt.Sprintf("extra-%02d", i), 2)
				added[r.path(o)] = o
			}
			r.commit("more objects", added, nil)
			c := NewCache()
			r.check(c)
			rnd := rand.New(rand.NewPCG(7, uint64(len(name))))
			const rounds = 20
			for round := range rounds {
				changed := map[string]*unstructured.Unstructured{}
				paths := slices.Sorted(maps.Keys(r.objs))
				for want := 3 + rnd.IntN(5); len(changed) < want; {
					p := paths[rnd.IntN(len(paths))]
					o := r.objs[p].DeepCopy()
					switch op := rnd.IntN(6); {
					case o.GetKind() == "Namespace":
						continue
					case op == 0 && o.GetKind() == "ConfigMap":
						changed[p] = nil
					case op == 1:
						n := editObject(0, namespaces[rnd.IntN(len(namespaces))], fmt.Sprintf("new-%d-%d", round, rnd.IntN(1000)), 1)
						changed[r.path(n)] = n
					default:
						if _, ok, _ := unstructured.NestedInt64(o.Object, "spec", "replicas"); ok {
							_ = unstructured.SetNestedField(o.Object, int64(3+round), "spec", "replicas")
						}
						labels := o.GetLabels()
						if labels == nil {
							labels = map[string]string{}
						}
						labels["round"] = fmt.Sprint(round)
						o.SetLabels(labels)
						changed[p] = o
					}
				}
				r.commit(fmt.Sprintf("round %d", round), changed, nil)
				hits, misses := r.check(c)
				t.Logf("round %d: %d objects changed, %d runs from the cache, %d run, %d delta builds", round, len(changed), hits, misses, c.deltaBuilds())
			}
			// Most cases relate most of their objects (RoleBindings,
			// webhooks, pinned patch targets): chunk 0 is theirs, and a
			// commit that changes one is built in chunks.
			if d := c.deltaBuilds(); d < 2 {
				t.Errorf("%d delta builds in %d rounds; want at least 2", d, rounds)
			}
		})
	}
}

// On the benchmarks' snapshot (10 namespaces each mapped to another, with
// DR standby patches), commits of 30 changes over every namespace —
// ConfigMaps, Services, and Deployments with their generated patches —
// are delta builds, and give what a fresh build gives.
func TestCacheDeltaBench(t *testing.T) {
	const n = 1000
	repo, head, cfg := benchRepo(t, n)
	ctx := context.Background()
	c := NewCache()
	if _, err := c.Build(ctx, repo, head, cfg); err != nil {
		t.Fatal(err)
	}
	const rounds = 6
	for round := 1; round <= rounds; round++ {
		files := benchChanges(n, 30, round)
		h := commit(t, repo, files, fmt.Sprintf("round %d", round)).String()
		got, want := buildBoth(t, c, repo, h, cfg)
		if diff := cmp.Diff(string(stream(t, want)), string(stream(t, got))); diff != "" {
			t.Fatalf("round %d: the delta build differs from a build (-want +got):\n%s", round, diff)
		}
	}
	if d := c.deltaBuilds(); d != rounds {
		t.Errorf("%d delta builds in %d rounds; want every one", d, rounds)
	}
}

// splice takes out and puts in objects keeping the order of a build, and
// refuses what only the partitioned build can judge.
func TestSplice(t *testing.T) {
	obj := func(apiVersion, kind, ns, name, v string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind,
			"metadata": map[string]any{"name": name, "namespace": ns}, "data": map[string]any{"v": v}}}
	}
	names := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetAPIVersion()+"/"+o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()+"="+o.Object["data"].(map[string]any)["v"].(string))
		}
		return out
	}
	a, b, c := obj("v1", "ConfigMap", "ns", "a", "1"), obj("v1", "ConfigMap", "ns", "b", "1"), obj("v1", "ConfigMap", "ns", "c", "1")
	d := obj("apps/v1", "Deployment", "ns", "a", "1")
	prev := []*unstructured.Unstructured{d, a, b, c}
	sortObjects(prev)
	for _, tc := range []struct {
		name          string
		before, after []*unstructured.Unstructured
		want          []string // nil: refused
	}{
		{"modified", []*unstructured.Unstructured{b}, []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "b", "2")},
			[]string{"v1/ConfigMap/ns/a=1", "v1/ConfigMap/ns/b=2", "v1/ConfigMap/ns/c=1", "apps/v1/Deployment/ns/a=1"}},
		{"added and removed", []*unstructured.Unstructured{a}, []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "bb", "1"), obj("v1", "ConfigMap", "ns", "z", "1")},
			[]string{"v1/ConfigMap/ns/b=1", "v1/ConfigMap/ns/bb=1", "v1/ConfigMap/ns/c=1", "v1/ConfigMap/ns/z=1", "apps/v1/Deployment/ns/a=1"}},
		{"before not as built", []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "b", "9")}, nil, nil},
		{"before not built", []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "x", "1")}, nil, nil},
		{"another object's place", nil, []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "c", "2")}, nil},
		{"another version of one", nil, []*unstructured.Unstructured{obj("apps/v2", "Deployment", "ns", "a", "1")}, nil},
		{"twice", []*unstructured.Unstructured{b}, []*unstructured.Unstructured{obj("v1", "ConfigMap", "ns", "b", "2"), obj("v1", "ConfigMap", "ns", "b", "3")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := splice(prev, tc.before, tc.after)
			if tc.want == nil {
				if ok {
					t.Fatalf("spliced %v; want it refused", names(got))
				}
				return
			}
			if !ok {
				t.Fatal("refused")
			}
			if diff := cmp.Diff(tc.want, names(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
