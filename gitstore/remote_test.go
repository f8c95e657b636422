package gitstore

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dr-syncer/dr-syncer/internal/gitserver"
)

// Remote tests run against a real Git server on loopback (git http-backend
// over HTTP, git upload-pack/receive-pack over SSH) and check the server's
// repositories with the git command line.

type transportCase struct {
	name   string
	remote func(s *gitserver.Server, repo string) Remote
}

var transports = []transportCase{
	{"http basic", func(s *gitserver.Server, repo string) Remote {
		return Remote{URL: s.HTTPURL(repo), Auth: Auth{Username: s.Username, Password: s.Password}}
	}},
	{"http token", func(s *gitserver.Server, repo string) Remote {
		return Remote{URL: s.HTTPURL(repo), Auth: Auth{Token: s.Token}}
	}},
	{"ssh", func(s *gitserver.Server, repo string) Remote {
		return Remote{URL: s.SSHURL(repo), Auth: Auth{SSHKey: s.ClientKey, KnownHosts: s.KnownHosts}}
	}},
	{"scp-like", func(s *gitserver.Server, repo string) Remote {
		return Remote{URL: s.SCPURL(repo), Auth: Auth{SSHKey: s.ClientKey, KnownHosts: s.KnownHosts}}
	}},
}

// person is someone working on the remote with the git command line, in a
// clone of the server's repository.
type person struct {
	dir  string
	bare string
}

func newPerson(t testing.TB, bare string) *person {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "person")
	gitRun(t, filepath.Dir(dir), "clone", "--quiet", bare, dir)
	return &person{dir: dir, bare: bare}
}

// commitAndPush commits one file and pushes it, rebasing on what others
// pushed meanwhile, and returns the commit as it landed on the remote.
func (p *person) commitAndPush(ctx context.Context, branch, path, content, msg string) (plumbing.Hash, error) {
	run := func(args ...string) (string, error) { return gitOutput(ctx, p.dir, args...) }
	if out, _ := run("ls-remote", "origin", "refs/heads/"+branch); strings.TrimSpace(out) != "" {
		if _, err := run("fetch", "--quiet", "origin"); err != nil {
			return plumbing.ZeroHash, err
		}
		if _, err := run("checkout", "--quiet", "-B", branch, "origin/"+branch); err != nil {
			return plumbing.ZeroHash, err
		}
	} else if _, err := run("checkout", "--quiet", "--orphan", branch); err != nil {
		return plumbing.ZeroHash, err
	}
	name := filepath.Join(p.dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := run("add", path); err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := run("commit", "--quiet", "-m", msg); err != nil {
		return plumbing.ZeroHash, err
	}
	for range 20 {
		if _, err := run("push", "--quiet", "origin", branch); err == nil {
			out, err := run("rev-parse", "HEAD")
			return plumbing.NewHash(strings.TrimSpace(out)), err
		}
		if _, err := run("pull", "--quiet", "--rebase", "origin", branch); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	return plumbing.ZeroHash, errors.New("person: push kept failing")
}

func (p *person) mustCommit(t testing.TB, branch, path, content string) plumbing.Hash {
	t.Helper()
	h, err := p.commitAndPush(t.Context(), branch, path, content, "person: edit "+path)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// snapshotBuild returns a build that writes files and records what it
// built on which tip.
func snapshotBuild(files map[string]string, calls *[]plumbing.Hash) BuildFunc {
	return func(ctx context.Context, tip plumbing.Hash) ([]Change, CommitOptions, error) {
		if calls != nil {
			*calls = append(*calls, tip)
		}
		var changes []Change
		for _, p := range slices.Sorted(mapsKeys(files)) {
			changes = append(changes, put(p, files[p]))
		}
		return changes, CommitOptions{Message: "snapshot\n\nSource-Cluster: prod"}, nil
	}
}

func mapsKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestRemoteRoundTrip(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	for i, tc := range transports {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			repo := fmt.Sprintf("dr-%d.git", i)
			bare := srv.CreateRepo(t, repo)
			p := newPerson(t, bare)
			p.mustCommit(t, "main", "overlays/dr/kustomization.yaml", "resources: []\n")
			rm := tc.remote(srv, repo)
			cache := filepath.Join(t.TempDir(), "cache")

			r, err := Clone(ctx, rm, cache)
			if err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, filepath.Join(cache, "overlays/dr/kustomization.yaml")); got != "resources: []\n" {
				t.Fatalf("work tree file = %q", got)
			}

			h, err := r.CommitAndPush(ctx, "main", snapshotBuild(map[string]string{"snapshots/prod/a.yaml": "a: 1\n"}, nil))
			if err != nil {
				t.Fatal(err)
			}
			if got := revParse(t, bare, "main"); got != h {
				t.Fatalf("server main = %s, pushed %s", got, h)
			}
			if got := gitRun(t, bare, "show", "main:snapshots/prod/a.yaml"); got != "a: 1\n" {
				t.Fatalf("server file = %q", got)
			}

			// A person pushes; Fetch brings it into the branch and the work tree.
			ph := p.mustCommit(t, "main", "overlays/dr/patch.yaml", "patch: true\n")
			if err := r.Fetch(ctx); err != nil {
				t.Fatal(err)
			}
			if got, _ := r.Head(ctx, "main"); got != ph {
				t.Fatalf("local main after fetch = %s, want %s", got, ph)
			}
			if got := readFile(t, filepath.Join(cache, "overlays/dr/patch.yaml")); got != "patch: true\n" {
				t.Fatalf("work tree after fetch = %q", got)
			}
			if st := status(t, cache); len(st) != 0 {
				t.Fatalf("git status after fetch: %q", st)
			}
			if err := r.Push(ctx, "main"); err != nil {
				t.Fatalf("push of nothing new: %v", err)
			}

			// Cloning into the same cache reopens and fetches.
			ph = p.mustCommit(t, "main", "overlays/dr/patch.yaml", "patch: 2\n")
			r2, err := Clone(ctx, rm, cache)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := r2.Head(ctx, "main"); got != ph {
				t.Fatalf("reopened main = %s, want %s", got, ph)
			}
			if st := status(t, cache); len(st) != 0 {
				t.Fatalf("git status after reopen: %q", st)
			}
			fsck(t, bare)
		})
	}
}

