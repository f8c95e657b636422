package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

// clusterEnv gives the commands of the test the kubeconfigs of both test
// clusters (by environment, as a person would) and a configuration
// directory of their own (identities, agent keys).
func clusterEnv(t *testing.T) {
	t.Helper()
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("DR_SYNCER_SOURCE_KUBECONFIG", writeKubeconfig(t, clusters.Source))
	t.Setenv("DR_SYNCER_TARGET_KUBECONFIG", writeKubeconfig(t, clusters.Target))
}

func writeKubeconfig(t *testing.T, c *testcluster.Cluster) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), c.Name+".kubeconfig")
	require.NoError(t, os.WriteFile(path, c.Kubeconfig, 0o600))
	return path
}

// TestSyncCommand replicates a namespace from the source to the target
// with the commands a person would run: init, sync, diff, apply.
func TestSyncCommand(t *testing.T) {
	clusterEnv(t)
	ctx := t.Context()
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	ns := clusters.Source.Namespace(t)
	dst := ns + "-dr"
	three := int32(3)
	_, err := src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": "sync-test-plaintext"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &three,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	repo := filepath.Join(t.TempDir(), "dr")
	code, _, errOut := runCLI(t, "init", "--repo", repo, "--source", "prod", "--target", "dr", "--namespace-map", ns+"="+dst)
	require.Equal(t, 0, code, errOut)

	code, out, errOut := runCLI(t, "sync", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "snapshot prod: +4 ~0 -0")
	require.Contains(t, out, "4 created")

	cm, err := tgt.CoreV1().ConfigMaps(dst).Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "blue", cm.Data["color"])
	secret, err := tgt.CoreV1().Secrets(dst).Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "sync-test-plaintext", string(secret.Data["password"]), "the target gets the Secret's real value")
	dep, err := tgt.AppsV1().Deployments(dst).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Zero(t, *dep.Spec.Replicas, "DR standby")
	require.Equal(t, "3", dep.Annotations["dr-syncer.io/original-replicas"])

	// Status: the target holds the tip, 0 behind.
	code, out, errOut = runCLI(t, "status", "--repo", repo, "--output", "json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"behind": 0`)
	require.Contains(t, out, `"objects": 4`)
	require.Contains(t, out, `"commit": "`+strings.TrimSpace(gitOut(t, repo, "rev-parse", "HEAD"))+`"`)

	// In sync: diff exits 0; a second sync changes nothing.
	code, out, errOut = runCLI(t, "diff", "--repo", repo)
	require.Equal(t, 0, code, "diff: %s %s", out, errOut)
	code, out, errOut = runCLI(t, "sync", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "no change")
	require.Contains(t, out, "4 unchanged")

	// Drift made by hand in the target: diff exits 1 and shows it; apply
	// restores the commit's value.
	cm.Data["color"] = "red"
	_, err = tgt.CoreV1().ConfigMaps(dst).Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	code, out, errOut = runCLI(t, "diff", "--repo", repo)
	require.Equal(t, exitError, code, errOut)
	require.Empty(t, errOut)
	require.Contains(t, out, "ConfigMap/"+dst+"/settings")
	require.Contains(t, out, "-  color: red")
	require.Contains(t, out, "+  color: blue")
	code, _, errOut = runCLI(t, "apply", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	cm, err = tgt.CoreV1().ConfigMaps(dst).Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "blue", cm.Data["color"])

	// A hand-made object in the target survives; an object deleted in the
	// source is pruned from the target.
	_, err = tgt.CoreV1().ConfigMaps(dst).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "local"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.NoError(t, src.CoreV1().ConfigMaps(ns).Delete(ctx, "settings", metav1.DeleteOptions{}))
	code, out, errOut = runCLI(t, "sync", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "1 deleted")
	_, err = tgt.CoreV1().ConfigMaps(dst).Get(ctx, "settings", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "pruned: %v", err)
	_, err = tgt.CoreV1().ConfigMaps(dst).Get(ctx, "local", metav1.GetOptions{})
	require.NoError(t, err, "an object dr-syncer did not create is never pruned")

	// Rollback of the commit that recorded the deletion: the object comes
	// back in the target, from a revert commit.
	deletion := strings.TrimSpace(gitOut(t, repo, "rev-parse", "HEAD"))
	code, out, errOut = runCLI(t, "rollback", "--repo", repo, deletion)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "rollback: reverted "+deletion)
	require.Contains(t, out, "1 created")
	cm, err = tgt.CoreV1().ConfigMaps(dst).Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err, "rolled back")
	require.Equal(t, "blue", cm.Data["color"])
	require.Contains(t, gitOut(t, repo, "log", "-1", "--format=%B"), "This reverts commit "+deletion)

	// Failover: the Deployment gets its replicas back, and a later sync
	// keeps them.
	code, out, errOut = runCLI(t, "failover", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "failover: standby off")
	dep, err = tgt.AppsV1().Deployments(dst).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *dep.Spec.Replicas)
	code, _, errOut = runCLI(t, "sync", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	dep, err = tgt.AppsV1().Deployments(dst).Get(ctx, "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 3, *dep.Spec.Replicas, "a sync after failover must not bring standby back")
	require.Contains(t, gitOut(t, repo, "show", "HEAD~1:dr-syncer.yaml")+gitOut(t, repo, "show", "HEAD:dr-syncer.yaml"), "disabled: true")
	code, out, errOut = runCLI(t, "status", "--repo", repo, "--output", "json")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"lastSnapshot"`, "found behind the failover commit the target holds")

	// A snapshot not applied yet: status says the target is one commit behind.
	_, err = src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "extra"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	code, _, errOut = runCLI(t, "snapshot", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	code, out, errOut = runCLI(t, "status", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "behind:          1 commits")

	// The plaintext never reached the repository.
	require.NotContains(t, gitOut(t, repo, "cat-file", "--batch-all-objects", "--batch"), "sync-test-plaintext")
	require.False(t, strings.Contains(out, "sync-test-plaintext"))
}
