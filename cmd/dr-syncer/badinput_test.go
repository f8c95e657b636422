package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// badRepo is the repository a bad-input case starts from: a copy of one
// that init and a first sync made, with the source's namespace replicated.
type badRepo struct {
	dir, ns, dst, class string
}

// commit writes files (a nil content removes the file; a content starting
// with "symlink:" makes a symbolic link) and commits them with the git CLI,
// as a person would.
func (r badRepo) commit(t *testing.T, files map[string]string) {
	t.Helper()
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(r.dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		_ = os.Remove(p)
		if target, ok := strings.CutPrefix(files[name], "symlink:"); ok {
			require.NoError(t, os.Symlink(target, p))
			continue
		}
		require.NoError(t, os.WriteFile(p, []byte(files[name]), 0o644))
	}
	gitOut(t, r.dir, "add", "-A")
	gitOut(t, r.dir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "bad input")
}

// edit replaces old by new in a committed file and commits it.
func (r badRepo) edit(t *testing.T, file, old, new string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, file))
	require.NoError(t, err)
	require.Contains(t, string(data), old, "%s", file)
	r.commit(t, map[string]string{file: strings.Replace(string(data), old, new, 1)})
}

// mapping is dr-syncer.yaml as committed.
func (r badRepo) mapping(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.dir, "dr-syncer.yaml"))
	require.NoError(t, err)
	return string(data)
}

// addToOverlay adds resource files to the user's overlay (overlays/dr9).
func (r badRepo) addToOverlay(t *testing.T, files map[string]string, extra string) {
	t.Helper()
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- generated\n"
	for _, name := range slices.Sorted(maps.Keys(files)) {
		kust += "- " + name + "\n"
	}
	all := map[string]string{"overlays/dr9/kustomization.yaml": kust + extra}
	for name, content := range files {
		if !strings.HasPrefix(name, "/") && !strings.HasPrefix(name, "..") && !strings.Contains(name, "://") {
			all["overlays/dr9/"+name] = content
		}
	}
	r.commit(t, all)
}

// repoState is what a command must not change in the repository: every
// ref, and a clean work tree.
func repoState(t *testing.T, dir string) string {
	t.Helper()
	return gitOut(t, dir, "for-each-ref", "--format=%(refname) %(objectname)") +
		"HEAD " + gitOut(t, dir, "rev-parse", "HEAD") +
		"status:\n" + gitOut(t, dir, "status", "--porcelain", "--ignored")
}