func TestCloneEmptyRemote(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "empty.git")
	ctx := t.Context()
	cache := t.TempDir()
	r, err := Clone(ctx, transports[0].remote(srv, "empty.git"), cache)
	if err != nil {
		t.Fatal(err)
	}
	// Reopening a clone of a still empty remote fetches nothing.
	if r, err = Clone(ctx, transports[0].remote(srv, "empty.git"), cache); err != nil {
		t.Fatal(err)
	}
	var calls []plumbing.Hash
	h, err := r.CommitAndPush(ctx, "main", snapshotBuild(map[string]string{"snapshots/prod/a.yaml": "a\n"}, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || !calls[0].IsZero() {
		t.Fatalf("build calls = %v, want one on no commit", calls)
	}
	if got := revParse(t, bare, "main"); got != h {
		t.Fatalf("server main = %s, want %s", got, h)
	}
	if st := status(t, cache); len(st) != 0 {
		t.Fatalf("git status: %q", st)
	}
	// Nothing to change: ErrNoChange, nothing pushed.
	_, err = r.CommitAndPush(ctx, "main", snapshotBuild(map[string]string{"snapshots/prod/a.yaml": "a\n"}, nil))
	if !errors.Is(err, ErrNoChange) {
		t.Fatalf("unchanged build: %v, want ErrNoChange", err)
	}
}

func TestCloneOtherURLRefused(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	srv.CreateRepo(t, "a.git")
	srv.CreateRepo(t, "b.git")
	ctx := t.Context()
	cache := t.TempDir()
	if _, err := Clone(ctx, transports[0].remote(srv, "a.git"), cache); err != nil {
		t.Fatal(err)
	}
	_, err := Clone(ctx, transports[0].remote(srv, "b.git"), cache)
	if err == nil || !strings.Contains(err.Error(), "a.git") {
		t.Fatalf("clone of b.git into a clone of a.git: %v", err)
	}
	notRepo := t.TempDir()
	writeFile(t, filepath.Join(notRepo, "x"), "x")
	if _, err := Clone(ctx, transports[0].remote(srv, "a.git"), notRepo); err == nil {
		t.Fatal("clone into a non-empty directory succeeded")
	}
}

func TestFetchLeavesLocalCommitsAndCreatesBranches(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "r.git")
	p := newPerson(t, bare)
	p.mustCommit(t, "main", "README", "hello\n")
	ctx := t.Context()
	r, err := Clone(ctx, transports[2].remote(srv, "r.git"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	local := commit(t, r, "main", put("snapshots/prod/x.yaml", "x\n"))
	remoteTip := p.mustCommit(t, "main", "overlays/dr/a.yaml", "a\n")
	review := p.mustCommit(t, "snapshots/prod", "snapshots/prod/y.yaml", "y\n")
	if err := r.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Head(ctx, "main"); got != local {
		t.Fatalf("main with a local commit moved to %s", got)
	}
	if got, _ := r.Resolve(ctx, "refs/remotes/origin/main"); got != remoteTip {
		t.Fatalf("origin/main = %s, want %s", got, remoteTip)
	}
	if got, _ := r.Head(ctx, "snapshots/prod"); got != review {
		t.Fatalf("new remote branch: local snapshots/prod = %s, want %s", got, review)
	}
	err = r.Push(ctx, "main")
	if !errors.Is(err, ErrPushRejected) || !errors.Is(err, git.ErrNonFastForwardUpdate) {
		t.Fatalf("push of a diverged branch: %v, want ErrPushRejected", err)
	}
}

func TestPushRejected(t *testing.T) {
	t.Parallel()
	for _, tc := range transports[:3] {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := gitserver.Start(t)
			bare := srv.CreateRepo(t, "r.git")
			newPerson(t, bare).mustCommit(t, "main", "README", "hello\n")
			ctx := t.Context()
			rm := tc.remote(srv, "r.git")
			a, err := Clone(ctx, rm, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			b, err := Clone(ctx, rm, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			commit(t, a, "main", put("snapshots/prod/a.yaml", "a\n"))
			commit(t, b, "main", put("snapshots/prod/b.yaml", "b\n"))
			if err := a.Push(ctx, "main"); err != nil {
				t.Fatal(err)
			}
			err = b.Push(ctx, "main")
			if !errors.Is(err, ErrPushRejected) || !errors.Is(err, git.ErrNonFastForwardUpdate) {
				t.Fatalf("push behind the remote: %v, want ErrPushRejected", err)
			}
			for _, want := range []string{"main", scrubURL(rm.URL)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			assertNoSecrets(t, err, srv)
		})
	}
}

func TestCommitAndPushRebuildsOnTopOfPerson(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "r.git")
	p := newPerson(t, bare)
	base := p.mustCommit(t, "main", "overlays/dr/kustomization.yaml", "resources: []\n")
	ctx := t.Context()
	cache := t.TempDir()
	r, err := Clone(ctx, transports[0].remote(srv, "r.git"), cache)
	if err != nil {
		t.Fatal(err)
	}
	var tips []plumbing.Hash
	var personCommit plumbing.Hash
	build := func(ctx context.Context, tip plumbing.Hash) ([]Change, CommitOptions, error) {
		tips = append(tips, tip)
		if len(tips) == 1 {
			// A person pushes after this clone fetched, before it pushes.
			personCommit = p.mustCommit(t, "main", "overlays/dr/patch.yaml", "replicas: 0\n")
		}
		return []Change{put("snapshots/prod/app.yaml", "built on "+tip.String()+"\n")}, CommitOptions{Message: "snapshot"}, nil
	}
	h, err := r.CommitAndPush(ctx, "main", build)
	if err != nil {
		t.Fatal(err)
	}
	if want := []plumbing.Hash{base, personCommit}; !slices.Equal(tips, want) {
		t.Fatalf("build called on %v, want %v", tips, want)
	}
	if got := revParse(t, bare, "main"); got != h {
		t.Fatalf("server main = %s, want %s", got, h)
	}
	if got := revParse(t, bare, "main^"); got != personCommit {
		t.Fatalf("snapshot's parent = %s, want the person's commit %s", got, personCommit)
	}
	if got := gitRun(t, bare, "show", "main:snapshots/prod/app.yaml"); got != "built on "+personCommit.String()+"\n" {
		t.Fatalf("snapshot content = %q", got)
	}
	if got := readFile(t, filepath.Join(cache, "overlays/dr/patch.yaml")); got != "replicas: 0\n" {
		t.Fatalf("work tree misses the person's file: %q", got)
	}
	if st := status(t, cache); len(st) != 0 {
		t.Fatalf("git status after rebuild: %q", st)
	}
	fsck(t, bare)
}

// TestConcurrentWriters runs two writers (two clones, one over HTTP, one
// over SSH) committing snapshot changes and pushing at the same time, for
// many rounds, while a person pushes overlay edits. Nothing may be lost,
// and every snapshot commit must hold exactly what its build produced on
// its parent.
func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	const rounds, personEdits = 10, 5
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "r.git")
	p := newPerson(t, bare)
	p.mustCommit(t, "main", "overlays/dr/kustomization.yaml", "resources: []\n")
	ctx := t.Context()

	type built struct {
		writer  string
		parent  plumbing.Hash
		changes []Change
	}
	var mu sync.Mutex
	commits := map[plumbing.Hash]built{}
	var personCommits []plumbing.Hash

	writer := func(name string, rm Remote) error {
		r, err := Clone(ctx, rm, t.TempDir())
		if err != nil {
			return err
		}
		for round := 1; round <= rounds; round++ {
			var last built
			build := func(ctx context.Context, tip plumbing.Hash) ([]Change, CommitOptions, error) {
				// Derived from the tip: the counter says which round and
				// which parent the snapshot was built on.
				changes := []Change{
					put("snapshots/"+name+"/state.yaml", fmt.Sprintf("round: %d\nparent: %s\n", round, tip)),
					put(fmt.Sprintf("snapshots/%s/round-%02d.yaml", name, round), "x\n"),
				}
				if round > 1 {
					changes = append(changes, del(fmt.Sprintf("snapshots/%s/round-%02d.yaml", name, round-1)))
				}
				last = built{writer: name, parent: tip, changes: changes}
				return changes, CommitOptions{Message: fmt.Sprintf("snapshot %s round %d", name, round)}, nil
			}
			h, err := r.CommitAndPush(ctx, "main", build)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", name, round, err)
			}
			mu.Lock()
			commits[h] = last
			mu.Unlock()
			// A debounce, short: the pushes still overlap most of the time.
			time.Sleep(time.Duration(mathrand.N(30)) * time.Millisecond)
		}
		return nil
	}

	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for _, w := range []struct {
		name string
		rm   Remote
	}{
		{"alpha", transports[0].remote(srv, "r.git")},
		{"beta", transports[2].remote(srv, "r.git")},
	} {
		wg.Go(func() { errs <- writer(w.name, w.rm) })
	}
	wg.Go(func() {
		for i := range personEdits {
			h, err := p.commitAndPush(ctx, "main", "overlays/dr/patch.yaml", fmt.Sprintf("edit: %d\n", i), fmt.Sprintf("person edit %d", i))
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			personCommits = append(personCommits, h)
			mu.Unlock()
		}
		errs <- nil
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	fsck(t, bare)
	history := gitLines(t, bare, "rev-list", "main")
	inHistory := map[string]bool{}
	for _, h := range history {
		inHistory[h] = true
	}
	if len(commits) != 2*rounds {
		t.Fatalf("%d snapshot commits recorded, want %d", len(commits), 2*rounds)
	}
	for _, h := range personCommits {
		if !inHistory[h.String()] {
			t.Errorf("person's commit %s lost", h)
		}
	}
	if len(personCommits) != personEdits {
		t.Errorf("%d person commits, want %d", len(personCommits), personEdits)
	}
	for h, b := range commits {
		if !inHistory[h.String()] {
			t.Errorf("%s's commit %s lost", b.writer, h)
			continue
		}
		if got := revParse(t, bare, h.String()+"^"); got != b.parent {
			t.Errorf("%s: parent %s, built on %s", h, got, b.parent)
		}
		var paths []string
		for _, c := range b.changes {
			paths = append(paths, c.Path)
			out, err := gitOutput(ctx, bare, "show", h.String()+":"+c.Path)
			switch {
			case c.Content == nil && err == nil:
				t.Errorf("%s: %s should be deleted", h, c.Path)
			case c.Content != nil && out != string(c.Content):
				t.Errorf("%s: %s = %q, built %q (%v)", h, c.Path, out, c.Content, err)
			}
		}
		for _, changed := range gitLines(t, bare, "diff-tree", "-r", "--no-commit-id", "--name-only", h.String()) {
			if !slices.Contains(paths, changed) {
				t.Errorf("%s changed %s, which its build did not", h, changed)
			}
		}
	}
	for _, w := range []string{"alpha", "beta"} {
		got := gitRun(t, bare, "show", "main:snapshots/"+w+"/state.yaml")
		if !strings.HasPrefix(got, fmt.Sprintf("round: %d\n", rounds)) {
			t.Errorf("%s final state = %q", w, got)
		}
	}
	t.Logf("%d commits on main", len(history))
}

func TestRemoteErrors(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "r.git")
	newPerson(t, bare).mustCommit(t, "main", "README", "hello\n")

	otherKey := func() []byte {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		b, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(b)
	}()
	otherHostKey := func(hosts ...string) []byte {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		k, _ := ssh.NewPublicKey(pub)
		return []byte(knownhosts.Line(hosts, k) + "\n")
	}
	sshAuth := func(a Auth) Remote { return Remote{URL: srv.SSHURL("r.git"), Auth: a} }
	hostLine := knownhosts.Normalize(srv.SSHAddr())

	tests := []struct {
		name   string
		remote Remote
		want   []string // in the message
		is     error
	}{
		{"http wrong password", Remote{URL: srv.HTTPURL("r.git"), Auth: Auth{Username: srv.Username, Password: "wrong-password-42"}},
			[]string{"authentication"}, transport.ErrAuthenticationRequired},
		{"http wrong token", Remote{URL: srv.HTTPURL("r.git"), Auth: Auth{Token: "wrong-token-42"}},
			[]string{"authentication"}, transport.ErrAuthenticationRequired},
		{"http no credentials", Remote{URL: srv.HTTPURL("r.git")},
			[]string{"authentication"}, transport.ErrAuthenticationRequired},
		{"password in URL", Remote{URL: strings.Replace(srv.HTTPURL("r.git"), "://", "://"+srv.Username+":"+srv.Password+"@", 1)},
			[]string{"credentials in the URL"}, nil},
		{"credentials over plain http", Remote{URL: "http://git.example.com/r.git", Auth: Auth{Username: "u", Password: "secret-42"}},
			[]string{"use https"}, nil},
		{"ssh wrong key", sshAuth(Auth{SSHKey: otherKey, KnownHosts: srv.KnownHosts}),
			[]string{"unable to authenticate"}, nil},
		{"ssh host key changed", sshAuth(Auth{SSHKey: srv.ClientKey, KnownHosts: otherHostKey(hostLine)}),
			[]string{"known_hosts"}, ErrHostKeyMismatch},
		{"ssh host not in known_hosts", sshAuth(Auth{SSHKey: srv.ClientKey, KnownHosts: otherHostKey("[127.0.0.2]:22")}),
			[]string{"known_hosts", srv.SSHAddr()}, ErrUnknownHostKey},
		{"ssh without known_hosts", sshAuth(Auth{SSHKey: srv.ClientKey}),
			[]string{"known_hosts"}, nil},
		{"ssh with a password", sshAuth(Auth{SSHKey: srv.ClientKey, KnownHosts: srv.KnownHosts, Password: "secret-42"}),
			[]string{"ssh uses a key"}, nil},
		{"https with a key", Remote{URL: "https://git.example.com/r.git", Auth: Auth{SSHKey: srv.ClientKey}},
			[]string{"ssh key"}, nil},
		{"missing repository", Remote{URL: srv.HTTPURL("missing.git"), Auth: Auth{Token: srv.Token}},
			[]string{"missing.git"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Clone(t.Context(), tt.remote, filepath.Join(t.TempDir(), "cache"))
			if err == nil {
				t.Fatal("clone succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			assertNoSecrets(t, err, srv, tt.remote.Auth.Password, tt.remote.Auth.Token, string(tt.remote.Auth.SSHKey))
		})
	}
}

// assertNoSecrets fails when an error's text holds a credential.
func assertNoSecrets(t *testing.T, err error, srv *gitserver.Server, more ...string) {
	t.Helper()
	msg := fmt.Sprintf("%v %+v %s", err, err, err)
	for _, s := range append([]string{srv.Password, srv.Token, string(srv.ClientKey)}, more...) {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("error leaks a credential: %q", msg)
		}
	}
	for _, s := range []string{"-----BEGIN", "PRIVATE KEY"} {
		if strings.Contains(msg, s) {
			t.Errorf("error leaks a key: %q", msg)
		}
	}
}

func TestScrubURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://user:pass@github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"https://token@github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"http://u:p@127.0.0.1:8080/r.git?x=y", "http://127.0.0.1:8080/r.git?x=y"},
		{"https://github.com/org/repo.git", "https://github.com/org/repo.git"},
		{"https://github.com/org/a@b.git", "https://github.com/org/a@b.git"},
		{"ssh://git@host:2222/r.git", "ssh://git@host:2222/r.git"},
		{"ssh://git:secret@host/r.git", "ssh://git@host/r.git"},
		{"git@github.com:org/repo.git", "git@github.com:org/repo.git"},
		{"git:secret@github.com:org/repo.git", "git@github.com:org/repo.git"},
		{"/srv/git/r.git", "/srv/git/r.git"},
	}
	for _, tt := range tests {
		if got := scrubURL(tt.in); got != tt.want {
			t.Errorf("scrubURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := (Remote{URL: tt.in}).String(); got != tt.want {
			t.Errorf("Remote{%q}.String() = %q", tt.in, got)
		}
	}
}

