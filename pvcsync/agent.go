package pvcsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// AgentConfig is what an agent serves and whom it lets in.
type AgentConfig struct {
	// HostKey is the agent's SSH host key; targets pin its public half.
	HostKey ssh.Signer
	// AuthorizedKeys are plain public keys let in (for an operator, or a
	// setup without a CA).
	AuthorizedKeys []ssh.PublicKey
	// UserCAs sign the per-run certificates (IssueCredentials).
	UserCAs []ssh.PublicKey
	// KubeletDir is the kubelet's root (DefaultKubeletDir when empty); the
	// agent serves the volume directories below <KubeletDir>/pods.
	KubeletDir string
	// ExtraRoots are further directories served whole, for hostPath and
	// local PVs whose data lives outside the kubelet's directory.
	ExtraRoots []string
	// RsyncPath is the rsync binary ("rsync" from PATH when empty).
	RsyncPath string
	// Logger receives one line per connection, authentication and refusal
	// (slog.Default() when nil).
	Logger *slog.Logger
}

// LoadAgentConfig builds an AgentConfig from files, as `dr-syncer agent`
// takes them: the host key (OpenSSH private key), an authorized_keys file
// and a file of user CA public keys (either may be empty, not both).
func LoadAgentConfig(hostKeyFile, authorizedKeysFile, userCAFile string) (AgentConfig, error) {
	var cfg AgentConfig
	var err error
	if cfg.HostKey, err = LoadSigner(hostKeyFile); err != nil {
		return AgentConfig{}, fmt.Errorf("agent host key: %w", err)
	}
	if authorizedKeysFile != "" {
		if cfg.AuthorizedKeys, err = LoadPublicKeys(authorizedKeysFile); err != nil {
			return AgentConfig{}, fmt.Errorf("agent authorized keys: %w", err)
		}
	}
	if userCAFile != "" {
		if cfg.UserCAs, err = LoadPublicKeys(userCAFile); err != nil {
			return AgentConfig{}, fmt.Errorf("agent user CA: %w", err)
		}
	}
	return cfg, nil
}

// Agent is the SSH server of a source node. It runs nothing but rsync's
// sender, read-only, on volume directories of the node:
//
//   - public-key authentication only, as AgentUser: a key in
//     AuthorizedKeys, or a user certificate from one of UserCAs that is valid
//     now, for principal AgentUser; a certificate's PathOption limits it to
//     one directory, any other critical option is refused;
//   - "session" channels only; no forwarding of ports or of the SSH agent,
//     no pty, shell, subsystem or environment, no global request;
//   - one exec per session, which must be `rsync --server --sender` with
//     allowlisted options (see parseSenderCommand) and paths that resolve,
//     symlinks followed, inside <KubeletDir>/pods/<uid>/volumes/<plugin>/<volume>
//     (persistent plugins only: CSI and in-tree PV plugins, never secret,
//     configMap, projected, downwardAPI or emptyDir volumes) or inside one of
//     ExtraRoots. rsync is started directly, never through a shell, and gets
//     the resolved path.
//
// Every refusal is logged with the remote address, user and key
// fingerprint, and answered with a failure (and a one-line message on the
// channel's stderr, with exit status 1, where there is a channel).
//
// A path below a volume's root is checked when the request arrives; a
// workload that can write the volume could swap a directory on that path for
// a symlink before rsync opens it. The volume root itself is the kubelet's
// mount point, out of the workload's reach, and is what Pull asks for.
type Agent struct {
	cfg        AgentConfig
	server     *ssh.ServerConfig
	kubeletDir string   // resolved
	extraRoots []string // resolved
	rsync      string
	log        *slog.Logger
}

// Ciphers the agent offers, best first: x/crypto's AES-GCM is as fast as
// OpenSSH's, its chacha20-poly1305 much slower (DESIGN.md, Test environment).
var agentCiphers = []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305}

// persistentPlugins are the kubelet volume plugin directories that hold
// PersistentVolumes. Ephemeral kinds that carry credentials or pod metadata
// (kubernetes.io~secret, ~configmap, ~projected, ~downward-api) and
// ~empty-dir are not served.
var persistentPlugins = map[string]bool{
	"kubernetes.io~csi": true, "kubernetes.io~local-volume": true, "kubernetes.io~nfs": true,
	"kubernetes.io~iscsi": true, "kubernetes.io~rbd": true, "kubernetes.io~cephfs": true,
	"kubernetes.io~fc": true, "kubernetes.io~glusterfs": true, "kubernetes.io~aws-ebs": true,
	"kubernetes.io~gce-pd": true, "kubernetes.io~azure-disk": true, "kubernetes.io~azure-file": true,
	"kubernetes.io~vsphere-volume": true, "kubernetes.io~portworx-volume": true,
	"kubernetes.io~cinder": true,
}

