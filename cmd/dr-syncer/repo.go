package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/policies"
)

// repoFlags locate the DR repository: a directory, or the URL of a remote
// that is cloned into a cache directory, fetched before the command reads
// anything, and pushed after every commit the command makes.
type repoFlags struct {
	location, cacheDir, authDir string
}

func (f *repoFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.location, "repo", "", "the repository: a directory, or a URL (https://, ssh://, git@host:path) cloned into --cache-dir (required)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "with a --repo URL: the directory that holds the clones, one per URL (default: <user cache dir>/dr-syncer/repos)")
	fl.StringVar(&f.authDir, "git-auth-dir", "", "with a --repo URL: a directory of credential files, as a mounted Secret has them (username, password or token; identity, identity-passphrase, known_hosts) (default: the DR_SYNCER_GIT_* environment)")
	_ = cmd.MarkFlagRequired("repo")
}

// remote reports whether the repository is a URL.
func (f repoFlags) remote() bool { return gitstore.IsURL(f.location) }

// openRepo opens the directory, or clones (or, when the cache holds the
// clone already, fetches) the URL. Credentials come from --git-auth-dir,
// else from the DR_SYNCER_GIT_* environment; gitstore keeps them out of
// every message.
func openRepo(ctx context.Context, f repoFlags) (*gitstore.Repository, error) {
	if !f.remote() {
		if f.cacheDir != "" || f.authDir != "" {
			return nil, usageError(fmt.Errorf("--cache-dir and --git-auth-dir go with a --repo URL; %q is a directory", f.location))
		}
		return gitstore.Open(ctx, f.location)
	}
	var auth gitstore.Auth
	var err error
	if f.authDir != "" {
		auth, err = gitstore.AuthFromDir(f.authDir)
	} else {
		auth, err = gitstore.AuthFromEnv()
	}
	if err != nil {
		return nil, err
	}
	rm := gitstore.Remote{URL: f.location, Auth: auth}
	root := f.cacheDir
	if root == "" {
		user, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("remote %s: no cache directory (pass --cache-dir): %w", rm, err)
		}
		root = filepath.Join(user, "dr-syncer", "repos")
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("remote %s: cache: %w", rm, err)
	}
	dir := gitstore.CacheDir(root, rm)
	// Two commands on one machine share the clone: one clones or fetches
	// at a time (the commits that follow take gitstore's own locks).
	unlock, err := lockFile(ctx, dir+".lock", func() {
		fmt.Fprintf(os.Stderr, "dr-syncer: waiting for another dr-syncer using the clone %s\n", dir)
	})
	if err != nil {
		return nil, fmt.Errorf("remote %s: cache: %w", rm, err)
	}
	defer unlock()
	return gitstore.Clone(ctx, rm, dir)
}

// lockFile takes an exclusive flock on path (created if missing), waiting
// until it is free or ctx is done; waiting is called once if it has to
// wait. The lock goes with the process if it dies.
func lockFile(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	for told := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !told {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// openMapping decodes dr-syncer.yaml as committed at ref: the committed
// mapping is the one that counts (the controller follows commits), so when
// the work tree of a local repository holds another, it says so on warn.
func openMapping(ctx context.Context, repo *gitstore.Repository, f repoFlags, ref string, warn io.Writer) (*policies.SyncConfig, error) {
	data, err := repo.ReadFile(ctx, ref, policies.FileName)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %s at %s: %w (run `dr-syncer init` first)", repoName(repo, f), policies.FileName, ref, err)
	}
	cfg, err := policies.Decode(policies.FileName, data)
	if err != nil {
		return nil, err
	}
	if f.remote() {
		return cfg, nil // the clone's work tree is dr-syncer's own
	}
	if local, err := os.ReadFile(filepath.Join(f.location, policies.FileName)); err == nil && !bytes.Equal(local, data) {
		fmt.Fprintf(warn, "note: %s has uncommitted changes; using the version committed on %s\n", policies.FileName, ref)
	}
	return cfg, nil
}

// openRepoMapping is openRepo, then openMapping at ref.
func openRepoMapping(ctx context.Context, f repoFlags, ref string, warn io.Writer) (*gitstore.Repository, *policies.SyncConfig, error) {
	repo, err := openRepo(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := openMapping(ctx, repo, f, ref, warn)
	if err != nil {
		return nil, nil, err
	}
	return repo, cfg, nil
}

// repoName names the repository in messages: the URL without user
// information, or the directory.
func repoName(repo *gitstore.Repository, f repoFlags) string {
	if u := repo.Remote(); u != "" {
		return u
	}
	return f.location
}