func TestRemoteFormatting(t *testing.T) {
	rm := Remote{URL: "https://me:hunter2pw@host/r.git", Auth: Auth{Username: "me", Password: "hunter2pw", Token: "tok-secret", SSHKeyPassphrase: "phrase-secret", SSHKey: []byte("-----BEGIN KEY")}}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{rm, &rm, rm.Auth, &rm.Auth} {
			out := fmt.Sprintf(f, v)
			for _, s := range []string{"hunter2pw", "tok-secret", "phrase-secret", "BEGIN"} {
				if strings.Contains(out, s) {
					t.Errorf("Sprintf(%s) of %T = %q: leaks %q", f, v, out, s)
				}
			}
		}
	}
}

func TestAuthFromEnvAndDir(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "id"), "KEY")
	writeFile(t, filepath.Join(dir, "kh"), "KNOWN")
	t.Setenv(EnvUsername, "u")
	t.Setenv(EnvPassword, "p")
	t.Setenv(EnvToken, "")
	t.Setenv(EnvSSHKey, filepath.Join(dir, "id"))
	t.Setenv(EnvSSHKeyPassphrase, "pp")
	t.Setenv(EnvKnownHosts, filepath.Join(dir, "kh"))
	got, err := AuthFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	want := Auth{Username: "u", Password: "p", SSHKey: []byte("KEY"), SSHKeyPassphrase: "pp", KnownHosts: []byte("KNOWN")}
	if fmt.Sprint(got.Username, got.Password, got.Token, string(got.SSHKey), got.SSHKeyPassphrase, string(got.KnownHosts)) !=
		fmt.Sprint(want.Username, want.Password, want.Token, string(want.SSHKey), want.SSHKeyPassphrase, string(want.KnownHosts)) {
		t.Errorf("AuthFromEnv = %+v", []any{got.Username, got.Password, got.Token, string(got.SSHKey), got.SSHKeyPassphrase, string(got.KnownHosts)})
	}
	t.Setenv(EnvKnownHosts, filepath.Join(dir, "missing"))
	if _, err := AuthFromEnv(); err == nil || !strings.Contains(err.Error(), EnvKnownHosts) {
		t.Errorf("missing known_hosts file: %v", err)
	}

	secret := t.TempDir()
	writeFile(t, filepath.Join(secret, KeyUsername), "bot\n")
	writeFile(t, filepath.Join(secret, KeyPassword), "pw\n")
	writeFile(t, filepath.Join(secret, KeyKnownHosts), "line\n")
	a, err := AuthFromDir(secret)
	if err != nil {
		t.Fatal(err)
	}
	if a.Username != "bot" || a.Password != "pw" || string(a.KnownHosts) != "line\n" || a.Token != "" || a.SSHKey != nil {
		t.Errorf("AuthFromDir = %q %q %q %q %q", a.Username, a.Password, a.KnownHosts, a.Token, a.SSHKey)
	}
}

