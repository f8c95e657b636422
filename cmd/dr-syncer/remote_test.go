package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/dr-syncer/dr-syncer/internal/gitserver"
)

// The remote flows of the command line, against a real Git server on
// loopback (internal/gitserver) and the real apiservers: the server's
// repository is checked with the git command line, and people's commits
// (a revert, a merge) are made with it in clones of their own.

// remoteRepo is a DR repository on the test server, and the flags that
// reach it.
type remoteRepo struct {
	target string // the target cluster's name: one mapping (and inventory) per test
	srv    *gitserver.Server
	bare   string // the server's repository on disk
	url    string
	auth   string // --git-auth-dir
}

// newRemoteRepo creates an empty repository on srv and a credentials
// directory for transport ("http" or "ssh"), as a mounted Secret has it.
func newRemoteRepo(t *testing.T, srv *gitserver.Server, name, transport string) remoteRepo {
	t.Helper()
	r := remoteRepo{srv: srv, bare: srv.CreateRepo(t, name), auth: t.TempDir()}
	files := map[string][]byte{}
	switch transport {
	case "http":
		r.url = srv.HTTPURL(name)
		files["username"], files["password"] = []byte(srv.Username+"\n"), []byte(srv.Password+"\n")
	case "ssh":
		r.url = srv.SSHURL(name)
		files["identity"], files["known_hosts"] = srv.ClientKey, srv.KnownHosts
	}
	for k, v := range files {
		require.NoError(t, os.WriteFile(filepath.Join(r.auth, k), v, 0o600))
	}
	return r
}

// flags are the repository flags of a command, with a clone cache of its
// own per cache name (one per writer).
func (r remoteRepo) flags(t *testing.T, cache string) []string {
	return []string{"--repo", r.url, "--git-auth-dir", r.auth, "--cache-dir", filepath.Join(cacheRoot(t), cache)}
}

var cacheRoots sync.Map

func cacheRoot(t *testing.T) string {
	if d, ok := cacheRoots.Load(t.Name()); ok {
		return d.(string)
	}
	d := t.TempDir()
	cacheRoots.Store(t.Name(), d)
	return d
}

// serverGit runs git in the server's repository.
func (r remoteRepo) serverGit(t *testing.T, args ...string) string {
	t.Helper()
	return strings.TrimSpace(gitserver.Git(t, r.bare, args...))
}

// person clones the server's repository with the git command line (from
// its directory: the person's transport is not under test).
func (r remoteRepo) person(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "person")
	gitserver.Git(t, "", "clone", "--quiet", r.bare, dir)
	return dir
}

func cli(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := runCLI(t, args...)
	require.Equal(t, 0, code, "dr-syncer %s:\n%s%s", strings.Join(args, " "), out, errOut)
	return out
}

var commitLine = regexp.MustCompile(`commit ([0-9a-f]{7}) on `)

// remoteSetup sets up a source namespace with one ConfigMap, the kubeconfigs
// and an identity in the environment, and a repository initialised on the
// server.
func remoteSetup(t *testing.T, transport string) (remoteRepo, string, string) {
	t.Helper()
	clusterEnv(t)
	for _, k := range []string{"USERNAME", "PASSWORD", "TOKEN", "SSH_KEY", "SSH_KEY_PASSPHRASE", "KNOWN_HOSTS"} {
		t.Setenv("DR_SYNCER_GIT_"+k, "")
	}
	ns := clusters.Source.Namespace(t)
	_, err := clusters.Source.Clientset().CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"color": "blue"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	r := newRemoteRepo(t, gitserver.Start(t), "dr.git", transport)
	r.target = "dr-" + ns[strings.LastIndexByte(ns, '-')+1:]
	cli(t, append([]string{"init", "--source", "prod", "--target", r.target, "--namespace-map", ns + "=" + ns + "-dr"}, r.flags(t, "a")...)...)
	require.Contains(t, r.serverGit(t, "show", "main:dr-syncer.yaml"), "name: prod-to-"+r.target, "init pushed")
	return r, ns, ns + "-dr"
}

func targetColor(t *testing.T, ns string) string {
	t.Helper()
	cm, err := clusters.Target.Clientset().CoreV1().ConfigMaps(ns).Get(t.Context(), "settings", metav1.GetOptions{})
	require.NoError(t, err)
	return cm.Data["color"]
}

