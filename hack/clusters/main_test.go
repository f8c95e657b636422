package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

// TestUpDown is `make clusters-up`, a client on the kubeconfig it wrote,
// `make clusters-up` again, and `make clusters-down`.
func TestUpDown(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "clusters")
	t.Cleanup(func() { _ = testcluster.StopProcesses(ctx, dir) }) // if the test fails half-way

	require.NoError(t, run(ctx, []string{"up", "--dir", dir}))
	n, err := testcluster.CountProcesses(dir)
	require.NoError(t, err)
	require.Equal(t, 4, n, "2 kube-apiservers and 2 etcds")

	for _, name := range []string{"source", "target"} {
		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, name+".kubeconfig"))
		require.NoError(t, err)
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		require.NoError(t, err, name)
		require.NotEmpty(t, nss.Items, name)
		info, err := os.Stat(filepath.Join(dir, name+".kubeconfig"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a kubeconfig holds credentials")
	}

	require.NoError(t, run(ctx, []string{"up", "--dir", dir}), "a second up is a no-op")
	n, err = testcluster.CountProcesses(dir)
	require.NoError(t, err)
	require.Equal(t, 4, n, "a second up must not start more clusters")

	require.NoError(t, run(ctx, []string{"down", "--dir", dir}))
	n, err = testcluster.CountProcesses(dir)
	require.NoError(t, err)
	require.Zero(t, n, "down must leave no control-plane process")
	_, err = os.Stat(dir)
	require.True(t, os.IsNotExist(err), "down removes the clusters' state: %v", err)

	require.NoError(t, run(ctx, []string{"down", "--dir", dir}), "down with nothing up is fine")
}