// fingerprintExt carries the client key's fingerprint from authentication to
// the connection's log lines.
const fingerprintExt = "fingerprint@dr-syncer.io"

// NewAgent checks cfg and resolves the served directories once.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.HostKey == nil {
		return nil, errors.New("agent: a host key is required")
	}
	if len(cfg.AuthorizedKeys) == 0 && len(cfg.UserCAs) == 0 {
		return nil, errors.New("agent: no authorized key and no user CA: nobody could log in")
	}
	a := &Agent{cfg: cfg, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	kd := cfg.KubeletDir
	if kd == "" {
		kd = DefaultKubeletDir
	}
	var err error
	if a.kubeletDir, err = resolveRoot(kd); err != nil {
		return nil, fmt.Errorf("agent: kubelet dir %s: %w", kd, err)
	}
	for _, r := range cfg.ExtraRoots {
		res, err := resolveRoot(r)
		if err != nil {
			return nil, fmt.Errorf("agent: extra root %s: %w", r, err)
		}
		a.extraRoots = append(a.extraRoots, res)
	}
	rs := cfg.RsyncPath
	if rs == "" {
		rs = "rsync"
	}
	if a.rsync, err = exec.LookPath(rs); err != nil {
		return nil, fmt.Errorf("agent: rsync %s: %w", rs, err)
	}
	a.server = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: agentCiphers},
		PublicKeyCallback: a.checkKey,
		AuthLogCallback:   a.logAuth,
		ServerVersion:     "SSH-2.0-dr-syncer-agent",
	}
	a.server.AddHostKey(cfg.HostKey)
	return a, nil
}

func resolveRoot(dir string) (string, error) {
	if !filepath.IsAbs(dir) {
		return "", errors.New("not an absolute path")
	}
	res, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	if res == "/" {
		return "", errors.New("resolves to /: that would serve the whole node")
	}
	return res, nil
}

// checkKey is the only authentication method.
func (a *Agent) checkKey(conn ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	refuse := func(reason string) (*ssh.Permissions, error) {
		a.log.Warn("agent: authentication refused", "remote", conn.RemoteAddr().String(),
			"user", conn.User(), "key", fp, "refused", "publickey", "reason", reason)
		return nil, fmt.Errorf("agent: %s", reason)
	}
	if conn.User() != AgentUser {
		return refuse(fmt.Sprintf("user %q is not %q", conn.User(), AgentUser))
	}
	if cert, ok := key.(*ssh.Certificate); ok {
		fp = ssh.FingerprintSHA256(cert.Key)
		checker := ssh.CertChecker{
			IsUserAuthority: func(auth ssh.PublicKey) bool {
				return containsKey(a.cfg.UserCAs, auth)
			},
			SupportedCriticalOptions: []string{PathOption},
		}
		perms, err := checker.Authenticate(conn, cert)
		if err != nil {
			return refuse("certificate: " + err.Error())
		}
		out := &ssh.Permissions{CriticalOptions: map[string]string{}, Extensions: map[string]string{fingerprintExt: fp}}
		for k, v := range perms.CriticalOptions {
			out.CriticalOptions[k] = v
		}
		a.log.Info("agent: authenticated", "remote", conn.RemoteAddr().String(), "user", conn.User(),
			"key", fp, "certificate", cert.KeyId, "path", perms.CriticalOptions[PathOption])
		return out, nil
	}
	if !containsKey(a.cfg.AuthorizedKeys, key) {
		return refuse("key not authorized")
	}
	a.log.Info("agent: authenticated", "remote", conn.RemoteAddr().String(), "user", conn.User(), "key", fp)
	return &ssh.Permissions{Extensions: map[string]string{fingerprintExt: fp}}, nil
}

func containsKey(keys []ssh.PublicKey, k ssh.PublicKey) bool {
	m := k.Marshal()
	for _, c := range keys {
		if bytes.Equal(c.Marshal(), m) {
			return true
		}
	}
	return false
}

