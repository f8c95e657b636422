package pvcsync

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func (e *testEnv) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	return ssh.Dial("tcp", e.agent.String(), &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(e.hostKey.PublicKey()),
		Timeout:         5 * time.Second,
	})
}

// certSigner signs a user certificate for key with ca; mod adjusts it.
func certSigner(t *testing.T, ca ssh.Signer, mod func(*ssh.Certificate)) ssh.Signer {
	t.Helper()
	key := newSigner(t)
	cert := &ssh.Certificate{
		Key:             key.PublicKey(),
		CertType:        ssh.UserCert,
		KeyId:           "test",
		ValidPrincipals: []string{AgentUser},
		ValidAfter:      uint64(time.Now().Add(-time.Minute).Unix()),
		ValidBefore:     uint64(time.Now().Add(time.Hour).Unix()),
	}
	if mod != nil {
		mod(cert)
	}
	must(t, cert.SignCert(rand.Reader, ca))
	s, err := ssh.NewCertSigner(cert, key)
	must(t, err)
	return s
}

// waitAfter waits for a program request the agent accepted to end: it must
// end with a non-zero status.
func waitAfter(s *ssh.Session, err error) error {
	if err != nil {
		return err
	}
	return s.Wait()
}

const senderPrefix = "rsync --server --sender -lHogDtpAXre.iLsfxCIvu --numeric-ids . "

