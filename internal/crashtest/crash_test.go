package crashtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }

// cli runs the dr-syncer binary.
type cli struct {
	bin, repo string
	env       []string
}

func (c *cli) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	return cmd
}

func (c *cli) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := c.command(t.Context(), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out.String()
	}
	require.NoError(t, err)
	return 0, out.String()
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return string(out)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dr-syncer")
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/dr-syncer/dr-syncer/cmd/dr-syncer")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// TestCrashConsistency kills `dr-syncer sync` with SIGKILL at spread-out
// moments of its run — through discovery, listing, commit, render, the dry
// run, the staged apply and the prune — 32 times at distinct moments, each after a change of
// the source (updates, creations and deletions), and checks after each kill
// and after the run that follows it.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 32 runs of the binary")
	}
	ctx := t.Context()
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"source.kubeconfig": clusters.Source.Kubeconfig,
		"target.kubeconfig": clusters.Target.Kubeconfig,
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	c := &cli{bin: buildBinary(t), repo: filepath.Join(dir, "repo"), env: []string{
		"DR_SYNCER_SOURCE_KUBECONFIG=" + filepath.Join(dir, "source.kubeconfig"),
		"DR_SYNCER_TARGET_KUBECONFIG=" + filepath.Join(dir, "target.kubeconfig"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
	}}
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	ns := clusters.Source.Namespace(t)
	dst := ns + "-dr"
	const objects = 120
	next := 0
	create := func() {
		_, err := src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", next)},
			Data:       map[string]string{"v": "0"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		next++
	}
	for range objects {
		create()
	}
	_, err := src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "crash-test-plaintext"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	// A mapping of its own (its inventory in the target is not another
	// run's): the source is named after the namespace's suffix.
	source := "crash-" + ns[strings.LastIndex(ns, "-")+1:]
	code, out := c.run(t, "init", "--repo", c.repo, "--source", source, "--target", "dr", "--namespace-map", ns+"="+dst)
	require.Equal(t, 0, code, out)
	code, out = c.run(t, "sync", "--repo", c.repo)
	require.Equal(t, 0, code, out)

	// An object of the target that dr-syncer did not create: it must
	// survive every crash and every prune unchanged.
	sentinel, err := tgt.CoreV1().ConfigMaps(dst).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "not-ours"}, Data: map[string]string{"owner": "a person"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	// How long a run with a change set like the rounds' takes: the kill
	// points are spread over it.
	cm, err := src.CoreV1().ConfigMaps(ns).Get(ctx, "cm-0000", metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data["v"] = "timing"
	_, err = src.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	create()
	start := time.Now()
	code, out = c.run(t, "sync", "--repo", c.repo)
	require.Equal(t, 0, code, out)
	full := time.Since(start)

	// Kill points are spread over a run, denser at the start (where the
	// process starts, reads its mapping and lists the source). A run that
	// ends before its kill point makes the later points earlier, so that
	// at least wantKills runs are killed at distinct moments.
	const wantKills, maxRounds = 32, 48
	killed, scale := 0, 0.95
	for i := 0; killed < wantKills && i < maxRounds; i++ {
		// A change set touching every stage: updates, creations, deletions.
		names := []string{}
		cms, err := src.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		for _, cm := range cms.Items {
			if strings.HasPrefix(cm.Name, "cm-") {
				names = append(names, cm.Name)
			}
		}
		for j := range 10 {
			cm, err := src.CoreV1().ConfigMaps(ns).Get(ctx, names[(i*10+j)%len(names)], metav1.GetOptions{})
			require.NoError(t, err)
			cm.Data["v"] = fmt.Sprint(i + 1)
			_, err = src.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
		for j := range 3 {
			require.NoError(t, src.CoreV1().ConfigMaps(ns).Delete(ctx, names[(i*7+j*13+5)%len(names)], metav1.DeleteOptions{}))
			create()
		}

		delay := time.Duration(scale * float64(full) * float64(killed*killed) / float64(wantKills*wantKills))
		cmd := c.command(ctx, "sync", "--repo", c.repo)
		var runOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &runOut, &runOut
		require.NoError(t, cmd.Start())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			require.NoError(t, err, "round %d: a run that was not killed failed:\n%s", i, runOut.String())
			scale *= 0.8
		case <-time.After(delay):
			err := cmd.Process.Signal(syscall.SIGKILL)
			if errors.Is(err, os.ErrProcessDone) {
				// It ended as the delay did: a run that was not killed.
				require.NoError(t, <-done, "round %d: a run that was not killed failed:\n%s", i, runOut.String())
				scale *= 0.8
				break
			}
			require.NoError(t, err)
			<-done
			killed++
		}

		// The repository is valid, whatever the moment of the kill.
		git(t, c.repo, "fsck", "--strict", "--no-dangling")
		head := strings.TrimSpace(git(t, c.repo, "rev-parse", "HEAD"))
		git(t, c.repo, "cat-file", "-e", head+"^{tree}")

		// The next run recovers and converges.
		code, out := c.run(t, "sync", "--repo", c.repo)
		require.Equal(t, 0, code, "round %d (killed after %s): recovery run failed:\n%s", i, delay, out)
		code, out = c.run(t, "diff", "--repo", c.repo)
		require.Equal(t, 0, code, "round %d: the target differs from the commit after recovery:\n%s", i, out)
		require.Empty(t, git(t, c.repo, "status", "--porcelain"), "round %d: the work tree does not match HEAD", i)
		// No object lost: every source ConfigMap is in the commit and in
		// the target.
		want, err := src.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		inRepo := strings.Count(git(t, c.repo, "ls-tree", "--name-only", "HEAD:snapshots/"+source+"/"+ns+"/ConfigMap/"), "\n")
		require.Equal(t, len(want.Items), inRepo, "round %d: ConfigMaps in the commit", i)
		for _, cm := range want.Items {
			got, err := tgt.CoreV1().ConfigMaps(dst).Get(ctx, cm.Name, metav1.GetOptions{})
			require.NoError(t, err, "round %d: ConfigMap %s in the target", i, cm.Name)
			require.Equal(t, cm.Data, got.Data, "round %d: ConfigMap %s", i, cm.Name)
		}
		s, err := tgt.CoreV1().ConfigMaps(dst).Get(ctx, "not-ours", metav1.GetOptions{})
		require.NoError(t, err, "round %d: an object outside the inventory was deleted", i)
		require.Equal(t, sentinel.ResourceVersion, s.ResourceVersion, "round %d: an object outside the inventory was changed", i)
	}
	t.Logf("%d runs killed; a run took %s", killed, full)
	require.GreaterOrEqual(t, killed, wantKills, "too few runs were killed: the kill points must fall inside runs")
}