func setSourceColor(t *testing.T, ns, color string) {
	t.Helper()
	cms := clusters.Source.Clientset().CoreV1().ConfigMaps(ns)
	cm, err := cms.Get(t.Context(), "settings", metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data["color"] = color
	_, err = cms.Update(t.Context(), cm, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// TestRemoteSync: sync with a URL over HTTP (basic auth) and SSH clones,
// commits, pushes and applies; the server's repository holds the commit.
func TestRemoteSync(t *testing.T) {
	for _, transport := range []string{"http", "ssh"} {
		t.Run(transport, func(t *testing.T) {
			r, ns, dst := remoteSetup(t, transport)
			out := cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
			m := commitLine.FindStringSubmatch(out)
			require.NotNil(t, m, out)
			require.Contains(t, out, " of "+r.url)
			require.True(t, strings.HasPrefix(r.serverGit(t, "rev-parse", "main"), m[1]), "the server's main is the snapshot commit")
			require.Contains(t, r.serverGit(t, "show", "main:snapshots/prod/"+ns+"/ConfigMap/settings.yaml"), "color: blue")
			require.Equal(t, "blue", targetColor(t, dst))

			// Another clone (a second cache) sees it: nothing to commit.
			out = cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "b")...)...)
			require.Contains(t, out, "no change")
		})
	}
}

// TestRemoteAuthErrors: wrong credentials and an unknown host key end with
// exit code 1 and one line that names the remote, never a credential.
func TestRemoteAuthErrors(t *testing.T) {
	srv := gitserver.Start(t)
	srv.CreateRepo(t, "dr.git")
	other := gitserver.Start(t) // its host key is not the one pinned
	for _, tc := range []struct {
		name, url string
		files     map[string][]byte
		want      string
		secret    string
	}{
		{"wrong password", srv.HTTPURL("dr.git"), map[string][]byte{"username": []byte(srv.Username), "password": []byte("wrong-" + srv.Password)}, srv.HTTPURL("dr.git"), "wrong-" + srv.Password},
		{"unknown host key", srv.SSHURL("dr.git"), map[string][]byte{"identity": srv.ClientKey, "known_hosts": other.KnownHosts}, "known_hosts", string(srv.ClientKey[40:80])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := t.TempDir()
			for k, v := range tc.files {
				require.NoError(t, os.WriteFile(filepath.Join(auth, k), v, 0o600))
			}
			for _, args := range [][]string{{"status"}, {"apply"}, {"diff", "--from", "main", "--to", "main"}} {
				var o, e bytes.Buffer
				code := run(t.Context(), append(args, "--repo", tc.url, "--git-auth-dir", auth, "--cache-dir", t.TempDir()), &o, &e)
				all := o.String() + e.String()
				if args[0] == "diff" {
					require.Equal(t, exitUsage, code, all) // diff: 1 means differences
				} else {
					require.Equal(t, exitError, code, all)
				}
				require.Equal(t, 1, strings.Count(e.String(), "\n"), "one line: %s", all)
				require.Contains(t, e.String(), tc.want)
				require.NotContains(t, all, tc.secret)
				require.NotContains(t, all, srv.Password)
			}
		})
	}
}

// TestRemoteConcurrentWriters: writers on clones of their own, and a
// person, push to main at once; every commit any of them reported is on
// the server's main.
func TestRemoteConcurrentWriters(t *testing.T) {
	r, ns, _ := remoteSetup(t, "http")
	setSourceColor(t, ns, "green")
	person := r.person(t)
	var wg sync.WaitGroup
	outs := make([]string, 3)
	codes := make([]int, 3)
	for i := range outs {
		wg.Go(func() {
			var o, e bytes.Buffer
			codes[i] = run(t.Context(), append([]string{"snapshot"}, r.flags(t, string(rune('a'+i)))...), &o, &e)
			outs[i] = o.String() + e.String()
		})
	}
	var personCommit string
	var personErr error
	wg.Go(func() { personCommit, personErr = personEdit(t.Context(), person, "overlays/"+r.target+"/notes.yaml") })
	wg.Wait()
	require.NoError(t, personErr)
	history := r.serverGit(t, "rev-list", "main")
	committed := 0
	for i, out := range outs {
		require.Equal(t, 0, codes[i], out)
		if m := commitLine.FindStringSubmatch(out); m != nil {
			committed++
			require.Regexp(t, "(?m)^"+m[1], history, "writer %d's commit is on the server", i)
		}
	}
	require.GreaterOrEqual(t, committed, 1, "one writer committed the change: %q", outs)
	require.Contains(t, history, personCommit, "the person's commit is on the server")
	require.Contains(t, r.serverGit(t, "show", "main:snapshots/prod/"+ns+"/ConfigMap/settings.yaml"), "color: green")
	require.Contains(t, r.serverGit(t, "show", "main:overlays/"+r.target+"/notes.yaml"), "a person's edit")
}

