package crashtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/syncbuf"
)

// newCLI writes the kubeconfigs and returns a cli for a new repository.
func newCLI(t *testing.T) *cli {
	t.Helper()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"source.kubeconfig": clusters.Source.Kubeconfig,
		"target.kubeconfig": clusters.Target.Kubeconfig,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	return &cli{bin: buildBinary(t), repo: filepath.Join(dir, "repo"), env: []string{
		"DR_SYNCER_SOURCE_KUBECONFIG=" + filepath.Join(dir, "source.kubeconfig"),
		"DR_SYNCER_TARGET_KUBECONFIG=" + filepath.Join(dir, "target.kubeconfig"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
	}}
}

// TestTargetOutageMidApply stops the target's apiserver for 30 s while the
// controller (`dr-syncer run`, continuous mode) is in the middle of applying
// 1,500 objects, then starts it again: the controller resumes by itself and
// the target converges to the commit.
func TestTargetOutageMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s outage")
	}
	ctx := t.Context()
	c := newCLI(t)
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	ns := clusters.Source.Namespace(t)
	dst := ns + "-dr"
	const objects = 1500
	for i := range objects {
		_, err := src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i)}, Data: map[string]string{"v": "1"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	code, out := c.run(t, "init", "--repo", c.repo, "--source", "outage", "--target", "dr", "--namespace-map", ns+"="+dst)
	require.Equal(t, 0, code, out)
	mapping := filepath.Join(c.repo, "dr-syncer.yaml")
	data, err := os.ReadFile(mapping)
	require.NoError(t, err)
	require.Contains(t, string(data), "    mode: manual\n")
	require.NoError(t, os.WriteFile(mapping, []byte(strings.Replace(string(data), "    mode: manual\n", "    mode: continuous\n", 1)), 0o644))
	git(t, c.repo, "-c", "user.name=Test Person", "-c", "user.email=person@example.invalid", "commit", "-qam", "continuous")

	cmd := c.command(ctx, "run", "--repo", c.repo, "--metrics-addr", "", "--lease-namespace", ns, "--namespace", ns, "--log-format", "text")
	var logs syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})

	// Wait until the apply is under way, then take the target away.
	count := func() int {
		l, err := tgt.CoreV1().ConfigMaps(dst).List(ctx, metav1.ListOptions{})
		if err != nil {
			return -1
		}
		return len(l.Items)
	}
	require.Eventually(t, func() bool { return count() > 0 }, 90*time.Second, 10*time.Millisecond, "the apply never started")
	require.NoError(t, clusters.Target.StopAPIServer())
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, clusters.Target.StartAPIServer())
		}
	})
	time.Sleep(30 * time.Second) // the outage itself: nothing to wait for
	require.NoError(t, clusters.Target.StartAPIServer())
	restarted = true
	partial := count()
	t.Logf("objects in the target when it came back: %d of %d", partial, objects)

	// (No kube-root-ca.crt: no controllers run there.)
	require.Eventually(t, func() bool { return count() == objects }, 120*time.Second, 200*time.Millisecond,
		"the target must converge after the outage: want %d ConfigMaps", objects)
	code, out = c.run(t, "diff", "--repo", c.repo)
	require.Equal(t, 0, code, "the target differs from the commit:\n%s", out)
}

// TestSourceGone: with the source's apiserver down, sync fails with one
// clear line naming the source, commits nothing, and the target keeps the
// last good commit.
func TestSourceGone(t *testing.T) {
	ctx := t.Context()
	c := newCLI(t)
	ns := clusters.Source.Namespace(t)
	_, err := clusters.Source.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"v": "1"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	code, out := c.run(t, "init", "--repo", c.repo, "--source", "gone", "--target", "dr", "--namespace-map", ns+"="+ns+"-dr")
	require.Equal(t, 0, code, out)
	code, out = c.run(t, "sync", "--repo", c.repo)
	require.Equal(t, 0, code, out)
	head := git(t, c.repo, "rev-parse", "HEAD")
	code, before := c.run(t, "status", "--repo", c.repo, "-o", "json")
	require.Equal(t, 0, code, before)

	require.NoError(t, clusters.Source.StopAPIServer())
	defer func() { require.NoError(t, clusters.Source.StartAPIServer()) }()
	cmd := c.command(ctx, "sync", "--repo", c.repo)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	require.Error(t, err)
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one error line:\n%s", stderr.String())
	require.Contains(t, stderr.String(), "source gone")
	require.Equal(t, head, git(t, c.repo, "rev-parse", "HEAD"), "nothing committed")
	require.Empty(t, git(t, c.repo, "status", "--porcelain"))
	code, after := c.run(t, "status", "--repo", c.repo, "-o", "json")
	require.Equal(t, 0, code, after)
	require.JSONEq(t, before, after, "the target keeps the last good commit")
}
