package controller

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/robfig/cron/v3"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/internal/testcluster"
	"github.com/dr-syncer/dr-syncer/render"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

// runFixture is a source namespace mapped to itself, a repository with the
// overlay of the mapping, and the options of a controller for them.
type runFixture struct {
	ns   string
	dir  string
	repo *gitstore.Repository
	opts RunOptions
}

func newRunFixture(t *testing.T, mode string) *runFixture {
	t.Helper()
	ns := clusters.Source.Namespace(t)
	replication := "  replication: {mode: " + mode + "}\n"
	if mode == "scheduled" {
		replication = "  replication: {mode: scheduled, schedule: \"* * * * *\"}\n"
	}
	cfg := decodeConfig(t, fmt.Sprintf(`apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: %[1]s}
spec:
  source: {name: src}
  target: {name: tgt}
  namespaces:
  - {source: %[1]s}
  secrets: {mode: exclude}
`, ns)+replication)
	repo, dir := skeletonRepo(t, cfg)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	return &runFixture{ns: ns, dir: dir, repo: repo, opts: RunOptions{
		Repo: repo, Config: cfg,
		Source: clusters.Source.Config, Target: clusters.Target.Config,
		LeaseDuration: 3 * time.Second, Debounce: time.Second,
		Logger: log,
	}}
}

// testWriter sends log lines to t.Log, and drops them once the test ended.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line logged after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a controller until the test ends or stop is called, and
// returns its registry.
func (f *runFixture) start(t *testing.T, opts RunOptions) (reg *prometheus.Registry, stop func()) {
	t.Helper()
	reg = prometheus.NewRegistry()
	opts.Registry = reg
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30s of its context's end")
			}
		})
	}
	t.Cleanup(stop)
	return reg, stop
}

// metric reads one sample of the registry: a counter or gauge whose labels
// include labels (name=value pairs), or a histogram's sample count.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !hasLabel(m, labels[i], labels[i+1]) {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			case m.Histogram != nil:
				sum += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// commitsSince lists the commits of the branch after base, newest first.
func commitsSince(t *testing.T, repo *gitstore.Repository, base plumbing.Hash) []gitstore.CommitInfo {
	t.Helper()
	var out []gitstore.CommitInfo
	require.NoError(t, repo.Log(context.Background(), DefaultBranch, func(c gitstore.CommitInfo) bool {
		if c.Hash == base {
			return false
		}
		out = append(out, c)
		return true
	}))
	return out
}

func head(t *testing.T, repo *gitstore.Repository) plumbing.Hash {
	t.Helper()
	h, err := repo.Head(context.Background(), DefaultBranch)
	require.NoError(t, err)
	return h
}

