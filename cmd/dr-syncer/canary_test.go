package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/gitserver"
)

// TestSecretsCanary puts distinct canary values in the source's Secrets —
// in data, in stringData, and one only in kubectl's last-applied
// annotation — then snapshots, changes, deletes, rolls back, fails over and
// pushes to a remote, and scans every object of the local repository and
// of the remote (every blob of every commit on every branch, and whatever
// else the object store holds) for any of them, plain or base64.
func TestSecretsCanary(t *testing.T) {
	clusterEnv(t)
	ctx := t.Context()
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	ns := clusters.Source.Namespace(t)
	dst := ns + "-dr"

	canary := func(name string) string {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		return "canary-" + name + "-" + hex.EncodeToString(b)
	}
	var canaries []string
	newCanary := func(name string) string {
		c := canary(name)
		canaries = append(canaries, c)
		return c
	}
	password, token := newCanary("string-data"), newCanary("data")
	certKey, applied := newCanary("cert"), newCanary("last-applied-only")
	lastApplied, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": "tls", "namespace": ns},
		"stringData": map[string]string{"tls.key": certKey, "old.key": applied},
	})
	require.NoError(t, err)

	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": password},
		Data:       map[string][]byte{"token": []byte(token)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "tls", Annotations: map[string]string{
			"kubectl.kubernetes.io/last-applied-configuration": string(lastApplied),
		}},
		Data: map[string][]byte{"tls.key": []byte(certKey)},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	var output strings.Builder
	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, args...)
		output.WriteString(out + errOut)
		require.Equal(t, 0, code, "%v: %s", args, errOut)
		return out
	}
	repo := filepath.Join(t.TempDir(), "dr")
	cli("init", "--repo", repo, "--source", "canary", "--target", "canary-dr", "--namespace-map", ns+"="+dst)
	cli("sync", "--repo", repo, "--no-volumes")
	db, err := tgt.CoreV1().Secrets(dst).Get(ctx, "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, password, string(db.Data["password"]), "the canary reached the target")
	require.Equal(t, token, string(db.Data["token"]))

	// Changes: a new value in data, a new Secret, a deletion.
	changed := newCanary("changed")
	db.Data = map[string][]byte{"password": []byte(changed), "token": []byte(token)}
	_, err = src.CoreV1().Secrets(ns).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db", ResourceVersion: ""}, Data: db.Data}, metav1.UpdateOptions{})
	require.NoError(t, err)
	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		StringData: map[string]string{"key": newCanary("added")},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cli("sync", "--repo", repo, "--no-volumes")
	require.NoError(t, src.CoreV1().Secrets(ns).Delete(ctx, "tls", metav1.DeleteOptions{}))
	cli("sync", "--repo", repo, "--no-volumes")

	// A revert of the deletion brings the sealed Secret back; failover is
	// one more commit.
	deletion := strings.TrimSpace(gitOut(t, repo, "rev-parse", "HEAD"))
	cli("rollback", "--repo", repo, deletion)
	tls, err := tgt.CoreV1().Secrets(dst).Get(ctx, "tls", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, certKey, string(tls.Data["tls.key"]))
	cli("failover", "--repo", repo)
	// A branch of its own (as review mode has), holding a later snapshot.
	gitOut(t, repo, "branch", "review")
	_, err = src.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "late"},
		Data:       map[string][]byte{"v": []byte(newCanary("on-a-branch"))},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	cli("snapshot", "--repo", repo, "--branch", "review")

	// Push every branch to a real Git server on loopback.
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "canary.git")
	pushURL := strings.Replace(srv.HTTPURL("canary.git"), "http://", "http://"+srv.Username+":"+srv.Password+"@", 1)
	gitserver.Git(t, repo, "push", "--quiet", pushURL, "--all")
	require.Contains(t, gitserver.Git(t, bare, "branch", "--list"), "review")

	// Not vacuous: the repository holds the Secrets, sealed, on every branch.
	for _, branch := range []string{"main", "review"} {
		files := gitOut(t, repo, "ls-tree", "-r", "--name-only", branch)
		require.Contains(t, files, "Secret/db.yaml")
		require.Contains(t, gitOut(t, repo, "show", branch+":snapshots/canary/"+ns+"/Secret/db.yaml"), "ENC[AGE,v1,")
	}
	require.Contains(t, gitOut(t, repo, "ls-tree", "-r", "--name-only", "main"), "Secret/tls.yaml", "restored by the rollback")
	require.Contains(t, gitOut(t, repo, "ls-tree", "-r", "--name-only", "review"), "Secret/late.yaml")
	require.GreaterOrEqual(t, gitCount(t, repo), 6)

	for _, dir := range []string{repo, bare} {
		objects := catAllObjects(t, dir)
		require.Greater(t, len(objects), 20, "%s: objects read", dir)
		for _, c := range canaries {
			for _, form := range []string{c, base64.StdEncoding.EncodeToString([]byte(c)), base64.RawStdEncoding.EncodeToString([]byte(c))} {
				require.NotContains(t, objects, form, "%s: a Secret's plaintext (%s) is in a git object", dir, c)
			}
		}
		// And commit by commit, on every branch: the trees as checked out.
		revs := strings.Fields(gitOut(t, dir, "rev-list", "--all"))
		require.GreaterOrEqual(t, len(revs), 6)
		for _, rev := range revs {
			args := []string{"grep", "-F", "-a", "-l"}
			for _, c := range canaries {
				args = append(args, "-e", c)
			}
			cmd := exec.CommandContext(t.Context(), "git", append(args, rev, "--")...)
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit) && exit.ExitCode() == 1, "%s: commit %s: git grep found a canary (or failed): %v %s", dir, rev, err, out)
		}
	}
	for _, c := range canaries {
		require.NotContains(t, output.String(), c, "a command printed a Secret's plaintext")
	}
}

// catAllObjects is every object of the repository at dir, reachable or
// not, packed or loose, as git stores it (decompressed).
func catAllObjects(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", "cat-file", "--batch-all-objects", "--batch", "--unordered")
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err)
	return string(out)
}
