package gitstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// Remote is a DR repository on a Git server.
//
// URL is https://host/path (or http:// to a loopback host, for tests and
// port-forwards), ssh://[user@]host[:port]/path, the scp-like
// [user@]host:path, or a local path. Credentials never go in the URL: a
// URL with a password is refused, and the user part of an http(s) URL is
// taken as Auth.Username and dropped from the URL. String gives the URL
// without any user information; every error names the remote that way.
type Remote struct {
	URL  string
	Auth Auth
	// CABundle holds PEM certificates trusted for https besides the
	// system's, for servers with a private certificate authority.
	CABundle []byte
}

// String returns the URL without user information.
func (r Remote) String() string { return scrubURL(r.URL) }

// GoString keeps %#v from printing secrets.
func (r Remote) GoString() string {
	return "gitstore.Remote{" + r.String() + ", " + r.Auth.String() + "}"
}

// ErrPushRejected is returned (wrapped) by Push when the remote branch has
// commits the local branch does not have: fetch, and rebuild or merge. The
// same error also satisfies errors.Is(err, git.ErrNonFastForwardUpdate).
var ErrPushRejected = errors.New("push rejected: the remote branch moved")

// ErrNoRemote is returned by Fetch and Push on a repository not made by
// Clone.
var ErrNoRemote = errors.New("repository has no remote: open it with Clone")

const remoteName = "origin"

// remote is a validated Remote with go-git's auth method.
type remote struct {
	url      string // what go-git uses and .git/config records: no credentials
	display  string // for messages
	auth     transport.AuthMethod
	caBundle []byte
	redact   []string // values that must never appear in an error
}

func newRemote(rm Remote) (*remote, error) {
	display, userinfo := splitUserinfo(rm.URL)
	c := &remote{display: display, caBundle: rm.CABundle, redact: rm.Auth.secrets()}
	if userinfo != "" {
		c.redact = append(c.redact, userinfo)
	}
	if rm.URL == "" {
		return nil, errors.New("gitstore: remote: empty URL")
	}
	ep, err := transport.NewEndpoint(rm.URL)
	if err != nil {
		return nil, c.wrap(errors.New("not a git URL"), "gitstore: remote %s", display)
	}
	if ep.Password != "" {
		return nil, c.wrap(errors.New("credentials in the URL: give them in Auth (environment or files) instead"), "gitstore: remote %s", display)
	}
	auth := rm.Auth
	c.url = rm.URL
	if ep.Protocol == "http" || ep.Protocol == "https" {
		if ep.User != "" && auth.Username == "" {
			auth.Username = ep.User
		}
		ep.User = ""
		c.url = display
	}
	if c.auth, err = auth.transportAuth(ep); err != nil {
		return nil, c.wrap(err, "gitstore: remote %s", display)
	}
	if ep.Protocol == "file" && len(rm.CABundle) > 0 {
		return nil, c.wrap(errors.New("CA bundle given for a local remote"), "gitstore: remote %s", display)
	}
	return c, nil
}

