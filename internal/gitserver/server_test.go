package gitserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The server is checked with the git command line and OpenSSH, clients
// independent of the go-git client gitstore uses.

func TestHTTP(t *testing.T) {
	s := Start(t)
	s.CreateRepo(t, "r.git")
	work := t.TempDir()
	Git(t, work, "init", "--quiet", "--initial-branch=main")
	os.WriteFile(filepath.Join(work, "f"), []byte("x\n"), 0o644)
	Git(t, work, "add", "f")
	Git(t, work, "commit", "--quiet", "-m", "first")
	Git(t, work, "-c", "http.extraHeader="+s.BasicAuthHeader(), "push", "--quiet", s.HTTPURL("r.git"), "main")
	if got := strings.TrimSpace(Git(t, s.RepoPath("r.git"), "log", "--format=%s", "main")); got != "first" {
		t.Fatalf("server log = %q", got)
	}

	// Without credentials, and with a wrong token: refused.
	for _, header := range []string{"", "Authorization: Bearer wrong"} {
		cmd := exec.Command("git", "-c", "http.extraHeader="+header, "ls-remote", s.HTTPURL("r.git"))
		cmd.Env = append(Env(), "GIT_TERMINAL_PROMPT=0")
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("ls-remote with header %q succeeded: %s", header, out)
		}
	}
	out := Git(t, "", "-c", "http.extraHeader=Authorization: Bearer "+s.Token, "ls-remote", s.HTTPURL("r.git"))
	if !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("ls-remote with token: %q", out)
	}
}

func TestSSH(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skip("no ssh client")
	}
	s := Start(t)
	s.CreateRepo(t, "team/r.git")
	dir := t.TempDir()
	key := filepath.Join(dir, "id")
	known := filepath.Join(dir, "known_hosts")
	os.WriteFile(key, s.ClientKey, 0o600)
	os.WriteFile(known, s.KnownHosts, 0o600)
	sshCmd := "ssh -F /dev/null -i " + key + " -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=" + known

	run := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(Env(), "GIT_SSH_COMMAND="+sshCmd)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	work := filepath.Join(dir, "work")
	Git(t, "", "init", "--quiet", "--initial-branch=main", work)
	os.WriteFile(filepath.Join(work, "f"), []byte("x\n"), 0o644)
	Git(t, work, "add", "f")
	Git(t, work, "commit", "--quiet", "-m", "over ssh")
	if out, err := run(work, "push", "--quiet", s.SSHURL("team/r.git"), "main"); err != nil {
		t.Fatalf("push: %v: %s", err, out)
	}
	if out, err := run(dir, "clone", "--quiet", s.SSHURL("team/r.git"), "clone"); err != nil {
		t.Fatalf("clone: %v: %s", err, out)
	}
	if got := strings.TrimSpace(Git(t, filepath.Join(dir, "clone"), "log", "--format=%s")); got != "over ssh" {
		t.Fatalf("clone log = %q", got)
	}
	// Paths outside the root, missing repositories: refused.
	for _, repo := range []string{"../r.git", "missing.git", "team/../team/r.git"} {
		if out, err := run(dir, "ls-remote", s.SSHURL(repo)); err == nil {
			t.Errorf("ls-remote %s succeeded: %s", repo, out)
		}
	}
}

func TestParseCommand(t *testing.T) {
	s := &Server{Root: t.TempDir()}
	Git(t, "", "init", "--quiet", "--bare", filepath.Join(s.Root, "ok.git"))
	tests := []struct {
		cmd     string
		service string
	}{
		{"git-upload-pack '/ok.git'", "upload-pack"},
		{"git-receive-pack 'ok.git'", "receive-pack"},
		{"git-upload-archive '/ok.git'", ""},
		{"sh -c 'id'", ""},
		{"git-upload-pack /ok.git", ""},
		{"git-upload-pack '/../ok.git'", ""},
		{"git-upload-pack '/ok.git'; id", ""},
		{"git-upload-pack '/ok.git' '/ok.git'", ""},
		{"git-upload-pack '/nope.git'", ""},
		{"git-upload-pack", ""},
	}
	for _, tt := range tests {
		service, _, err := s.parseCommand(tt.cmd)
		if (err == nil) != (tt.service != "") || service != tt.service {
			t.Errorf("parseCommand(%q) = %q, %v; want %q", tt.cmd, service, err, tt.service)
		}
	}
}
