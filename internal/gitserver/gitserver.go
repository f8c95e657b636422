// Package gitserver starts a real Git server on loopback for tests: the
// smart HTTP protocol served by `git http-backend` (through net/http/cgi)
// behind basic or bearer-token authentication, and SSH served by a
// golang.org/x/crypto/ssh server that accepts one client key and runs
// `git upload-pack` / `git receive-pack` on the repositories under its root.
//
// It is a test helper: Start registers everything it starts with
// t.Cleanup. Repositories are plain bare repositories under Root, so a test
// can inspect them with the git command line.
package gitserver

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Server is a running Git server. Its credentials are fixed at Start and
// random per server.
type Server struct {
	// Root holds the bare repositories, as <Root>/<name>.
	Root string

	// Username and Password are accepted by the HTTP server as basic auth,
	// Token as "Authorization: Bearer <Token>".
	Username, Password, Token string

	// ClientKey is the PEM (OpenSSH format) private key the SSH server
	// accepts; ClientPublicKey its public half in authorized_keys format.
	ClientKey       []byte
	ClientPublicKey []byte

	// KnownHosts is a known_hosts line pinning the SSH server's host key
	// for its loopback address.
	KnownHosts []byte

	httpAddr, sshAddr string
}

// Start starts both servers on loopback ports; they stop when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		Root:     t.TempDir(),
		Username: "dr-syncer",
		Password: "pw-" + randomHex(t, 12),
		Token:    "tok-" + randomHex(t, 16),
	}
	s.startHTTP(t)
	s.startSSH(t)
	return s
}

// HTTPURL returns the smart-HTTP URL of a repository, without credentials.
func (s *Server) HTTPURL(repo string) string {
	return "http://" + s.httpAddr + "/" + repo
}

// SSHURL returns the ssh:// URL of a repository, as user "git".
func (s *Server) SSHURL(repo string) string {
	return "ssh://git@" + s.sshAddr + "/" + repo
}

// SCPURL returns the scp-like form git@host:port:repo. Only go-git reads the
// number as a port (the git command line would take it as part of the
// path): the server cannot listen on port 22 in a test.
func (s *Server) SCPURL(repo string) string {
	host, port, _ := net.SplitHostPort(s.sshAddr)
	return "git@" + host + ":" + port + ":" + repo
}

// SSHAddr returns host:port of the SSH server.
func (s *Server) SSHAddr() string { return s.sshAddr }

// RepoPath returns the directory of a repository on disk.
func (s *Server) RepoPath(repo string) string {
	return filepath.Join(s.Root, filepath.FromSlash(repo))
}

// CreateRepo creates an empty bare repository whose HEAD is
// refs/heads/main and returns its directory.
func (s *Server) CreateRepo(t testing.TB, repo string) string {
	t.Helper()
	if _, err := cleanRepoPath(repo); err != nil {
		t.Fatalf("gitserver: repository %q: %v", repo, err)
	}
	dir := s.RepoPath(repo)
	Git(t, "", "init", "--quiet", "--bare", "--initial-branch=main", dir)
	return dir
}

// Git runs the git command line in dir ("" for the current directory) with
// a configuration isolated from the machine's, and returns its standard
// output; a failure ends the test.
func Git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.CommandContext(context.Background(), "git", args...)
	cmd.Env = Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// Env is the environment the server's git processes and Git run with.
func Env() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Person", "GIT_AUTHOR_EMAIL=person@example.com",
		"GIT_COMMITTER_NAME=Person", "GIT_COMMITTER_EMAIL=person@example.com",
		"LC_ALL=C",
	)
}