// wrap formats an error about the remote, with %w semantics, and replaces
// any secret in its text (go-git's own messages may quote URLs).
func (c *remote) wrap(err error, format string, args ...any) error {
	e := fmt.Errorf(format+": %w", append(args, err)...)
	// A server's reply quoted in go-git's message may span lines (an HTTP
	// error body): an error is one line.
	msg := strings.Join(strings.Fields(e.Error()), " ")
	for _, s := range c.redact {
		if len(s) >= 4 { // shorter values would mangle the message more than they hide
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &redactedError{msg: msg, err: e}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// splitUserinfo returns url without user information (for an ssh URL, only
// the password part goes: the user is not a secret) and what it removed.
func splitUserinfo(raw string) (scrubbed, removed string) {
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme := strings.ToLower(raw[:i])
		rest := raw[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		at := strings.LastIndexByte(rest[:end], '@')
		if at < 0 {
			return raw, ""
		}
		info := rest[:at]
		if scheme == "http" || scheme == "https" {
			return raw[:i+3] + rest[at+1:], info
		}
		user, _, hasPass := strings.Cut(info, ":")
		if !hasPass {
			return raw, ""
		}
		return raw[:i+3] + user + rest[at:], info
	}
	// scp-like [user[:password]@]host:path; a path has no "@" before its ":".
	at := strings.IndexByte(raw, '@')
	colon := strings.IndexByte(raw, ':')
	if at < 0 || colon < 0 || colon > at {
		return raw, ""
	}
	return raw[:colon] + raw[at:], raw[:at]
}

// scrubURL returns a URL without its secrets, for messages.
func scrubURL(raw string) string {
	s, _ := splitUserinfo(raw)
	return s
}

// Clone makes cacheDir a clone of the remote with a work tree (the remote's
// default branch checked out), or, when cacheDir already holds a clone of
// the same URL, opens it and fetches. An empty remote repository gives a
// repository with no commit whose HEAD is "main"; the first push creates the
// branch. The returned repository remembers the remote and its credentials
// (in memory only) for Fetch, Push and CommitAndPush.
func Clone(ctx context.Context, rm Remote, cacheDir string) (*Repository, error) {
	c, err := newRemote(rm)
	if err != nil {
		return nil, err
	}
	fail := func(err error) error { return c.wrap(err, "gitstore: clone %s into %s", c.display, cacheDir) }
	if _, err := git.PlainOpen(cacheDir); err == nil {
		r, err := open(cacheDir)
		if err != nil {
			return nil, fail(err)
		}
		if err := r.checkOrigin(c); err != nil {
			return nil, fail(err)
		}
		r.remote = c
		if err := r.Fetch(ctx); err != nil {
			return nil, err
		}
		return r, nil
	}
	if entries, err := os.ReadDir(cacheDir); err == nil && len(entries) > 0 {
		return nil, fail(errors.New("directory is not empty and holds no repository"))
	}
	_, err = git.PlainCloneContext(ctx, cacheDir, false, &git.CloneOptions{
		URL:        c.url,
		Auth:       c.auth,
		RemoteName: remoteName,
		CABundle:   c.caBundle,
		Tags:       git.AllTags,
	})
	switch {
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		if err := initEmptyClone(ctx, cacheDir, c); err != nil {
			return nil, fail(err)
		}
	case err != nil:
		return nil, fail(err)
	}
	r, err := open(cacheDir)
	if err != nil {
		return nil, fail(err)
	}
	r.remote = c
	// A clone has a local branch for the default branch only: make the
	// others too, as Fetch does, so that every branch of the remote reads
	// the same in a new clone and in a reopened one.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fastForward(ctx, ""); err != nil {
		return nil, fail(err)
	}
	return r, nil
}

// initEmptyClone makes what cloning an empty repository makes: a new
// repository whose origin is the remote.
func initEmptyClone(ctx context.Context, dir string, c *remote) error {
	r, err := Init(ctx, dir)
	if err != nil {
		return err
	}
	_, err = r.git.CreateRemote(&config.RemoteConfig{
		Name:  remoteName,
		URLs:  []string{c.url},
		Fetch: []config.RefSpec{fetchSpec},
	})
	return err
}

var fetchSpec = config.RefSpec("+refs/heads/*:refs/remotes/" + remoteName + "/*")

// checkOrigin makes sure an existing cache is a clone of the same URL.
func (r *Repository) checkOrigin(c *remote) error {
	cfg, err := r.git.Config()
	if err != nil {
		return err
	}
	rc, ok := cfg.Remotes[remoteName]
	if !ok || len(rc.URLs) == 0 {
		return fmt.Errorf("existing repository has no %s remote: remove the directory to clone again", remoteName)
	}
	if rc.URLs[0] != c.url {
		return fmt.Errorf("existing repository is a clone of %s: remove the directory to clone again", scrubURL(rc.URLs[0]))
	}
	return nil
}

// Fetch updates the remote-tracking branches (refs/remotes/origin/*, pruning
// those deleted on the remote) and then the local branches: a missing one
// is created at its remote-tracking branch, one that has no commit of its
// own is fast-forwarded to it, and one with local commits is left alone
// (see Push and CommitAndPush). When the branch checked out in the work tree
// moves, the files and index entries of the paths that changed are updated,
// as Commit does. The repository is locked for the whole fetch.
func (r *Repository) Fetch(ctx context.Context) error {
	c := r.remote
	if c == nil {
		return fmt.Errorf("gitstore: fetch: %w", ErrNoRemote)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.fetch(ctx); err != nil {
		return c.wrap(err, "gitstore: fetch %s", c.display)
	}
	if err := r.fastForward(ctx, ""); err != nil {
		return c.wrap(err, "gitstore: fetch %s", c.display)
	}
	return nil
}

// fetch updates the remote-tracking branches. r.mu is held.
func (r *Repository) fetch(ctx context.Context) error {
	rem, err := r.git.Remote(remoteName)
	if err != nil {
		return err
	}
	err = rem.FetchContext(ctx, &git.FetchOptions{
		RemoteName: remoteName,
		RefSpecs:   []config.RefSpec{fetchSpec},
		Auth:       r.remote.auth,
		CABundle:   r.remote.caBundle,
		Tags:       git.AllTags,
		Prune:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return err
	}
	return r.refresh()
}

// fastForward creates or fast-forwards every local branch that has a
// remote-tracking branch, except skip. r.mu is held.
func (r *Repository) fastForward(ctx context.Context, skip plumbing.ReferenceName) error {
	refs, err := r.st.IterReferences()
	if err != nil {
		return err
	}
	prefix := "refs/remotes/" + remoteName + "/"
	var tracking []*plumbing.Reference
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		if strings.HasPrefix(string(ref.Name()), prefix) && ref.Type() == plumbing.HashReference {
			tracking = append(tracking, ref)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, t := range tracking {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := plumbing.NewBranchReferenceName(strings.TrimPrefix(string(t.Name()), prefix))
		if name == skip || name.Validate() != nil {
			continue
		}
		local, err := r.tip(name)
		if err != nil {
			return err
		}
		if local != nil {
			if local.Hash() == t.Hash() {
				continue
			}
			ff, err := r.isAncestor(ctx, local.Hash(), t.Hash())
			if err != nil {
				return err
			}
			if !ff {
				continue // local commits: Push or CommitAndPush deal with them
			}
		}
		if err := r.moveAndCheckout(ctx, name, local, t.Hash()); err != nil {
			return err
		}
	}
	return nil
}

// isAncestor reports whether commit a is reachable from commit d. It walks
// the history of d until it meets a, so its cost grows with the history
// between them, and with all of d's history when a is not an ancestor.
func (r *Repository) isAncestor(ctx context.Context, a, d plumbing.Hash) (bool, error) {
	seen := map[plumbing.Hash]bool{d: true}
	queue := []plumbing.Hash{d}
	for len(queue) > 0 {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		h := queue[0]
		queue = queue[1:]
		if h == a {
			return true, nil
		}
		c, err := r.commitObject(h)
		if err != nil {
			return false, err
		}
		for _, p := range c.ParentHashes {
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}