func createConfigMap(t *testing.T, c *testcluster.Cluster, ns, name, value string) {
	t.Helper()
	_, err := c.Clientset().CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": value},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// targetValue is the value of a ConfigMap in the target, "" when absent.
func targetValue(ns, name string) string {
	cm, err := clusters.Target.Clientset().CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return cm.Data["v"]
}

// TestRunScheduled: a tick every second; a tick with changes makes one
// commit, a tick without none.
func TestRunScheduled(t *testing.T) {
	f := newRunFixture(t, "scheduled")
	createConfigMap(t, clusters.Source, f.ns, "first", "1")
	base := head(t, f.repo)
	opts := f.opts
	opts.Schedule = cron.Every(time.Second)
	reg, _ := f.start(t, opts)

	require.Eventually(t, func() bool { return targetValue(f.ns, "first") == "1" }, 20*time.Second, 50*time.Millisecond)
	first := commitsSince(t, f.repo, base)
	require.Len(t, first, 1, "the first tick's snapshot")
	require.Equal(t, "scheduled", first[0].Trailer("Snapshot-Mode"))

	createConfigMap(t, clusters.Source, f.ns, "second", "2")
	require.Eventually(t, func() bool { return targetValue(f.ns, "second") == "2" }, 10*time.Second, 50*time.Millisecond)
	second := commitsSince(t, f.repo, first[0].Hash)
	require.Len(t, second, 1, "one commit for the tick that saw the change")

	// Three ticks without a change: no commit, three cycles.
	cycles := metric(t, reg, "dr_syncer_cycles_total", "mode", "scheduled", "result", "success")
	require.Eventually(t, func() bool {
		return metric(t, reg, "dr_syncer_cycles_total", "mode", "scheduled", "result", "success") >= cycles+3
	}, 10*time.Second, 50*time.Millisecond)
	require.Empty(t, commitsSince(t, f.repo, second[0].Hash), "ticks without changes commit nothing")
	require.Equal(t, 2.0, metric(t, reg, "dr_syncer_commits_total", "mode", "scheduled"))
}

// TestRunContinuous: 100 changes at 50 a second (creations, updates,
// deletions) all reach the target, in far fewer commits.
func TestRunContinuous(t *testing.T) {
	f := newRunFixture(t, "continuous")
	// Enough objects that removing 20 stays under the mass-prune limit (25%).
	for i := range 60 {
		createConfigMap(t, clusters.Source, f.ns, fmt.Sprintf("base-%02d", i), "0")
	}
	createConfigMap(t, clusters.Source, f.ns, "before", "0")
	base := head(t, f.repo)
	reg, _ := f.start(t, f.opts)
	require.Eventually(t, func() bool { return targetValue(f.ns, "before") == "0" }, 30*time.Second, 50*time.Millisecond)
	afterStart := head(t, f.repo)

	cms := clusters.Source.Clientset().CoreV1().ConfigMaps(f.ns)
	ctx := t.Context()
	tick := time.NewTicker(20 * time.Millisecond) // 50 changes a second
	defer tick.Stop()
	op := func(fn func() error) {
		<-tick.C
		require.NoError(t, fn())
	}
	for i := range 40 {
		op(func() error {
			_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%02d", i)}, Data: map[string]string{"v": "1"}}, metav1.CreateOptions{})
			return err
		})
	}
	for i := range 40 {
		op(func() error {
			_, err := cms.Patch(ctx, fmt.Sprintf("cm-%02d", i), types.MergePatchType, []byte(`{"data":{"v":"2"}}`), metav1.PatchOptions{})
			return err
		})
	}
	for i := range 20 {
		op(func() error { return cms.Delete(ctx, fmt.Sprintf("cm-%02d", i), metav1.DeleteOptions{}) })
	}

	require.Eventually(t, func() bool {
		for i := range 40 {
			want := "2"
			if i < 20 {
				want = ""
			}
			if targetValue(f.ns, fmt.Sprintf("cm-%02d", i)) != want {
				return false
			}
		}
		return true
	}, 30*time.Second, 100*time.Millisecond, "every change must reach the target")

	commits := commitsSince(t, f.repo, afterStart)
	t.Logf("100 changes in %d commits (%d since the start, full snapshot included)", len(commits), len(commitsSince(t, f.repo, base)))
	require.NotEmpty(t, commits)
	require.Less(t, len(commits), 20, "changes must be batched")
	for _, c := range commits {
		require.Equal(t, "continuous", c.Trailer("Snapshot-Mode"))
	}
	require.Positive(t, metric(t, reg, "dr_syncer_lag_seconds"), "lag observed")

	st, err := StatusOf(ctx, ApplyOptions{Repo: f.repo, Config: f.opts.Config, Target: clusters.Target.Config})
	require.NoError(t, err)
	require.Positive(t, st.ChangeLag, "status shows the lag of the last changes")
	require.Zero(t, st.Behind)
}

// TestRunLeaderElection: two controllers on one Lease; one leads, the
// changes are committed once; when the leader stops, the other takes over.
func TestRunLeaderElection(t *testing.T) {
	f := newRunFixture(t, "continuous")
	a, b := f.opts, f.opts
	a.ID, b.ID = "replica-a", "replica-b"
	regA, stopA := f.start(t, a)
	regB, stopB := f.start(t, b)
	leaders := func() (float64, float64) {
		return metric(t, regA, "dr_syncer_leader"), metric(t, regB, "dr_syncer_leader")
	}
	require.Eventually(t, func() bool { la, lb := leaders(); return la+lb == 1 }, 20*time.Second, 50*time.Millisecond)

	for i := range 5 {
		createConfigMap(t, clusters.Source, f.ns, fmt.Sprintf("one-%d", i), "1")
	}
	require.Eventually(t, func() bool { return targetValue(f.ns, "one-4") == "1" }, 30*time.Second, 50*time.Millisecond)
	for range 20 { // both would have committed by now
		la, lb := leaders()
		require.Equal(t, 1.0, la+lb, "exactly one leader")
		time.Sleep(50 * time.Millisecond)
	}
	// No two commits add the same file.
	added := map[string]plumbing.Hash{}
	for _, c := range commitsSince(t, f.repo, plumbing.ZeroHash) {
		for _, line := range strings.Split(c.Message, "\n") {
			if p, ok := strings.CutPrefix(line, "+ "); ok {
				require.NotContains(t, added, p, "%s added by two commits", p)
				added[p] = c.Hash
			}
		}
	}
	commitsA := metric(t, regA, "dr_syncer_commits_total")
	commitsB := metric(t, regB, "dr_syncer_commits_total")
	require.True(t, commitsA == 0 || commitsB == 0, "both replicas committed: %v and %v", commitsA, commitsB)

	// The leader stops; the follower takes over and replicates.
	la, _ := leaders()
	stopLeader, follower := stopA, regB
	if la == 0 {
		stopLeader, follower = stopB, regA
	}
	stopped := time.Now()
	stopLeader()
	require.Eventually(t, func() bool { return metric(t, follower, "dr_syncer_leader") == 1 }, 10*time.Second, 50*time.Millisecond)
	t.Logf("the follower took over %v after the leader stopped", time.Since(stopped).Round(time.Millisecond))
	createConfigMap(t, clusters.Source, f.ns, "two", "2")
	require.Eventually(t, func() bool { return targetValue(f.ns, "two") == "2" }, 30*time.Second, 50*time.Millisecond)
}

// TestRunTargetOutage: the target's apiserver stops mid-run; changes made
// meanwhile reach it once it is back, without help.
func TestRunTargetOutage(t *testing.T) {
	f := newRunFixture(t, "continuous")
	createConfigMap(t, clusters.Source, f.ns, "before", "0")
	f.start(t, f.opts)
	require.Eventually(t, func() bool { return targetValue(f.ns, "before") == "0" }, 30*time.Second, 50*time.Millisecond)

	require.NoError(t, clusters.Target.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, clusters.Target.StartAPIServer())
		}
	})
	createConfigMap(t, clusters.Source, f.ns, "during", "1")
	time.Sleep(3 * time.Second) // an outage longer than the Lease's renew deadline
	require.NoError(t, clusters.Target.StartAPIServer())
	restarted = true
	createConfigMap(t, clusters.Source, f.ns, "after", "2")
	require.Eventually(t, func() bool {
		return targetValue(f.ns, "during") == "1" && targetValue(f.ns, "after") == "2"
	}, 60*time.Second, 100*time.Millisecond, "the controller must catch up after the outage")
}

