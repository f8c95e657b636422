package gitstore

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
)

// The real git command line is the independent reader of what gitstore
// writes: if git accepts and shows it, other git tools will too.

// gitEnv isolates git from the user's and the machine's configuration.
func gitEnv() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=person@example.com",
		"GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=person@example.com",
		"LC_ALL=C",
	)
}

// gitRun runs git in dir and returns its standard output; failure ends the test.
func gitRun(t testing.TB, dir string, args ...string) string {
	t.Helper()
	out, err := gitOutput(context.Background(), dir, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &gitError{err: err, stderr: stderr.String()}
	}
	return stdout.String(), nil
}

type gitError struct {
	err    error
	stderr string
}

func (e *gitError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// gitLines returns the non-empty output lines of a git command.
func gitLines(t testing.TB, dir string, args ...string) []string {
	t.Helper()
	var lines []string
	for l := range strings.SplitSeq(gitRun(t, dir, args...), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// lsTree lists the files of a revision as git sees them.
func lsTree(t testing.TB, dir, rev string) []string {
	t.Helper()
	files := gitLines(t, dir, "ls-tree", "-r", "--name-only", rev)
	slices.Sort(files)
	return files
}

func fsck(t testing.TB, dir string) {
	t.Helper()
	out, err := gitOutput(context.Background(), dir, "fsck", "--strict", "--no-progress")
	if err != nil {
		t.Fatalf("git fsck --strict: %v\n%s", err, out)
	}
}

func status(t testing.TB, dir string) []string {
	t.Helper()
	return gitLines(t, dir, "status", "--porcelain", "--untracked-files=all")
}

func revParse(t testing.TB, dir, rev string) plumbing.Hash {
	t.Helper()
	return plumbing.NewHash(strings.TrimSpace(gitRun(t, dir, "rev-parse", "--verify", "-q", rev)))
}

// initRepo makes a repository with a work tree for a test.
func initRepo(t testing.TB) (*Repository, string) {
	t.Helper()
	dir := t.TempDir()
	r, err := Init(t.Context(), dir)
	if err != nil {
		t.Fatal(err)
	}
	return r, dir
}

// commit commits and fails the test on error.
func commit(t testing.TB, r *Repository, branch string, changes ...Change) plumbing.Hash {
	t.Helper()
	h, err := r.Commit(t.Context(), changes, CommitOptions{Branch: branch, Message: "test commit"})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func put(path, content string) Change { return Change{Path: path, Content: []byte(content)} }
func del(path string) Change          { return Change{Path: path} }

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// gitStdin runs git in dir with input on its standard input.
func gitStdin(t testing.TB, dir, input string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(context.Background(), "git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv()
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}
