package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }

// TestSnapshotCommand runs init and snapshot as a person would, against
// the real source apiserver, with the kubeconfig from the environment.
func TestSnapshotCommand(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	_, err := src.Clientset().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	repo := filepath.Join(t.TempDir(), "dr")
	code, _, errOut := runCLI(t, "init", "--repo", repo, "--source", "prod", "--target", "dr", "--namespace-map", ns+"="+ns+"-dr")
	require.Equal(t, 0, code, errOut)

	// No kubeconfig: a usage error, nothing committed.
	t.Setenv("DR_SYNCER_SOURCE_KUBECONFIG", "")
	code, _, errOut = runCLI(t, "snapshot", "--repo", repo)
	require.Equal(t, exitUsage, code)
	require.Equal(t, "dr-syncer: no source kubeconfig: pass --source-kubeconfig or set DR_SYNCER_SOURCE_KUBECONFIG\n", errOut)

	kubeconfig := filepath.Join(t.TempDir(), "source.kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, src.Kubeconfig, 0o600))
	t.Setenv("DR_SYNCER_SOURCE_KUBECONFIG", kubeconfig)
	code, out, errOut := runCLI(t, "snapshot", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "snapshot prod: +2 ~0 -0 (2 objects): commit ")
	require.Equal(t, "", errOut)
	require.Equal(t, "snapshots/prod/_cluster/Namespace/"+ns+".yaml\nsnapshots/prod/"+ns+"/ConfigMap/settings.yaml\n",
		gitOut(t, repo, "show", "--format=", "--name-only", "HEAD", "--", "snapshots"))

	code, out, errOut = runCLI(t, "snapshot", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "snapshot prod: no change (2 objects)")
	require.Equal(t, 2, gitCount(t, repo))

	// An uncommitted edit of the mapping is not used, and the command says so.
	mapping := filepath.Join(repo, "dr-syncer.yaml")
	data, err := os.ReadFile(mapping)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(mapping, append(data, []byte("# an edit\n")...), 0o644))
	code, _, errOut = runCLI(t, "snapshot", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "note: dr-syncer.yaml has uncommitted changes; using the version committed on main\n", errOut)

	// A missing identity is a clear error naming the file, and commits nothing.
	code, _, errOut = runCLI(t, "snapshot", "--repo", repo, "--identity", "/nonexistent/id.agekey")
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "age identity /nonexistent/id.agekey: not found")
	require.Equal(t, 2, gitCount(t, repo))
}