// TestRunManualTrigger: one cycle per new value of the annotation.
func TestRunManualTrigger(t *testing.T) {
	f := newRunFixture(t, "manual")
	opts := f.opts
	opts.Namespace = testcluster.NamespaceName(t) // a trigger of its own
	reg, _ := f.start(t, opts)
	cms := clusters.Target.Clientset().CoreV1().ConfigMaps(opts.Namespace)
	ctx := t.Context()
	require.Eventually(t, func() bool {
		_, err := cms.Get(ctx, TriggerName, metav1.GetOptions{})
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "the controller creates its trigger")
	cycles := func() float64 { return metric(t, reg, "dr_syncer_cycles_total", "mode", "manual") }
	require.Zero(t, cycles(), "no cycle without a request")

	annotate := func(key, value string) {
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
		_, err := cms.Patch(ctx, TriggerName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		require.NoError(t, err)
	}
	synced := func(v string) func() bool {
		return func() bool {
			cm, err := cms.Get(ctx, TriggerName, metav1.GetOptions{})
			return err == nil && cm.Annotations[SyncedAnnotation] == v
		}
	}
	createConfigMap(t, clusters.Source, f.ns, "one", "1")
	annotate(SyncNowAnnotation, "first")
	require.Eventually(t, synced("first"), 20*time.Second, 50*time.Millisecond)
	require.Equal(t, "1", targetValue(f.ns, "one"))
	require.Equal(t, 1.0, cycles())

	// Another annotation, the same value: nothing.
	annotate("example.com/unrelated", "x")
	createConfigMap(t, clusters.Source, f.ns, "two", "2")
	time.Sleep(time.Second) // nothing to wait for: show that nothing happens
	require.Equal(t, 1.0, cycles())
	require.Equal(t, "", targetValue(f.ns, "two"))

	annotate(SyncNowAnnotation, "second")
	require.Eventually(t, synced("second"), 20*time.Second, 50*time.Millisecond)
	require.Equal(t, "2", targetValue(f.ns, "two"))
	require.Equal(t, 2.0, cycles())
	cm, err := cms.Get(ctx, TriggerName, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "ok", cm.Annotations[SyncResultAnnotation])
}

// TestRunAppliesPersonCommit: a revert made by a person (another process
// writing the repository) is applied at once, without a poll.
func TestRunAppliesPersonCommit(t *testing.T) {
	f := newRunFixture(t, "manual")
	ctx := t.Context()
	for i := range 6 {
		createConfigMap(t, clusters.Source, f.ns, fmt.Sprintf("keep-%d", i), "1")
	}
	_, err := Snapshot(ctx, SnapshotOptions{Repo: f.repo, Config: f.opts.Config, Source: clusters.Source.Config})
	require.NoError(t, err)
	createConfigMap(t, clusters.Source, f.ns, "extra", "1")
	res, err := Snapshot(ctx, SnapshotOptions{Repo: f.repo, Config: f.opts.Config, Source: clusters.Source.Config})
	require.NoError(t, err)
	require.True(t, res.Changed)

	opts := f.opts
	opts.RefPollPeriod = time.Hour // only fsnotify can notice the revert
	f.start(t, opts)
	require.Eventually(t, func() bool { return targetValue(f.ns, "extra") == "1" }, 20*time.Second, 50*time.Millisecond,
		"a new term applies the followed ref when the target is behind")

	person, err := gitstore.Open(ctx, f.dir)
	require.NoError(t, err)
	_, err = person.Revert(ctx, DefaultBranch, res.Commit.String(), gitstore.CommitOptions{Branch: DefaultBranch})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := clusters.Target.Clientset().CoreV1().ConfigMaps(f.ns).Get(ctx, "extra", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 50*time.Millisecond, "the revert is applied: extra pruned")
	require.Equal(t, "1", targetValue(f.ns, "keep-0"))
}

// regenSource is an object set as a snapshot.Watcher serves it to
// regenerate.
type regenSource map[snapshot.ID]*unstructured.Unstructured

func (s regenSource) Objects() ([]*unstructured.Unstructured, error) {
	return slices.Collect(maps.Values(s)), nil
}

func (s regenSource) ObjectsIn(namespaces ...string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	sampled := map[string]bool{}
	for _, id := range slices.SortedFunc(maps.Keys(s), snapshot.ID.Compare) {
		switch {
		case id.Namespace == "", slices.Contains(namespaces, id.Namespace):
		case !sampled[id.Namespace]:
			sampled[id.Namespace] = true
		default:
			continue
		}
		out = append(out, s[id])
	}
	return out, nil
}

// TestRegenerate: the generated overlay that regenerate derives from the
// last one and the changes is the one render.Generate makes of the whole
// set, change after change: objects with and without patches, added,
// modified and removed, a namespace reference to another (renamed)
// namespace, a namespace directory that goes, a Namespace that changes.
func TestRegenerate(t *testing.T) {
	cfg := decodeConfig(t, `apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: regen}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces:
  - {source: a, target: a-dr}
  - {source: b, target: b-dr}
  - {source: c}
  secrets: {mode: exclude}
  storageClasses:
  - {source: fast, target: standard}
`)
	obj := func(yamlText string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		require.NoError(t, sigsyaml.Unmarshal([]byte(yamlText), &u.Object))
		return u
	}
	idOf := func(u *unstructured.Unstructured) snapshot.ID {
		gvk := u.GroupVersionKind()
		return snapshot.ID{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
	}
	configMap := func(ns, name, v string) *unstructured.Unstructured {
		return obj(fmt.Sprintf("{apiVersion: v1, kind: ConfigMap, metadata: {namespace: %s, name: %s}, data: {v: %q}}", ns, name, v))
	}
	deployment := func(ns, name string, replicas int) *unstructured.Unstructured {
		return obj(fmt.Sprintf(`{apiVersion: apps/v1, kind: Deployment, metadata: {namespace: %s, name: %s},
  spec: {replicas: %d, selector: {matchLabels: {app: %[2]s}}, template: {metadata: {labels: {app: %[2]s}},
  spec: {containers: [{name: c, image: nginx}]}}}}`, ns, name, replicas))
	}
	roleBinding := func(ns, name, subjectNS string) *unstructured.Unstructured {
		return obj(fmt.Sprintf(`{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {namespace: %s, name: %s},
  roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view},
  subjects: [{kind: ServiceAccount, name: default, namespace: %s}]}`, ns, name, subjectNS))
	}
	namespace := func(name, label string) *unstructured.Unstructured {
		return obj(fmt.Sprintf("{apiVersion: v1, kind: Namespace, metadata: {name: %s, labels: {team: %q}}}", name, label))
	}
	src := regenSource{}
	for _, o := range []*unstructured.Unstructured{
		namespace("a", "x"), namespace("b", "x"), namespace("c", "x"),
		configMap("a", "one", "1"), configMap("b", "one", "1"), configMap("c", "one", "1"),
		deployment("a", "web", 3),
		roleBinding("c", "view-a", "a"),
		obj(`{apiVersion: v1, kind: PersistentVolumeClaim, metadata: {namespace: b, name: data},
  spec: {storageClassName: fast, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}`),
	} {
		src[idOf(o)] = o
	}
	all, err := src.Objects()
	require.NoError(t, err)
	prev, err := render.Generate(cfg, all)
	require.NoError(t, err)

	for _, step := range []struct {
		name   string
		put    []*unstructured.Unstructured
		remove []snapshot.ID
	}{
		{name: "an object without a patch", put: []*unstructured.Unstructured{configMap("a", "one", "2")}},
		{name: "a patched object changes", put: []*unstructured.Unstructured{deployment("a", "web", 5)}},
		{name: "a patched object comes", put: []*unstructured.Unstructured{deployment("c", "api", 2), configMap("b", "two", "1")}},
		{name: "a reference to another namespace", put: []*unstructured.Unstructured{roleBinding("c", "view-a", "b")}},
		{name: "a patched object goes", remove: []snapshot.ID{{Group: "apps", Kind: "Deployment", Namespace: "a", Name: "web"}}},
		{name: "objects without patches go", remove: []snapshot.ID{{Kind: "ConfigMap", Namespace: "b", Name: "one"}, {Kind: "ConfigMap", Namespace: "b", Name: "two"}}},
		{name: "a namespace directory goes", remove: []snapshot.ID{
			{Kind: "ConfigMap", Namespace: "c", Name: "one"},
			{Group: "apps", Kind: "Deployment", Namespace: "c", Name: "api"},
			{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding", Namespace: "c", Name: "view-a"},
		}},
		{name: "a namespace directory comes", put: []*unstructured.Unstructured{configMap("c", "one", "1")}},
		{name: "a Namespace changes", put: []*unstructured.Unstructured{namespace("a", "y")}},
	} {
		changed := map[snapshot.ID]*unstructured.Unstructured{}
		for _, o := range step.put {
			src[idOf(o)] = o
			changed[idOf(o)] = o
		}
		for _, id := range step.remove {
			delete(src, id)
			changed[id] = nil
		}
		got, err := regenerate(cfg, src, prev, changed)
		require.NoError(t, err, step.name)
		all, err := src.Objects()
		require.NoError(t, err)
		want, err := render.Generate(cfg, all)
		require.NoError(t, err, step.name)
		require.Equal(t, stringsOf(want), stringsOf(got), step.name)
		prev = got
	}
}

func stringsOf(files map[string][]byte) map[string]string {
	out := make(map[string]string, len(files))
	for k, v := range files {
		out[k] = string(v)
	}
	return out
}
