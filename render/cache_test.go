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
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/internal/benchfixture"
	"github.com/dr-syncer/dr-syncer/policies"
)

// editRepo is a repository whose snapshot a test edits commit after
// commit, the generated overlay following as the snapshot stage makes it.
type editRepo struct {
	t    *testing.T
	repo *gitstore.Repository
	cfg  *policies.SyncConfig
	objs map[string]*unstructured.Unstructured // by snapshot path
	gen  map[string][]byte                     // the generated overlay as committed
	head string
}

// newEditRepo commits n objects (ConfigMaps, Deployments and Services in
// turn) over three namespaces, ns0 and ns1 mapped to nsN-dr, ns2 kept.
func newEditRepo(t *testing.T, n int) *editRepo {
	t.Helper()
	cfg := &policies.SyncConfig{Spec: policies.Spec{
		Source: policies.ClusterRef{Name: "prod"}, Target: policies.ClusterRef{Name: "dr"},
		Namespaces: []policies.NamespaceMapping{
			{Source: "ns0", Target: "ns0-dr"}, {Source: "ns1", Target: "ns1-dr"}, {Source: "ns2"}, {Source: "ns3", Target: "ns3-dr"},
		},
	}}
	cfg.Default()
	r := &editRepo{t: t, cfg: cfg, objs: map[string]*unstructured.Unstructured{}}
	for i := range 3 {
		r.put(&unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": fmt.Sprintf("ns%d", i)},
		}})
	}
	for i := range n {
		r.put(editObject(i%3, fmt.Sprintf("ns%d", i/3%3), fmt.Sprintf("obj-%04d", i), 2))
	}
	files := map[string][]byte{"overlays/dr/kustomization.yaml": []byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- generated\n")}
	maps.Copy(files, r.snapshotFiles())
	var err error
	if r.gen, err = Generate(cfg, r.list()); err != nil {
		t.Fatal(err)
	}
	maps.Copy(files, r.gen)
	repo, _, head := newRepo(t, files)
	r.repo, r.head = repo, head.String()
	return r
}

func editObject(kind int, ns, name string, replicas int64) *unstructured.Unstructured {
	switch kind {
	case 0:
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": name}},
			"data":     map[string]any{"mode": "production"}}}
	case 1:
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app": name}},
			"spec": map[string]any{"replicas": replicas,
				"selector": map[string]any{"matchLabels": map[string]any{"app": name}},
				"template": map[string]any{
					"metadata": map[string]any{"labels": map[string]any{"app": name}},
					"spec":     map[string]any{"containers": []any{map[string]any{"name": "app", "image": "example.com/app:1.0"}}}}}}}
	default:
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Service",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"selector": map[string]any{"app": name},
				"ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	}
}

func (r *editRepo) path(o *unstructured.Unstructured) string {
	p, err := gitstore.ObjectPath("prod", objectID(o))
	if err != nil {
		r.t.Fatal(err)
	}
	return p
}

func (r *editRepo) put(o *unstructured.Unstructured) string {
	p := r.path(o)
	r.objs[p] = o
	return p
}

func (r *editRepo) list() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range r.objs {
		out = append(out, o)
	}
	return out
}

func (r *editRepo) snapshotFiles() map[string][]byte {
	files := map[string][]byte{}
	for p, o := range r.objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			r.t.Fatal(err)
		}
		files[p] = data
	}
	return files
}

// commit commits the objects changed (put, or removed: nil), the files
// given, and the generated overlay as it follows.
func (r *editRepo) commit(msg string, changed map[string]*unstructured.Unstructured, files map[string][]byte) {
	r.t.Helper()
	out := map[string][]byte{}
	for p, o := range changed {
		if o == nil {
			delete(r.objs, p)
			out[p] = nil
			continue
		}
		r.objs[p] = o
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			r.t.Fatal(err)
		}
		out[p] = data
	}
	gen, err := Generate(r.cfg, r.list())
	if err != nil {
		r.t.Fatal(err)
	}
	for p := range r.gen {
		if _, ok := gen[p]; !ok {
			out[p] = nil
		}
	}
	for p, data := range gen {
		if string(r.gen[p]) != string(data) {
			out[p] = data
		}
	}
	r.gen = gen
	maps.Copy(out, files)
	r.head = commit(r.t, r.repo, out, msg).String()
}