func (s *Server) startHTTP(t testing.TB) {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		// receive-pack's messages (a lost ref-lock race) would clutter
		// the test output; the client sees the outcome.
		Stderr: io.Discard,
		Root:   "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			// Pushing over HTTP needs http.receivepack (or REMOTE_USER,
			// which net/http/cgi does not set).
			"GIT_CONFIG_COUNT=1",
			"GIT_CONFIG_KEY_0=http.receivepack",
			"GIT_CONFIG_VALUE_0=true",
		},
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !s.authorized(req) {
			w.Header().Set("WWW-Authenticate", `Basic realm="gitserver"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, req)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	s.httpAddr = ln.Addr().String()
}

func (s *Server) authorized(req *http.Request) bool {
	if user, pass, ok := req.BasicAuth(); ok {
		return equal(user, s.Username) && equal(pass, s.Password)
	}
	if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
		return equal(tok, s.Token)
	}
	return false
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func (s *Server) startSSH(t testing.TB) {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "gitserver client")
	if err != nil {
		t.Fatal(err)
	}
	s.ClientKey = pem.EncodeToMemory(block)
	accepted, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	s.ClientPublicKey = ssh.MarshalAuthorizedKey(accepted)

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), accepted.Marshal()) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("unknown public key")
		},
	}
	cfg.AddHostKey(hostSigner)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("gitserver: %v", err)
	}
	s.sshAddr = ln.Addr().String()
	s.KnownHosts = []byte(knownhosts.Line([]string{knownhosts.Normalize(s.sshAddr)}, hostSigner.PublicKey()) + "\n")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serveSSH(ctx, c, cfg)
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		<-done
	})
}

func (s *Server) serveSSH(ctx context.Context, c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.serveSession(ctx, ch, chReqs)
	}
}

// serveSession runs one exec request: git-upload-pack or git-receive-pack
// on a repository under Root, and nothing else (no shell, no other command).
func (s *Server) serveSession(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			// env, pty-req, shell, subsystem: refused.
			req.Reply(false, nil)
			continue
		}
		var payload struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
			req.Reply(false, nil)
			return
		}
		service, dir, err := s.parseCommand(payload.Command)
		if err != nil {
			req.Reply(true, nil)
			fmt.Fprintf(ch.Stderr(), "gitserver: %v\n", err)
			exitStatus(ch, 128)
			return
		}
		req.Reply(true, nil)
		exitStatus(ch, s.runService(ctx, ch, service, dir))
		return
	}
}

func (s *Server) runService(ctx context.Context, ch ssh.Channel, service, dir string) uint32 {
	cmd := exec.CommandContext(ctx, "git", service, dir)
	cmd.Env = Env()
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	// Feed the channel through a pipe: handing the channel to the command as
	// its stdin keeps the command waiting for a channel EOF that only comes
	// after it has exited.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 128
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "gitserver: %v\n", err)
		return 128
	}
	go func() {
		io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return uint32(ee.ExitCode())
		}
		return 128
	}
	return 0
}

func exitStatus(ch ssh.Channel, code uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{code}))
}

// parseCommand accepts exactly `git-upload-pack '<repo>'` or
// `git-receive-pack '<repo>'` (a leading slash is allowed, as clients send
// it) naming an existing bare repository under Root, and returns the git
// subcommand and the repository's directory.
func (s *Server) parseCommand(command string) (service, dir string, err error) {
	name, arg, ok := strings.Cut(command, " ")
	if !ok {
		return "", "", fmt.Errorf("command %q: want git-upload-pack or git-receive-pack with a repository", command)
	}
	switch name {
	case "git-upload-pack":
		service = "upload-pack"
	case "git-receive-pack":
		service = "receive-pack"
	default:
		return "", "", fmt.Errorf("command %q not allowed", name)
	}
	if len(arg) < 2 || arg[0] != '\'' || arg[len(arg)-1] != '\'' {
		return "", "", fmt.Errorf("repository %q: want a single-quoted path", arg)
	}
	rel, err := cleanRepoPath(strings.TrimPrefix(arg[1:len(arg)-1], "/"))
	if err != nil {
		return "", "", err
	}
	dir = s.RepoPath(rel)
	if fi, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil || !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("repository %q not found", rel)
	}
	return service, dir, nil
}

// cleanRepoPath accepts slash-separated names of letters, digits, '.', '_'
// and '-', with no "." or ".." segment.
func cleanRepoPath(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("empty repository path")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("repository path %q: bad segment %q", p, seg)
		}
		for _, c := range seg {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				return "", fmt.Errorf("repository path %q: character %q not allowed", p, c)
			}
		}
	}
	return p, nil
}

// BasicAuthHeader returns the value of an Authorization header with the
// server's basic credentials, for the git command line
// (`git -c http.extraHeader=...`).
func (s *Server) BasicAuthHeader() string {
	return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(s.Username+":"+s.Password))
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