// personEdit commits an overlay file and pushes it, rebasing on what was
// pushed meanwhile, as a person would; it returns the commit that landed.
func personEdit(ctx context.Context, dir, path string) (string, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
		cmd.Env = gitserver.Env()
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("git %v: %w: %s", args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if err := os.WriteFile(filepath.Join(dir, path), []byte("note: a person's edit\n"), 0o644); err != nil {
		return "", err
	}
	if _, err := git("add", "."); err != nil {
		return "", err
	}
	if _, err := git("commit", "--quiet", "-m", "person: notes"); err != nil {
		return "", err
	}
	for range 20 {
		if _, err := git("push", "--quiet", "origin", "main"); err == nil {
			return git("rev-parse", "HEAD")
		}
		if _, err := git("pull", "--quiet", "--rebase", "origin", "main"); err != nil {
			return "", err
		}
	}
	return "", errors.New("person: push kept failing")
}

// TestRemoteRevert: a revert made with the git command line in another
// clone and pushed is applied by `apply --repo URL`, pruning what the
// reverted commit added; then `run --repo URL` applies the next one it
// polls, and `rollback` reverts, pushes and applies.
func TestRemoteRevert(t *testing.T) {
	r, ns, dst := remoteSetup(t, "http")
	src, tgt := clusters.Source.Clientset(), clusters.Target.Clientset()
	// Enough objects that pruning one stays under the mass-prune guard.
	for _, name := range []string{"pad-1", "pad-2", "pad-3", "pad-4"} {
		_, err := src.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
	for _, name := range []string{"extra", "later"} {
		_, err := src.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{})
		require.NoError(t, err)
		cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
		_, err = tgt.CoreV1().ConfigMaps(dst).Get(t.Context(), name, metav1.GetOptions{})
		require.NoError(t, err)
	}
	later := r.serverGit(t, "rev-parse", "main")
	extra := r.serverGit(t, "rev-parse", "main~1")
	person := r.person(t)
	gitserver.Git(t, person, "revert", "--no-edit", later)
	gitserver.Git(t, person, "push", "--quiet", "origin", "main")

	out := cli(t, append([]string{"apply"}, r.flags(t, "b")...)...)
	require.Contains(t, out, "1 deleted")
	_, err := tgt.CoreV1().ConfigMaps(dst).Get(t.Context(), "later", metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the revert pruned it: %v", err)

	// The controller on a URL: a revert pushed later is polled and applied.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	var runOut, runErr bytes.Buffer
	controllerNS := clusters.Target.Namespace(t)
	go func() {
		done <- run(ctx, append([]string{"run", "--poll", "200ms", "--metrics-addr", "", "--no-volumes",
			"--namespace", controllerNS}, r.flags(t, "c")...), &runOut, &runErr)
	}()
	gitserver.Git(t, person, "revert", "--no-edit", extra)
	gitserver.Git(t, person, "push", "--quiet", "origin", "main")
	require.Eventually(t, func() bool {
		_, err := tgt.CoreV1().ConfigMaps(dst).Get(t.Context(), "extra", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 30*time.Second, 100*time.Millisecond, "run applies the pushed revert: %s", &runErr)
	cancel()
	require.Equal(t, 0, <-done, runErr.String())

	// rollback reverts the person's revert, pushes and applies: extra is
	// back.
	revert := r.serverGit(t, "rev-parse", "main")
	out = cli(t, append([]string{"rollback", revert}, r.flags(t, "a")...)...)
	require.Contains(t, out, "1 created")
	require.Equal(t, r.serverGit(t, "rev-parse", "main~1"), revert, "pushed on top of the revert")
	_, err = tgt.CoreV1().ConfigMaps(dst).Get(t.Context(), "extra", metav1.GetOptions{})
	require.NoError(t, err)
	// Reverting it again no longer applies: refused, nothing pushed.
	code, _, errOut := runCLI(t, append([]string{"rollback", revert}, r.flags(t, "b")...)...)
	require.Equal(t, exitError, code)
	require.Contains(t, errOut, "no longer applies")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
}

// TestRemoteReview: in review mode a source change is committed to
// snapshots/prod and waits there; status counts it, diff --from --to shows
// it as an object change, and a merge pushed by a person gets it applied.
func TestRemoteReview(t *testing.T) {
	r, ns, dst := remoteSetup(t, "ssh")
	cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
	require.Equal(t, "blue", targetColor(t, dst))

	person := r.person(t)
	mapping := filepath.Join(person, "dr-syncer.yaml")
	data, err := os.ReadFile(mapping)
	require.NoError(t, err)
	data = append(data, []byte("  review:\n    enabled: true\n")...)
	require.NoError(t, os.WriteFile(mapping, data, 0o644))
	gitserver.Git(t, person, "commit", "--quiet", "-am", "review snapshots before they are applied")
	gitserver.Git(t, person, "push", "--quiet", "origin", "main")

	setSourceColor(t, ns, "red")
	out := cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
	require.Contains(t, out, "on snapshots/prod of "+r.url)
	require.Contains(t, r.serverGit(t, "show", "snapshots/prod:snapshots/prod/"+ns+"/ConfigMap/settings.yaml"), "color: red")
	require.NotContains(t, r.serverGit(t, "show", "main:snapshots/prod/"+ns+"/ConfigMap/settings.yaml"), "color: red")
	require.Equal(t, "blue", targetColor(t, dst), "held for review")

	out = cli(t, append([]string{"status"}, r.flags(t, "b")...)...)
	require.Contains(t, out, "1 snapshot commits on snapshots/prod wait for review")
	out = cli(t, append([]string{"status", "-o", "json"}, r.flags(t, "b")...)...)
	require.Contains(t, out, `"waiting": 1`)

	code, out, errOut := runCLI(t, append([]string{"diff", "--from", "main", "--to", "snapshots/prod"}, r.flags(t, "b")...)...)
	require.Equal(t, exitError, code, errOut)
	require.Contains(t, out, "changed ConfigMap "+ns+"/settings\n")
	code, out, errOut = runCLI(t, append([]string{"diff", "--from", "main", "--to", "snapshots/prod", "-o", "json"}, r.flags(t, "b")...)...)
	require.Equal(t, exitError, code, errOut)
	require.Contains(t, out, `"action": "changed"`)

	gitserver.Git(t, person, "pull", "--quiet", "origin", "main")
	gitserver.Git(t, person, "fetch", "--quiet", "origin")
	gitserver.Git(t, person, "merge", "--quiet", "--no-ff", "-m", "merge the snapshot", "origin/snapshots/prod")
	gitserver.Git(t, person, "push", "--quiet", "origin", "main")
	cli(t, append([]string{"apply"}, r.flags(t, "b")...)...)
	require.Equal(t, "red", targetColor(t, dst), "applied once merged")
	out = cli(t, append([]string{"status", "-o", "json"}, r.flags(t, "b")...)...)
	require.Contains(t, out, `"waiting": 0`)

	// A squash merge, then the branch deleted on the server, as forges
	// offer: nothing waits, and the next pull request holds only the next
	// snapshot.
	setSourceColor(t, ns, "green")
	cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
	gitserver.Git(t, person, "fetch", "--quiet", "origin")
	gitserver.Git(t, person, "merge", "--quiet", "--squash", "origin/snapshots/prod")
	gitserver.Git(t, person, "commit", "--quiet", "-m", "squash the snapshot")
	gitserver.Git(t, person, "push", "--quiet", "origin", "main", ":snapshots/prod")
	out = cli(t, append([]string{"status", "-o", "json"}, r.flags(t, "a")...)...)
	require.Contains(t, out, `"waiting": 0`, "squash-merged")
	cli(t, append([]string{"apply"}, r.flags(t, "b")...)...)
	require.Equal(t, "green", targetColor(t, dst), "applied once squash-merged")
	setSourceColor(t, ns, "yellow")
	cli(t, append([]string{"sync", "--no-volumes"}, r.flags(t, "a")...)...)
	require.Equal(t, "1", strings.TrimSpace(r.serverGit(t, "rev-list", "--count", "main..snapshots/prod")), "only the new snapshot waits")
	out = cli(t, append([]string{"status", "-o", "json"}, r.flags(t, "b")...)...)
	require.Contains(t, out, `"waiting": 1`)
}