// check builds the head through c and without a cache, requires the same
// objects, and returns how many kustomize runs the cached build took from
// the cache and ran.
func (r *editRepo) check(c *Cache) (hits, misses int) {
	r.t.Helper()
	h0, m0 := c.Stats()
	got, want := buildBoth(r.t, c, r.repo, r.head, r.cfg) // Build has no cache: the stats are c's build's
	h1, m1 := c.Stats()
	if diff := cmp.Diff(string(stream(r.t, want)), string(stream(r.t, got))); diff != "" {
		r.t.Fatalf("cached build differs from a build (-want +got):\n%s", diff)
	}
	return h1 - h0, m1 - m0
}

// A build through the cache gives what Build gives, after an edit of each
// kind of input, and runs kustomize again only for the chunks the edit
// reaches: one for an object (and the patch the snapshot stage generates
// for it), every chunk for the user's overlay and what it names, one run
// in one piece for an overlay that cannot be partitioned.
func TestCacheFollowsEdits(t *testing.T) {
	withChunkSize(t, 8)
	r := newEditRepo(t, 240)
	c := NewCache()
	var runs []int
	buildTrace = func(chunks int, _ string) { runs = append(runs, chunks) }
	t.Cleanup(func() { buildTrace = nil })

	hits, misses := r.check(c)
	chunks := runs[0]
	if chunks < 10 || hits != 0 || misses != chunks {
		t.Fatalf("first build: %d chunks, %d hits, %d misses; want every chunk run", chunks, hits, misses)
	}
	expect := func(what string, maxMisses int, every bool) {
		t.Helper()
		hits, misses := r.check(c)
		n := runs[len(runs)-1]
		switch {
		case every && hits != 0:
			t.Errorf("%s: %d runs from the cache, want none", what, hits)
		case !every && (misses < 1 || misses > maxMisses):
			t.Errorf("%s: %d runs (%d from the cache) of %d chunks, want 1 to %d", what, misses, hits, n, maxMisses)
		}
		t.Logf("%s: %d chunks, %d hits, %d misses", what, n, hits, misses)
	}

	hits, misses = r.check(c)
	if misses != 0 || hits != chunks {
		t.Errorf("same commit again: %d hits, %d misses; want every chunk from the cache", hits, misses)
	}

	cm := editObject(0, "ns1", "obj-0003", 0)
	cm.Object["data"] = map[string]any{"mode": "staging"}
	r.commit("one ConfigMap", map[string]*unstructured.Unstructured{r.path(cm): cm}, nil)
	expect("a ConfigMap changed", 1, false)

	d := editObject(1, "ns1", "obj-0004", 5) // its generated standby patch changes with it
	r.commit("replicas", map[string]*unstructured.Unstructured{r.path(d): d}, nil)
	expect("a Deployment and its patch changed", 1, false)

	added := editObject(1, "ns2", "obj-9999", 1)
	r.commit("added", map[string]*unstructured.Unstructured{r.path(added): added}, nil)
	expect("a Deployment added", 2, false)

	r.commit("removed", map[string]*unstructured.Unstructured{r.path(editObject(2, "ns0", "obj-0020", 0)): nil}, nil)
	expect("a Service removed", 2, false)

	r.commit("label", nil, map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\nlabels:\n- pairs:\n    site: dr\n"),
	})
	expect("the user's overlay changed", 0, true)

	r.commit("user patch", nil, map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\nlabels:\n- pairs:\n    site: dr\npatches:\n- path: image.yaml\n  target: {kind: Deployment}\n"),
		"overlays/dr/image.yaml":         []byte("- {op: replace, path: /spec/template/spec/containers/0/image, value: mirror.example.com/app:1.0}\n"),
	})
	expect("a patch added to the user's overlay", 0, true)

	r.commit("user patch file", nil, map[string][]byte{
		"overlays/dr/image.yaml": []byte("- {op: replace, path: /spec/template/spec/containers/0/image, value: mirror.example.com/app:2.0}\n"),
	})
	expect("a file the user's overlay names changed", 0, true)

	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "ns3"}}}
	inNew := editObject(0, "ns3", "obj-0001", 0)
	r.commit("new namespace", map[string]*unstructured.Unstructured{r.path(ns): ns, r.path(inNew): inNew}, nil)
	hits, misses = r.check(c)
	t.Logf("a namespace added: %d hits, %d misses", hits, misses)

	r.cfg.Spec.Namespaces[3].Target = "ns3-elsewhere"
	r.commit("namespace moved", nil, nil)
	hits, misses = r.check(c)
	t.Logf("a namespace moved: %d hits, %d misses", hits, misses)
	if misses == 0 {
		t.Errorf("a namespace moved: no run; its chunk must change")
	}

	r.commit("prefix", nil, map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\nnamePrefix: dr-\n"),
	})
	r.check(c)
	if last := runs[len(runs)-1]; last != 0 {
		t.Errorf("namePrefix: built in %d chunks, want one piece", last)
	}
	hits, misses = r.check(c)
	if hits != 1 || misses != 0 {
		t.Errorf("the one-piece build again: %d hits, %d misses; want it from the cache", hits, misses)
	}
	r.commit("prefix and an object", map[string]*unstructured.Unstructured{r.path(cm): editObject(0, "ns1", "obj-0003", 0)}, nil)
	if hits, _ := r.check(c); hits != 0 {
		t.Errorf("one-piece build after an object changed: %d hits, want none", hits)
	}
}

