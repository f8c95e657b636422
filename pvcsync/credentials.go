package pvcsync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// PathOption is the critical option of a per-run certificate that binds it
// to one volume directory: the agent serves that directory and what is below
// it, nothing else.
const PathOption = "path@dr-syncer.io"

// Files written by GenerateAgentKeys, in the directory given to it.
const (
	HostKeyFile = "ssh_host_ed25519_key"
	UserCAFile  = "user_ca_ed25519_key"
)

// IssueCredentials makes the credentials of one copy: a fresh ed25519 key,
// an OpenSSH user certificate for it signed by ca (principal AgentUser,
// valid from a minute ago — clock skew — for ttl, bound to path by the
// PathOption critical option, with no extensions: no pty, no forwarding),
// and a known_hosts file that pins hostKey for hosts ("10.0.0.5",
// "[10.0.0.5]:2222"; a bare host is pinned for port 22 and for
// DefaultAgentPort). Nothing here is logged or put in an error.
func IssueCredentials(ca ssh.Signer, hostKey ssh.PublicKey, hosts []string, path string, ttl time.Duration) (Credentials, error) {
	if ca == nil || hostKey == nil {
		return Credentials{}, errors.New("credentials: CA signer and host key are required")
	}
	if !filepath.IsAbs(path) {
		return Credentials{}, fmt.Errorf("credentials for %s: path must be absolute", path)
	}
	if ttl <= 0 {
		return Credentials{}, fmt.Errorf("credentials for %s: ttl must be positive", path)
	}
	if len(hosts) == 0 {
		return Credentials{}, fmt.Errorf("credentials for %s: no agent host to pin", path)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: generate key: %w", path, err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", path, err)
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             sshPub,
		CertType:        ssh.UserCert,
		KeyId:           "dr-syncer pull " + path,
		ValidPrincipals: []string{AgentUser},
		ValidAfter:      uint64(now.Add(-time.Minute).Unix()),
		ValidBefore:     uint64(now.Add(ttl).Unix()),
		Permissions: ssh.Permissions{
			CriticalOptions: map[string]string{PathOption: path},
		},
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: sign certificate: %w", path, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "dr-syncer pull")
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", path, err)
	}
	kh, err := knownHostsFor(hostKey, hosts)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", path, err)
	}
	return Credentials{
		PrivateKey:  pem.EncodeToMemory(block),
		Certificate: ssh.MarshalAuthorizedKey(cert),
		KnownHosts:  kh,
	}, nil
}

// knownHostsFor writes one known_hosts line pinning key for the hosts.
func knownHostsFor(key ssh.PublicKey, hosts []string) ([]byte, error) {
	var addrs []string
	for _, h := range hosts {
		if host, port, err := net.SplitHostPort(h); err == nil {
			if _, err := strconv.Atoi(port); err != nil || host == "" {
				return nil, fmt.Errorf("known_hosts: bad host %q", h)
			}
			addrs = append(addrs, knownhosts.Normalize(h))
			continue
		}
		if h == "" {
			return nil, errors.New("known_hosts: empty host")
		}
		addrs = append(addrs, knownhosts.Normalize(h),
			knownhosts.Normalize(net.JoinHostPort(h, strconv.Itoa(DefaultAgentPort))))
	}
	return []byte(knownhosts.Line(addrs, key) + "\n"), nil
}

// WriteCredentials writes c into dir as KeyFile (0600), CertificateFile and
// KnownHostsFile, the layout Pull reads.
func WriteCredentials(dir string, c Credentials) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{KeyFile, c.PrivateKey, 0o600},
		{CertificateFile, c.Certificate, 0o644},
		{KnownHostsFile, c.KnownHosts, 0o644},
	} {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, f.data, f.mode); err != nil {
			return fmt.Errorf("credentials %s: %w", p, err)
		}
		// WriteFile keeps the mode of an existing file: ssh refuses a
		// private key others can read.
		if err := os.Chmod(p, f.mode); err != nil {
			return fmt.Errorf("credentials %s: %w", p, err)
		}
	}
	return nil
}

// GenerateAgentKeys writes a new agent host key and a new user CA key into
// dir (HostKeyFile, UserCAFile, 0600, and their ".pub", 0644), for `dr-syncer
// agent keygen`. It refuses to overwrite existing keys.
func GenerateAgentKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent keys %s: %w", dir, err)
	}
	for _, name := range []string{HostKeyFile, UserCAFile} {
		p := filepath.Join(dir, name)
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("agent key %s: %w", p, err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "dr-syncer "+name)
		if err != nil {
			return fmt.Errorf("agent key %s: %w", p, err)
		}
		sshPub, err := ssh.NewPublicKey(pub)
		if err != nil {
			return fmt.Errorf("agent key %s: %w", p, err)
		}
		if err := writeNew(p, pem.EncodeToMemory(block), 0o600); err != nil {
			return err
		}
		if err := writeNew(p+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("agent key %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("agent key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent key %s: %w", path, err)
	}
	return nil
}

// LoadSigner reads an unencrypted OpenSSH private key (a host key, a user
// CA key). The error names the file, never its content.
func LoadSigner(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return s, nil
}

// LoadPublicKeys reads public keys in authorized_keys form (an
// authorized_keys file, a ".pub" file, a file of CA keys); blank lines and
// comments are skipped, options are ignored. A file without any key is an
// error: an agent that trusts nothing is a mistake, not a policy.
func LoadPublicKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("public keys %s: %w", path, err)
	}
	var keys []ssh.PublicKey
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("public keys %s: line %d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("public keys %s: no key", path)
	}
	return keys, nil
}

// CredentialsFrom issues the credentials of each copy (IssueCredentials,
// valid for ttl) with the agent keys in dir — the user CA's private key
// (UserCAFile) and the agents' host public key (HostKeyFile + ".pub") —
// read once, when the first copy needs them: a commit without claims
// needs no keys.
func CredentialsFrom(dir string, ttl time.Duration) func(Transfer) (Credentials, error) {
	var once sync.Once
	var ca ssh.Signer
	var host ssh.PublicKey
	var loadErr error
	return func(t Transfer) (Credentials, error) {
		once.Do(func() {
			hint := fmt.Sprintf(" (create them with `dr-syncer agent keygen --dir %s`, or skip the PVC stage with --no-volumes)", dir)
			if ca, loadErr = LoadSigner(filepath.Join(dir, UserCAFile)); loadErr != nil {
				loadErr = fmt.Errorf("agent keys: %w%s", loadErr, hint)
				return
			}
			keys, err := LoadPublicKeys(filepath.Join(dir, HostKeyFile+".pub"))
			if err != nil {
				loadErr = fmt.Errorf("agent keys: %w%s", err, hint)
				return
			}
			host = keys[0]
		})
		if loadErr != nil {
			return Credentials{}, loadErr
		}
		return IssueCredentials(ca, host, []string{t.Agent.String()}, t.Path, ttl)
	}
}