// TestAgentRefuses: every attack is refused and logged with what was
// refused.
func TestAgentRefuses(t *testing.T) {
	e := newTestEnv(t, "")
	must(t, os.Symlink("/etc", filepath.Join(e.volume, "escape")))
	secretVol := filepath.Join(e.kubelet, "pods", "0b3c5e1a-uid-1", "volumes", "kubernetes.io~secret", "token")
	must(t, os.MkdirAll(secretVol, 0o755))
	stranger := newSigner(t)
	otherCA := newSigner(t)

	// session runs fn on a session of a client logged in with the admin key.
	session := func(fn func(*ssh.Client, *ssh.Session) error) func() error {
		return func() error {
			c, err := e.dial(AgentUser, ssh.PublicKeys(e.admin))
			if err != nil {
				return errors.New("control: admin login failed: " + err.Error())
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				return err
			}
			defer s.Close()
			return fn(c, s)
		}
	}
	exec := func(cmd string) func() error {
		return session(func(_ *ssh.Client, s *ssh.Session) error { return s.Run(cmd) })
	}
	login := func(user string, auth ...ssh.AuthMethod) func() error {
		return func() error {
			c, err := e.dial(user, auth...)
			if err == nil {
				c.Close()
			}
			return err
		}
	}
	tests := []struct {
		name   string
		attack func() error
		log    []string // words of one log line
	}{
		{"wrong key", login(AgentUser, ssh.PublicKeys(stranger)),
			[]string{"authentication refused", "key not authorized", ssh.FingerprintSHA256(stranger.PublicKey())}},
		{"no key (none)", login(AgentUser), []string{"authentication refused", "refused=none"}},
		// The agent lists publickey as its only method after "none", so a
		// client never gets to send a password: the refusal logged is the
		// "none" probe.
		{"password", login(AgentUser, ssh.Password("hunter2")), []string{"authentication refused", "refused=none"}},
		{"keyboard-interactive", login(AgentUser, ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
			return nil, nil
		})), []string{"authentication refused", "refused=none"}},
		{"other user name", login("root", ssh.PublicKeys(e.admin)), []string{"authentication refused", `user=root`}},
		{"certificate from another CA", login(AgentUser, ssh.PublicKeys(certSigner(t, otherCA, nil))),
			[]string{"authentication refused", "unrecognized authority"}},
		{"expired certificate", login(AgentUser, ssh.PublicKeys(certSigner(t, e.ca, func(c *ssh.Certificate) {
			c.ValidAfter = uint64(time.Now().Add(-2 * time.Hour).Unix())
			c.ValidBefore = uint64(time.Now().Add(-time.Hour).Unix())
		}))), []string{"authentication refused", "expired"}},
		{"certificate for another principal", login(AgentUser, ssh.PublicKeys(certSigner(t, e.ca, func(c *ssh.Certificate) {
			c.ValidPrincipals = []string{"root"}
		}))), []string{"authentication refused", "not in the set of valid principals"}},
		{"certificate with an unknown critical option", login(AgentUser, ssh.PublicKeys(certSigner(t, e.ca, func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"force-command": "/bin/sh"}
		}))), []string{"authentication refused", "unsupported critical option"}},
		{"certificate for another path", func() error {
			s := certSigner(t, e.ca, func(c *ssh.Certificate) { c.CriticalOptions = map[string]string{PathOption: e.other} })
			c, err := e.dial(AgentUser, ssh.PublicKeys(s))
			if err != nil {
				return errors.New("control: login failed: " + err.Error())
			}
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				return err
			}
			defer sess.Close()
			return sess.Run(senderPrefix + e.volume + "/")
		}, []string{"exec refused", "outside the certificate"}},
		{"shell", session(func(_ *ssh.Client, s *ssh.Session) error { return waitAfter(s, s.Shell()) }), []string{"request refused", "refused=shell"}},
		{"pty", session(func(_ *ssh.Client, s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, nil) }),
			[]string{"request refused", "refused=pty-req"}},
		{"env", session(func(_ *ssh.Client, s *ssh.Session) error { return s.Setenv("LD_PRELOAD", "/tmp/x.so") }),
			[]string{"request refused", "refused=env"}},
		{"subsystem sftp", session(func(_ *ssh.Client, s *ssh.Session) error { return waitAfter(s, s.RequestSubsystem("sftp")) }),
			[]string{"request refused", "refused=subsystem"}},
		{"x11", session(func(_ *ssh.Client, s *ssh.Session) error {
			ok, err := s.SendRequest("x11-req", true, ssh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0}))
			if err == nil && !ok {
				err = errors.New("refused")
			}
			return err
		}), []string{"request refused", "refused=x11-req"}},
		{"agent forwarding", session(func(_ *ssh.Client, s *ssh.Session) error {
			ok, err := s.SendRequest("auth-agent-req@openssh.com", true, nil)
			if err == nil && !ok {
				err = errors.New("refused")
			}
			return err
		}), []string{"request refused", "refused=auth-agent-req@openssh.com"}},
		{"exec ls", exec("ls /"), []string{"exec refused", "not an rsync server command"}},
		{"exec sh -c", exec("sh -c 'cat /etc/shadow'"), []string{"exec refused", "shell character"}},
		{"rsync without --sender (a write)", exec("rsync --server -logDtpre.iLsfxCIvu . " + e.volume + "/"),
			[]string{"exec refused", "without --sender"}},
		{"dot-dot traversal", exec(senderPrefix + e.volume + "/../../../../../../../../etc/"), []string{"exec refused", `\"..\" component`}},
		{"absolute path outside the volumes", exec(senderPrefix + "/etc/"), []string{"exec refused", "not inside a volume"}},
		{"symlink inside a volume pointing outside", exec(senderPrefix + e.volume + "/escape/"), []string{"exec refused", "not inside a volume"}},
		{"a secret volume", exec(senderPrefix + secretVol + "/"), []string{"exec refused", "not inside a volume"}},
		{"relative path", exec(senderPrefix + "etc/"), []string{"exec refused", "not absolute"}},
		{"-L", exec("rsync --server --sender -lLogDtpre.iLsfxCIvu . " + e.volume + "/"), []string{"exec refused", "-L not allowed"}},
		{"--files-from", exec("rsync --server --sender -logDtpe.LsfxCIvu --files-from=/etc/shadow . " + e.volume + "/"),
			[]string{"exec refused", "--files-from not allowed"}},
		{"--remove-source-files", exec("rsync --server --sender -logDtpre.iLsfxCIvu --remove-source-files . " + e.volume + "/"),
			[]string{"exec refused", "--remove-source-files"}},
		{"direct-tcpip port forwarding", func() error {
			c, err := e.dial(AgentUser, ssh.PublicKeys(e.admin))
			if err != nil {
				return errors.New("control: " + err.Error())
			}
			defer c.Close()
			conn, err := c.Dial("tcp", e.agent.String())
			if err == nil {
				conn.Close()
			}
			return err
		}, []string{"channel refused", "refused=direct-tcpip"}},
		{"tcpip-forward", func() error {
			c, err := e.dial(AgentUser, ssh.PublicKeys(e.admin))
			if err != nil {
				return errors.New("control: " + err.Error())
			}
			defer c.Close()
			l, err := c.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				l.Close()
			}
			return err
		}, []string{"global request refused", "refused=tcpip-forward"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.attack()
			if err == nil {
				t.Fatalf("attack succeeded")
			}
			if strings.HasPrefix(err.Error(), "control:") {
				t.Fatalf("the test's own login failed: %v", err)
			}
			if !e.logsContain(tt.log...) {
				t.Errorf("no log line with %q; logs:\n%s", tt.log, e.logs.String())
			}
		})
	}
	if strings.Contains(e.logs.String(), "PRIVATE KEY") {
		t.Errorf("key material in the logs")
	}
}