// Every golden case renders through the cache as without it, partitioned or
// not, the first time and from the cache.
func TestCacheGolden(t *testing.T) {
	for _, name := range goldenCases {
		for _, size := range []int{1, 2, 64} {
			t.Run(fmt.Sprintf("%s/chunks-of-%d", name, size), func(t *testing.T) {
				withChunkSize(t, size)
				repo, head, cfg := goldenRepo(t, name)
				c := NewCache()
				for range 2 {
					got, err := c.Build(context.Background(), repo, head, cfg)
					if err != nil {
						t.Fatal(err)
					}
					golden(t, filepath.Join("testdata", name, "rendered.yaml"), stream(t, got))
				}
				if hits, _ := c.Stats(); hits == 0 {
					t.Errorf("the second build took nothing from the cache")
				}
			})
		}
	}
}

// A failing build is not cached, and its error is Build's.
func TestCacheBuildError(t *testing.T) {
	withChunkSize(t, 1)
	repo, _, cfg := goldenRepo(t, "user-patch")
	h := commit(t, repo, map[string][]byte{
		"overlays/dr/kustomization.yaml": []byte("resources:\n- generated\npatches:\n- path: nope.yaml\n"),
		"overlays/dr/nope.yaml":          []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: nope\n  namespace: shop-dr\nspec:\n  replicas: 1\n"),
	}, "patch of nothing")
	c := NewCache()
	_, want := Build(context.Background(), repo, h.String(), cfg)
	for range 2 {
		_, err := c.Build(context.Background(), repo, h.String(), cfg)
		if err == nil || err.Error() != want.Error() {
			t.Fatalf("error: %v, want %v", err, want)
		}
	}
}

// The cache keeps the runs of the last two builds, no more.
func TestCacheEviction(t *testing.T) {
	withChunkSize(t, 8)
	r := newEditRepo(t, 60)
	c := NewCache()
	r.check(c)
	first := len(c.runs)
	for i := range 3 {
		r.commit(fmt.Sprintf("user %d", i), nil, map[string][]byte{
			"overlays/dr/kustomization.yaml": fmt.Appendf(nil, "resources:\n- generated\nlabels:\n- pairs:\n    build: %q\n", fmt.Sprint(i)),
		})
		r.check(c)
	}
	if len(c.runs) != 2*first {
		t.Errorf("%d runs kept, want the %d of the last two builds", len(c.runs), 2*first)
	}
	for _, run := range c.runs {
		if len(run.objs) > 0 && strings.Contains(fmt.Sprint(run.objs[0].GetLabels()), "build:0") {
			t.Errorf("a run of the first build is still there")
		}
	}
}