// logAuth logs the methods other than publickey (checkKey logs those with
// the key): none, password, keyboard-interactive are never accepted.
func (a *Agent) logAuth(conn ssh.ConnMetadata, method string, err error) {
	if err == nil || method == "publickey" {
		return
	}
	level := slog.LevelWarn
	if method == "none" {
		// Every client tries "none" first to learn the methods.
		level = slog.LevelInfo
	}
	a.log.Log(context.Background(), level, "agent: authentication refused", "remote", conn.RemoteAddr().String(),
		"user", conn.User(), "refused", method, "reason", "only publickey is accepted")
}

// Serve accepts connections on l until ctx ends; then it closes l and every
// open connection, kills the rsyncs still running, waits for them and
// returns nil. It returns an error if l fails.
func (a *Agent) Serve(ctx context.Context, l net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("agent: accept on %s: %w", l.Addr(), err)
		}
		wg.Go(func() { a.serveConn(ctx, c) })
	}
}

// handshakeTimeout bounds how long an unauthenticated client may hold a
// connection.
const handshakeTimeout = 30 * time.Second

func (a *Agent) serveConn(ctx context.Context, c net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	sconn, chans, reqs, err := ssh.NewServerConn(c, a.server)
	if err != nil {
		a.log.Info("agent: connection ended before login", "remote", c.RemoteAddr().String(), "reason", err.Error())
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	defer sconn.Close()
	log := a.log.With("remote", sconn.RemoteAddr().String(), "user", sconn.User(),
		"key", sconn.Permissions.Extensions[fingerprintExt])
	bound, isBound := sconn.Permissions.CriticalOptions[PathOption]

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for r := range reqs {
			if strings.HasPrefix(r.Type, "keepalive@") {
				log.Debug("agent: global request refused", "refused", r.Type)
			} else {
				log.Warn("agent: global request refused", "refused", r.Type)
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
	})
	for nc := range chans {
		if nc.ChannelType() != "session" {
			log.Warn("agent: channel refused", "refused", nc.ChannelType())
			_ = nc.Reject(ssh.Prohibited, "only session channels are served")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			log.Info("agent: channel accept failed", "reason", err.Error())
			continue
		}
		s := &session{agent: a, log: log, ch: ch, bound: bound, isBound: isBound}
		wg.Go(func() { s.serve(ctx, creqs) })
	}
	cancel()
}

// session is one "session" channel: at most one exec.
type session struct {
	agent   *Agent
	log     *slog.Logger
	ch      ssh.Channel
	bound   string
	isBound bool
	exec    bool
}

func (s *session) serve(ctx context.Context, reqs <-chan *ssh.Request) {
	defer s.ch.Close()
	done := make(chan struct{})
	for {
		select {
		case r, ok := <-reqs:
			if !ok {
				return
			}
			if r.Type != "exec" || s.exec {
				what, reason := r.Type, "this agent serves the rsync sender only"
				if r.Type == "exec" {
					what, reason = "second exec", "one rsync sender per session"
				}
				if r.Type == "shell" || r.Type == "subsystem" || r.Type == "exec" {
					// Like a command that failed, so the client shows why.
					s.fail(r, what, reason)
					return
				}
				s.refuse(r, what, reason)
				continue
			}
			s.exec = true
			if !s.startExec(ctx, r, done) {
				return
			}
		case <-done:
			return
		}
	}
}

func (s *session) refuse(r *ssh.Request, what, reason string) {
	s.log.Warn("agent: request refused", "refused", what, "reason", reason)
	fmt.Fprintf(s.ch.Stderr(), "dr-syncer agent: %s refused: %s\n", what, reason)
	if r.WantReply {
		_ = r.Reply(false, nil)
	}
}

// fail answers a request for a program (exec, shell, subsystem) the way a
// failed command ends: accepted, a line on stderr, exit status 1, closed. A
// bare refusal would leave the OpenSSH client printing only "exec request
// failed".
func (s *session) fail(r *ssh.Request, what, reason string) {
	s.log.Warn("agent: request refused", "refused", what, "reason", reason)
	if r.WantReply {
		_ = r.Reply(true, nil)
	}
	fmt.Fprintf(s.ch.Stderr(), "dr-syncer agent: %s refused: %s\n", what, reason)
	s.exit(1)
}

func (s *session) exit(code int) {
	_, _ = s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
}

// startExec checks an exec request, and starts rsync if it passes; done is
// closed when rsync has ended and its exit status has been sent.
func (s *session) startExec(ctx context.Context, r *ssh.Request, done chan struct{}) bool {
	var payload struct{ Command string }
	if err := ssh.Unmarshal(r.Payload, &payload); err != nil {
		s.fail(r, "exec", "malformed request")
		return false
	}
	// The command is logged: it is rsync's argv, not a secret.
	cmdline := payload.Command
	if len(cmdline) > 512 {
		cmdline = cmdline[:512] + "…"
	}
	args, err := s.agent.senderArgs(payload.Command, s.bound, s.isBound)
	if err != nil {
		s.log.Warn("agent: exec refused", "refused", "exec", "command", cmdline, "reason", err.Error())
		if r.WantReply {
			_ = r.Reply(true, nil)
		}
		fmt.Fprintf(s.ch.Stderr(), "dr-syncer agent: exec refused: %s\n", err)
		s.exit(1)
		return false
	}
	cmd := exec.CommandContext(ctx, s.agent.rsync, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C"}
	// A session (and so a process group) of its own, as sshd gives every
	// command: the agent can kill the whole group, and the kernel schedules
	// the sender apart from the agent (with Linux autogroup, a session is a
	// CPU scheduling group), exactly as rsync under sshd.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	// Through a pipe and a copy of our own: with the channel as cmd.Stdin,
	// Wait would wait for the channel's EOF, which the client sends only
	// after it has seen the exit status.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.fail(r, "exec", "internal error")
		return false
	}
	cmd.Stdout = s.ch
	cmd.Stderr = s.ch.Stderr()
	if err := cmd.Start(); err != nil {
		s.log.Error("agent: rsync did not start", "reason", err.Error())
		s.fail(r, "exec", "rsync did not start")
		return false
	}
	if r.WantReply {
		_ = r.Reply(true, nil)
	}
	s.log.Info("agent: rsync sender started", "command", cmdline, "pid", cmd.Process.Pid)
	go func() {
		_, _ = io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	go func() {
		defer close(done)
		start := time.Now()
		err := cmd.Wait()
		code := 0
		if err != nil {
			code = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() > 0 {
				code = ee.ExitCode()
			}
		}
		s.log.Info("agent: rsync sender ended", "exitCode", code, "duration", time.Since(start).String())
		_ = s.ch.CloseWrite()
		s.exit(code)
	}()
	return true
}

// senderArgs turns an exec command into rsync's argv: the checked options,
// ".", and each path resolved and checked.
func (a *Agent) senderArgs(command, bound string, isBound bool) ([]string, error) {
	sc, err := parseSenderCommand(command)
	if err != nil {
		return nil, err
	}
	args := append([]string{"--server", "--sender"}, sc.Options...)
	args = append(args, ".")
	for _, p := range sc.Paths {
		res, err := a.resolve(p, bound, isBound)
		if err != nil {
			return nil, err
		}
		args = append(args, res)
	}
	return args, nil
}

// errPathRefused is the class of every refused path.
var errPathRefused = errors.New("path refused")

// resolve checks one requested path and returns it with symlinks resolved
// (and its trailing slash kept: rsync copies a directory's content with one,
// the directory itself without).
func (a *Agent) resolve(p, bound string, isBound bool) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("%w: %q is not absolute", errPathRefused, p)
	}
	if strings.ContainsAny(p, "*?[\x00") {
		return "", fmt.Errorf("%w: %q has glob characters", errPathRefused, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%w: %q has a \"..\" component", errPathRefused, p)
		}
	}
	res, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", errPathRefused, p, pathErrReason(err))
	}
	if !a.served(res) {
		return "", fmt.Errorf("%w: %q is not inside a volume served by this agent", errPathRefused, p)
	}
	if isBound {
		b, err := filepath.EvalSymlinks(bound)
		if err != nil || !within(res, b) {
			return "", fmt.Errorf("%w: %q is outside the certificate's path", errPathRefused, p)
		}
	}
	if strings.HasSuffix(p, "/") && res != "/" {
		res += "/"
	}
	return res, nil
}

func pathErrReason(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return os.ErrNotExist
	}
	return err
}

// served says whether res (resolved) is in a volume directory or an extra
// root.
func (a *Agent) served(res string) bool {
	for _, r := range a.extraRoots {
		if within(res, r) {
			return true
		}
	}
	if !within(res, a.kubeletDir) {
		return false
	}
	rel, err := filepath.Rel(a.kubeletDir, res)
	if err != nil {
		return false
	}
	// pods/<uid>/volumes/<plugin>/<volume>[/...]
	parts := strings.Split(rel, string(filepath.Separator))
	return len(parts) >= 5 && parts[0] == "pods" && parts[1] != "" &&
		parts[2] == "volumes" && persistentPlugins[parts[3]] && parts[4] != ""
}

// within says whether p is dir or below it; both are clean absolute paths.
func within(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}