// TestAgentRefusesRealSSH drives the agent with the OpenSSH client and the
// credentials of a pull: anything but the rsync sender fails, with a message.
func TestAgentRefusesRealSSH(t *testing.T) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		t.Skip("no ssh client")
	}
	e := newTestEnv(t, "")
	base := []string{"-F", "/dev/null", "-i", filepath.Join(e.keyDir, KeyFile),
		"-o", "CertificateFile=" + filepath.Join(e.keyDir, CertificateFile),
		"-o", "IdentitiesOnly=yes", "-o", "UserKnownHostsFile=" + filepath.Join(e.keyDir, KnownHostsFile),
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-p", strconv.Itoa(e.agent.Port), "-l", AgentUser}
	tests := []struct {
		name   string
		args   []string
		stderr string
		log    []string
	}{
		{"exec ls", []string{"-T", e.agent.Host, "ls", "/"}, "exec refused", []string{"exec refused", "not an rsync"}},
		{"shell with a pty", []string{"-tt", e.agent.Host}, "PTY allocation request failed", []string{"request refused", "refused=pty-req"}},
		{"port forwarding", []string{"-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "-N", e.agent.Host}, "forwarding failed",
			[]string{"global request refused", "refused=tcpip-forward"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), sshBin, append(append([]string{}, base...), tt.args...)...)
			cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=/nonexistent")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Stdin = strings.NewReader("")
			done := make(chan error, 1)
			must(t, cmd.Start())
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatalf("ssh %v succeeded", tt.args)
				}
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if tt.stderr != "" && !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("ssh stderr %q lacks %q", stderr.String(), tt.stderr)
			}
			if !e.logsContain(tt.log...) {
				t.Errorf("no log line with %q; logs:\n%s", tt.log, e.logs.String())
			}
		})
	}
}

func TestNewAgentChecks(t *testing.T) {
	dir := t.TempDir()
	host := newSigner(t)
	tests := []struct {
		name string
		cfg  AgentConfig
	}{
		{"no host key", AgentConfig{UserCAs: []ssh.PublicKey{host.PublicKey()}, KubeletDir: dir}},
		{"nobody may log in", AgentConfig{HostKey: host, KubeletDir: dir}},
		{"missing kubelet dir", AgentConfig{HostKey: host, UserCAs: []ssh.PublicKey{host.PublicKey()}, KubeletDir: filepath.Join(dir, "nope")}},
		{"extra root is /", AgentConfig{HostKey: host, UserCAs: []ssh.PublicKey{host.PublicKey()}, KubeletDir: dir, ExtraRoots: []string{"/"}}},
		{"relative extra root", AgentConfig{HostKey: host, UserCAs: []ssh.PublicKey{host.PublicKey()}, KubeletDir: dir, ExtraRoots: []string{"data"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewAgent(tt.cfg); err == nil {
				t.Errorf("NewAgent accepted %+v", tt.cfg)
			}
		})
	}
}

// TestAgentServesExtraRoot: a hostPath PV outside the kubelet dir is served
// when it is an extra root.
func TestAgentServesExtraRoot(t *testing.T) {
	e := newTestEnv(t, "")
	pv := filepath.Join(e.extra, "pv-hostpath")
	must(t, os.MkdirAll(pv, 0o755))
	must(t, os.WriteFile(filepath.Join(pv, "f"), []byte("data"), 0o644))
	dest := t.TempDir()
	if _, err := Pull(t.Context(), PullOptions{Agent: e.agent, Path: pv, Dest: dest, KeyDir: e.credentials(t, pv, time.Hour)}); err != nil {
		t.Fatalf("Pull of an extra root: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "f")); err != nil || string(b) != "data" {
		t.Errorf("content = %q, %v", b, err)
	}
}