// literal recognises the selectors that name one string, and only those.
func TestLiteral(t *testing.T) {
	for _, tc := range []struct {
		pattern, want string
		ok            bool
	}{
		{"", "", true},
		{"web", "web", true},
		{`obj\-00003`, "obj-00003", true},
		{regexpQuote("a.b"), "a.b", true},
		{"a.b", "", false},
		{"web|api", "", false},
		{"web.*", "", false},
		{"(?i)web", "", false},
		{"[", "", false},
	} {
		got, ok := literal(tc.pattern)
		if got != tc.want || ok != tc.ok {
			t.Errorf("literal(%q) = %q, %v; want %q, %v", tc.pattern, got, ok, tc.want, tc.ok)
		}
	}
}

func regexpQuote(s string) string { return strings.ReplaceAll(s, ".", `\.`) }

// After random small commits (objects changed, added and removed, in every
// namespace, with the generated overlay following), a build through the
// cache that holds the commit before gives what a fresh build gives.
func TestCacheRandomEdits(t *testing.T) {
	withChunkSize(t, 8)
	remerged := 0
	remergeTrace = func(ok bool) {
		if ok {
			remerged++
		}
	}
	t.Cleanup(func() { remergeTrace = nil })
	r := newEditRepo(t, 300)
	c := NewCache()
	r.check(c)
	rnd := rand.New(rand.NewPCG(6, 1))
	for round := range 15 {
		changed := map[string]*unstructured.Unstructured{}
		paths := slices.Sorted(maps.Keys(r.objs))
		for want := 1 + rnd.IntN(6); len(changed) < want; {
			p := paths[rnd.IntN(len(paths))]
			o := r.objs[p]
			switch op := rnd.IntN(4); {
			case o.GetKind() == "Namespace":
				continue
			case op == 0:
				changed[p] = nil
			case op == 1:
				n := editObject(rnd.IntN(3), fmt.Sprintf("ns%d", rnd.IntN(3)), fmt.Sprintf("new-%d-%d", round, rnd.IntN(1000)), int64(rnd.IntN(4)))
				changed[r.path(n)] = n
			default:
				o = o.DeepCopy()
				switch o.GetKind() {
				case "Deployment":
					o.Object["spec"].(map[string]any)["replicas"] = int64(10 + round)
				default:
					o.SetLabels(map[string]string{"round": fmt.Sprint(round)})
				}
				changed[p] = o
			}
		}
		r.commit(fmt.Sprintf("round %d", round), changed, nil)
		hits, misses := r.check(c)
		t.Logf("round %d: %d objects changed, %d runs from the cache, %d run", round, len(changed), hits, misses)
	}
	// The partitioned builds merged from the build before (remerge.go).
	if remerged == 0 {
		t.Errorf("no build merged from the build before")
	}
	t.Logf("%d builds merged from the build before", remerged)
}

// BenchmarkCacheBuildChanges measures a build through a Cache that holds
// the commit before, after a commit that changes 1 or 30 objects spread
// over the namespaces (ConfigMaps, and Deployments whose generated patches
// change with them), at 10,000 objects.
func BenchmarkCacheBuildChanges(b *testing.B) {
	const n = 10000
	repo, head, cfg := benchRepo(b, n)
	ctx := context.Background()
	round := 0 // across runs: each commit must change something
	for _, changes := range []int{1, 30} {
		b.Run(fmt.Sprintf("objects=%d/changes=%d", n, changes), func(b *testing.B) {
			// The cache starts from the newest commit: the commits of the
			// runs before are on the branch, and a first build against
			// head would run every chunk they changed.
			c := NewCache()
			if _, err := c.Build(ctx, repo, head, cfg); err != nil {
				b.Fatal(err)
			}
			_, cold := c.Stats()
			cpu := benchfixture.CPUTime()
			for b.Loop() {
				b.StopTimer()
				round++
				files := benchChanges(n, changes, round)
				h := commit(b, repo, files, "changes")
				head = h.String()
				b.StartTimer()
				objs, err := c.Build(ctx, repo, head, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if len(objs) != n+10 {
					b.Fatalf("%d objects, want %d", len(objs), n+10)
				}
			}
			b.ReportMetric(float64(benchfixture.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
			_, misses := c.Stats()
			b.ReportMetric(float64(misses-cold)/float64(b.N), "runs/op")
		})
	}
}