// The server's SSH host key is pinned: the git command line agrees that
// the known_hosts gitserver gives is what OpenSSH reads.
func TestKnownHostsFormat(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("no ssh-keygen")
	}
	srv := gitserver.Start(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	writeFile(t, kh, string(srv.KnownHosts))
	out, err := exec.Command("ssh-keygen", "-F", knownhosts.Normalize(srv.SSHAddr()), "-f", kh).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ssh-ed25519") {
		t.Fatalf("ssh-keygen -F: %v: %s", err, out)
	}
}

// Fetch moves the checked-out branch by patching the work tree and the
// index with the paths that changed, including files that become
// directories and the reverse; git must then see a clean work tree.
func TestFetchUpdatesWorkTree(t *testing.T) {
	t.Parallel()
	srv := gitserver.Start(t)
	bare := srv.CreateRepo(t, "r.git")
	p := newPerson(t, bare)
	p.mustCommit(t, "main", "a/b/c.yaml", "c\n")
	p.mustCommit(t, "main", "d", "d is a file\n")
	p.mustCommit(t, "main", "keep/x", "x\n")
	p.mustCommit(t, "main", "tool.sh", "#!/bin/sh\n")
	ctx := t.Context()
	cache := t.TempDir()
	r, err := Clone(ctx, transports[0].remote(srv, "r.git"), cache)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(cache, "untracked.txt"), "mine\n")

	// The person turns a/b into a file, d into a directory, makes
	// tool.sh executable and adds a file.
	gitRun(t, p.dir, "rm", "-r", "--quiet", "a", "d")
	writeFile(t, filepath.Join(p.dir, "a/b"), "b is a file\n")
	writeFile(t, filepath.Join(p.dir, "d/e.yaml"), "e\n")
	writeFile(t, filepath.Join(p.dir, "new/file.yaml"), "new\n")
	gitRun(t, p.dir, "add", "-A")
	gitRun(t, p.dir, "update-index", "--chmod=+x", "tool.sh")
	gitRun(t, p.dir, "commit", "--quiet", "-m", "reshape")
	gitRun(t, p.dir, "push", "--quiet", "origin", "main")

	if err := r.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := lsTree(t, cache, "HEAD"), lsTree(t, bare, "main"); !slices.Equal(got, want) {
		t.Fatalf("local HEAD files %q, server %q", got, want)
	}
	if st := status(t, cache); !slices.Equal(st, []string{"?? untracked.txt"}) {
		t.Fatalf("git status after fetch: %q", st)
	}
	for path, want := range map[string]string{"a/b": "b is a file\n", "d/e.yaml": "e\n", "new/file.yaml": "new\n", "keep/x": "x\n"} {
		if got := readFile(t, filepath.Join(cache, filepath.FromSlash(path))); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(cache, "tool.sh")); err != nil || fi.Mode().Perm()&0o100 == 0 {
		t.Errorf("tool.sh not executable: %v %v", fi.Mode(), err)
	}
}