// targetState is what a command must not change in the target: the
// objects of the replicated namespace and of dr-syncer-system (the
// inventory), by resourceVersion, and the namespaces.
func targetState(t *testing.T, c kubernetes.Interface, dst string) map[string]string {
	t.Helper()
	ctx := t.Context()
	state := map[string]string{}
	add := func(kind string, items []metav1.Object) {
		for _, o := range items {
			state[kind+"/"+o.GetNamespace()+"/"+o.GetName()] = o.GetResourceVersion()
		}
	}
	nss, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	for _, n := range nss.Items {
		add("Namespace", []metav1.Object{&n})
	}
	for _, ns := range []string{dst, "dr-syncer-system"} {
		cms, err := c.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range cms.Items {
			add("ConfigMap", []metav1.Object{&cms.Items[i]})
		}
		secrets, err := c.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range secrets.Items {
			add("Secret", []metav1.Object{&secrets.Items[i]})
		}
		svcs, err := c.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range svcs.Items {
			add("Service", []metav1.Object{&svcs.Items[i]})
		}
		pvcs, err := c.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range pvcs.Items {
			add("PersistentVolumeClaim", []metav1.Object{&pvcs.Items[i]})
		}
		deps, err := c.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range deps.Items {
			add("Deployment", []metav1.Object{&deps.Items[i]})
		}
		sas, err := c.CoreV1().ServiceAccounts(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for i := range sas.Items {
			add("ServiceAccount", []metav1.Object{&sas.Items[i]})
		}
	}
	return state
}

// TestBadInput runs the real CLI against the real apiservers and real
// repositories with one bad input per case. Each must end with a non-zero
// exit and exactly one line on stderr that names the file, field or object
// at fault, and must apply nothing (the target's objects and inventory keep
// their resourceVersions) and commit nothing (refs unchanged, work tree
// clean).
func TestBadInput(t *testing.T) {
	clusterEnv(t)
	t.Setenv("DR_SYNCER_AGE_IDENTITY", "")
	ctx := t.Context()
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	ns := clusters.Source.Namespace(t)
	dst := ns + "-dr"
	class := "bad-input-" + ns // the storage class the mapping maps "fast" to

	// A small namespace: a ConfigMap, a Secret, a Service, a claim of the
	// storage class "fast", a Deployment.
	_, err := src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "bad-input-plaintext"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	fast := "fast"
	_, err = src.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
		StorageClassName: &fast, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}, metav1.CreateOptions{})
	require.NoError(t, err)
	one := int32(1)
	_, err = src.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = tgt.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: class}, Provisioner: "example.com/none"}, metav1.CreateOptions{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = tgt.StorageV1().StorageClasses().Delete(context.Background(), class, metav1.DeleteOptions{})
	})

	base := filepath.Join(t.TempDir(), "base")
	code, _, errOut := runCLI(t, "init", "--repo", base, "--source", "src9", "--target", "dr9",
		"--namespace-map", ns+"="+dst, "--storage-class-map", "fast="+class)
	require.Equal(t, 0, code, errOut)
	code, out, errOut := runCLI(t, "sync", "--repo", base, "--no-volumes")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "6 created", "Namespace, ConfigMap, Secret, Service, claim, Deployment")

	tmp := t.TempDir()
	writeFile := func(name, content string) string {
		p := filepath.Join(tmp, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	otherKey, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	otherIdentity := writeFile("other.agekey", otherKey.String()+"\n")
	garbageKubeconfig := writeFile("garbage.kubeconfig", "apiVersion: v1\nkind: Config\nclusters: {this is: [not, a kubeconfig\n")
	unreachable := writeFile("unreachable.kubeconfig", `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`)
	notARepo := t.TempDir()

	// A ConfigMap of 1.6 MiB: more than any object the apiserver stores.
	huge := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: huge, namespace: " + dst + "}\ndata:\n  blob: " + strings.Repeat("x", 1600<<10) + "\n"
	// The billion laughs: nine levels of nine references.
	var bomb strings.Builder
	bomb.WriteString("a0: &a0 [\"lol\"]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&bomb, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), ", "))
	}

	tests := []struct {
		name  string
		setup func(t *testing.T, r badRepo)
		args  []string // "--repo DIR" is added
		want  []string // what the one line on stderr says
		code  int      // default exitError
	}{
		// dr-syncer.yaml, as committed.
		{
			name:  "unknown field in the mapping",
			setup: func(t *testing.T, r badRepo) { r.edit(t, "dr-syncer.yaml", "  namespaces:", "  namespaecs:") },
			args:  []string{"apply"},
			want:  []string{"dr-syncer.yaml:", "spec.namespaecs: unknown field", `did you mean "namespaces"`},
		},
		{
			name: "unknown field nested in the mapping",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "dr-syncer.yaml", "    - source: "+r.ns+"\n", "    - source: "+r.ns+"\n      tagret: x\n")
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "spec.namespaces[0].tagret: unknown field"},
		},
		{
			name: "wrong type in the mapping",
			setup: func(t *testing.T, r badRepo) {
				r.commit(t, map[string]string{"dr-syncer.yaml": r.mapping(t) + "  apply:\n    maxPrunePercent: lots\n"})
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "spec.apply.maxPrunePercent: want an integer"},
		},
		{
			name:  "mapping that is not YAML",
			setup: func(t *testing.T, r badRepo) { r.edit(t, "dr-syncer.yaml", "kind: SyncConfig", "kind: [SyncConfig") },
			args:  []string{"render"},
			want:  []string{"dr-syncer.yaml:", "invalid YAML"},
		},
		{
			name: "bad cron expression",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "dr-syncer.yaml", "    mode: manual\n", "    mode: scheduled\n    schedule: \"61 * * * *\"\n")
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", `spec.replication.schedule: invalid schedule "61 * * * *"`},
		},
		{
			name: "namespace mapped twice",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "dr-syncer.yaml", "      target: "+r.dst+"\n", "      target: "+r.dst+"\n    - source: "+r.ns+"\n      target: other\n")
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "spec.namespaces[1]"},
		},
		{
			name: "bad volumes setting",
			setup: func(t *testing.T, r badRepo) {
				r.commit(t, map[string]string{"dr-syncer.yaml": r.mapping(t) + "  volumes:\n    concurrency: -3\n"})
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "spec.volumes.concurrency"},
		},
		{
			name: "invalid UTF-8 in the mapping",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "dr-syncer.yaml", "    - source: "+r.ns+"\n", "    - source: \"a\xff\xfeb\"\n")
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "invalid YAML", "UTF-8"},
		},
		{
			name: "YAML alias bomb in the mapping",
			setup: func(t *testing.T, r badRepo) {
				m := r.mapping(t)
				r.commit(t, map[string]string{"dr-syncer.yaml": strings.Replace(m, "spec:\n", "x: &x [{a: b}]\n"+strings.ReplaceAll(bomb.String(), "[\"lol\"]", "*x")+"spec:\n", 1)})
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:"},
		},
		{
			name: "YAML alias bomb in a known field of the mapping",
			setup: func(t *testing.T, r badRepo) {
				m := r.mapping(t)
				m += "  accessModes: [&m {source: ReadWriteOnce, target: ReadWriteMany}" + strings.Repeat(", *m", 5000) + "]\n"
				r.commit(t, map[string]string{"dr-syncer.yaml": m})
			},
			args: []string{"apply"},
			want: []string{"dr-syncer.yaml:", "aliases"},
		},
		{
			name:  "bad recipient",
			setup: func(t *testing.T, r badRepo) { r.edit(t, "dr-syncer.yaml", "    - age1", "    - age2") },
			args:  []string{"apply"},
			want:  []string{"dr-syncer.yaml:", "spec.secrets.recipients[0]"},
		},

		// The overlay.
		{
			name:  "overlay names a file the commit lacks",
			setup: func(t *testing.T, r badRepo) { r.addToOverlay(t, map[string]string{}, "- missing.yaml\n") },
			args:  []string{"apply"},
			want:  []string{"overlays/dr9/", "missing.yaml"},
		},
		{
			name: "overlay that fails to build",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, nil, "patches:\n- target: {kind: ConfigMap, name: settings}\n  patch: |-\n    - {op: replace, path: /data/nope/deeper, value: x}\n")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/kustomization.yaml"},
		},
		{
			name: "overlay kustomization that is not YAML",
			setup: func(t *testing.T, r badRepo) {
				r.commit(t, map[string]string{"overlays/dr9/kustomization.yaml": "resources: [generated\n"})
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/kustomization.yaml"},
		},
		{
			name:  "overlay reaches outside the repository",
			setup: func(t *testing.T, r badRepo) { r.addToOverlay(t, nil, "- ../../../../etc\n") },
			args:  []string{"apply"},
			want:  []string{"overlays/dr9/kustomization.yaml", "../../../../etc"},
		},
		{
			name:  "overlay names an absolute path",
			setup: func(t *testing.T, r badRepo) { r.addToOverlay(t, nil, "- /etc/passwd\n") },
			args:  []string{"apply"},
			want:  []string{"overlays/dr9/kustomization.yaml", "/etc/passwd"},
		},
		{
			name: "overlay patch from outside the repository",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, nil, "patches:\n- path: ../../../../../../etc/hostname\n")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/kustomization.yaml", "etc/hostname"},
		},
		{
			name: "overlay resource is a symlink out of the repository",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, map[string]string{"evil.yaml": "symlink:/etc/passwd"}, "")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/evil.yaml"},
		},
		{
			name: "overlay base is a symlink to a directory",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, map[string]string{"up": "symlink:../../.."}, "")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/up"},
		},
		{
			name:  "overlay resource is a URL",
			setup: func(t *testing.T, r badRepo) { r.addToOverlay(t, nil, "- https://127.0.0.1:1/base\n") },
			args:  []string{"apply"},
			want:  []string{"overlays/dr9/kustomization.yaml", "remote"},
		},
		{
			name: "YAML alias bomb in an overlay file",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, map[string]string{"bomb.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb, namespace: " + r.dst + "}\n" + strings.Replace(bomb.String(), "a0:", "data:\n  x: \"\"\nlol:\n  a0:", 1)}, "")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/bomb.yaml: YAML aliases expand"},
		},
		{
			name: "invalid UTF-8 in an overlay object",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, map[string]string{"latin1.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: latin1, namespace: " + r.dst + "}\ndata:\n  city: \"M\xfcnchen\"\n"}, "")
			},
			args: []string{"apply"},
			want: []string{"overlays/dr9/latin1.yaml:5:11: not valid UTF-8"},
		},
		{
			name: "invalid UTF-8 in a snapshot object",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "snapshots/src9/"+r.ns+"/ConfigMap/settings.yaml", "color: blue", "color: \"bl\xffue\"")
			},
			args: []string{"apply"},
			want: []string{"snapshots/src9/" + ns + "/ConfigMap/settings.yaml:", "not valid UTF-8"},
		},
		{
			name: "object the apiserver rejects",
			setup: func(t *testing.T, r badRepo) {
				r.addToOverlay(t, nil, "patches:\n- target: {kind: Service, name: web}\n  patch: |-\n    - {op: replace, path: /spec/ports/0/port, value: 99999}\n")
			},
			args: []string{"apply"},
			want: []string{"Service/" + dst + "/web: dry run:", "spec.ports[0].port", "(nothing was applied)"},
		},
		{
			name:  "object larger than the apiserver stores",
			setup: func(t *testing.T, r badRepo) { r.addToOverlay(t, map[string]string{"huge.yaml": huge}, "") },
			args:  []string{"apply"},
			want:  []string{"ConfigMap/" + dst + "/huge: dry run:", "Too long", "(nothing was applied)"},
		},
		{
			name: "storage class mapped to one the target lacks",
			setup: func(t *testing.T, r badRepo) {
				r.edit(t, "dr-syncer.yaml", "target: "+r.class, "target: no-such-class")
				code, _, errOut := runCLI(t, "snapshot", "--repo", r.dir)
				require.Equal(t, 0, code, errOut)
			},
			args: []string{"apply"},
			want: []string{"PersistentVolumeClaim/" + dst + "/data: storage class \"no-such-class\" does not exist in the target", "spec.storageClasses[0]"},
		},
		{
			name: "a file in the snapshot that is not an object of the layout",
			setup: func(t *testing.T, r badRepo) {
				r.commit(t, map[string]string{"snapshots/src9/" + r.ns + "/ConfigMap/notes.txt": "hello\n"})
			},
			args: []string{"apply"},
			want: []string{"snapshots/src9/" + ns + "/ConfigMap/notes.txt"},
		},

		// Kubeconfigs and apiservers.
		{
			name: "missing target kubeconfig",
			args: []string{"apply", "--target-kubeconfig", filepath.Join(tmp, "nope.kubeconfig")},
			want: []string{"nope.kubeconfig"},
		},
		{
			name: "invalid target kubeconfig",
			args: []string{"apply", "--target-kubeconfig", garbageKubeconfig},
			want: []string{"garbage.kubeconfig"},
		},
		{
			name: "unknown context",
			args: []string{"apply", "--target-context", "nope"},
			want: []string{`"nope"`},
		},
		{
			name: "unreachable target apiserver",
			args: []string{"apply", "--target-kubeconfig", unreachable},
			want: []string{"127.0.0.1:1"},
		},
		{
			name: "unreachable source apiserver",
			args: []string{"sync", "--no-volumes", "--source-kubeconfig", unreachable},
			want: []string{"source src9", "127.0.0.1:1"},
		},
		{
			name: "invalid source kubeconfig",
			args: []string{"snapshot", "--source-kubeconfig", garbageKubeconfig},
			want: []string{"garbage.kubeconfig"},
		},

		// Repository, refs, keys.
		{
			name: "repository that does not exist",
			args: []string{"apply", "--repo", filepath.Join(tmp, "no-such-repo")},
			want: []string{"no-such-repo"},
		},
		{
			name: "directory that is not a repository",
			args: []string{"status", "--repo", notARepo},
			want: []string{notARepo},
		},
		{
			name: "repository URL that is not served",
			args: []string{"snapshot", "--repo", "https://127.0.0.1:1/dr.git"},
			want: []string{"127.0.0.1:1"},
		},
		{
			name: "bad --ref",
			args: []string{"apply", "--ref", "no-such-branch"},
			want: []string{"no-such-branch"},
		},
		{
			name: "malformed --ref",
			args: []string{"render", "--ref", "main..^{bogus"},
			want: []string{"main..^{bogus"},
		},
		{
			name: "rollback of a commit that does not exist",
			args: []string{"rollback", "0123456789abcdef0123456789abcdef01234567"},
			want: []string{"0123456789abcdef0123456789abcdef01234567"},
		},
		{
			name: "wrong age key",
			args: []string{"apply", "--identity", otherIdentity},
			want: []string{"Secret/" + dst + "/db"},
		},
		{
			name: "missing age key",
			args: []string{"apply", "--identity", filepath.Join(tmp, "nope.agekey")},
			want: []string{"nope.agekey"},
		},

		// The agent.
		{
			name: "agent without flags",
			args: []string{"agent"},
			want: []string{`required flag(s) "host-key" not set`},
			code: exitUsage,
		},
		{
			name: "agent without a trusted key",
			args: []string{"agent", "--host-key", filepath.Join(tmp, "host")},
			want: []string{"--user-ca or --authorized-keys"},
			code: exitUsage,
		},
		{
			name: "agent with a host key that does not exist",
			args: []string{"agent", "--host-key", filepath.Join(tmp, "nope-host"), "--user-ca", otherIdentity},
			want: []string{"nope-host"},
		},
	}
	if len(tests) < 25 {
		t.Fatalf("only %d cases", len(tests))
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := badRepo{dir: filepath.Join(t.TempDir(), "dr"), ns: ns, dst: dst, class: class}
			out, err := exec.CommandContext(t.Context(), "cp", "-a", base, r.dir).CombinedOutput()
			require.NoError(t, err, "%s", out)
			if tc.setup != nil {
				tc.setup(t, r)
			}
			repoBefore := repoState(t, r.dir)
			targetBefore := targetState(t, tgt, dst)

			args := tc.args
			if args[0] != "agent" && !slices.Contains(args, "--repo") {
				args = append(slices.Clone(args), "--repo", r.dir)
			}
			start := time.Now()
			code, stdout, stderr := runCLI(t, args...)
			want := tc.code
			if want == 0 {
				want = exitError
			}
			require.Equal(t, want, code, "exit code\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
			require.Less(t, time.Since(start), 20*time.Second, "a bad input is found fast")
			require.Equal(t, 1, strings.Count(stderr, "\n"), "exactly one line on stderr, got:\n%s", stderr)
			require.True(t, strings.HasPrefix(stderr, "dr-syncer: "), stderr)
			for _, w := range tc.want {
				require.Contains(t, stderr, w)
			}
			require.NotContains(t, stderr+stdout, "bad-input-plaintext")

			require.Equal(t, repoBefore, repoState(t, r.dir), "nothing committed")
			require.Equal(t, targetBefore, targetState(t, tgt, dst), "nothing applied")
		})
	}
	// The base repository still applies: the cases left nothing behind.
	code, out, errOut = runCLI(t, "apply", "--repo", base)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "0 created 0 configured 0 recreated 6 unchanged 0 deleted")
}
