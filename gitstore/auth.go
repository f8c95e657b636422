package gitstore

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Auth holds the credentials for a remote. Which fields apply depends on
// the URL: Username with Password (basic auth) or Token (a bearer token) for
// http(s); SSHKey, SSHKeyPassphrase and KnownHosts for ssh. Fields that do
// not apply to the URL are an error, so that a credential is never silently
// ignored or sent where it was not meant to go.
//
// Auth never appears in logs or errors: String and GoString redact it, and
// errors gitstore returns have its secrets replaced.
type Auth struct {
	Username string // http basic auth; for ssh, the user when the URL has none (default "git")
	Password string // http basic auth
	Token    string // http "Authorization: Bearer"; for GitHub put a token in Password instead

	SSHKey           []byte // PEM private key (OpenSSH, PKCS#1 or PKCS#8)
	SSHKeyPassphrase string // when SSHKey is encrypted
	KnownHosts       []byte // known_hosts lines pinning the server's host key; required for ssh
}

// Environment variables read by AuthFromEnv.
const (
	EnvUsername         = "DR_SYNCER_GIT_USERNAME"
	EnvPassword         = "DR_SYNCER_GIT_PASSWORD"
	EnvToken            = "DR_SYNCER_GIT_TOKEN"
	EnvSSHKey           = "DR_SYNCER_GIT_SSH_KEY"            // a path
	EnvSSHKeyPassphrase = "DR_SYNCER_GIT_SSH_KEY_PASSPHRASE" // the value
	EnvKnownHosts       = "DR_SYNCER_GIT_KNOWN_HOSTS"        // a path
)

// Keys of a credentials directory or Kubernetes Secret, read by AuthFromDir
// and AuthFromSecretData. "username", "password", "identity" and
// "known_hosts" are the keys Flux's GitRepository secrets use.
const (
	KeyUsername         = "username"
	KeyPassword         = "password"
	KeyToken            = "token"
	KeySSHKey           = "identity"
	KeySSHKeyPassphrase = "identity-passphrase"
	KeyKnownHosts       = "known_hosts"
)

// AuthFromEnv reads credentials from the environment: the values of
// DR_SYNCER_GIT_USERNAME, DR_SYNCER_GIT_PASSWORD, DR_SYNCER_GIT_TOKEN and
// DR_SYNCER_GIT_SSH_KEY_PASSPHRASE, and the files that DR_SYNCER_GIT_SSH_KEY
// and DR_SYNCER_GIT_KNOWN_HOSTS name. Unset variables leave their field
// empty; a named file that cannot be read is an error.
func AuthFromEnv() (Auth, error) {
	a := Auth{
		Username:         os.Getenv(EnvUsername),
		Password:         os.Getenv(EnvPassword),
		Token:            os.Getenv(EnvToken),
		SSHKeyPassphrase: os.Getenv(EnvSSHKeyPassphrase),
	}
	for _, f := range []struct {
		env string
		dst *[]byte
	}{{EnvSSHKey, &a.SSHKey}, {EnvKnownHosts, &a.KnownHosts}} {
		name := os.Getenv(f.env)
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return Auth{}, fmt.Errorf("gitstore: credentials: %s: %w", f.env, err)
		}
		*f.dst = b
	}
	return a, nil
}

// AuthFromDir reads credentials from the files of a directory, one per key
// (see KeyUsername and the others), as a Kubernetes Secret mounted as a
// volume presents them. Missing files leave their field empty. Trailing
// newlines of username, password, token and passphrase are dropped: editors
// add them.
func AuthFromDir(dir string) (Auth, error) {
	data := map[string][]byte{}
	for _, k := range []string{KeyUsername, KeyPassword, KeyToken, KeySSHKey, KeySSHKeyPassphrase, KeyKnownHosts} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Auth{}, fmt.Errorf("gitstore: credentials: %w", err)
		}
		data[k] = b
	}
	return AuthFromSecretData(data), nil
}

// AuthFromSecretData maps the data of a Kubernetes Secret (or any key/value
// set with the keys of AuthFromDir) to Auth. Unknown keys are ignored: a
// Secret may serve other consumers too.
func AuthFromSecretData(data map[string][]byte) Auth {
	line := func(k string) string { return strings.TrimRight(string(data[k]), "\r\n") }
	return Auth{
		Username:         line(KeyUsername),
		Password:         line(KeyPassword),
		Token:            line(KeyToken),
		SSHKey:           data[KeySSHKey],
		SSHKeyPassphrase: line(KeySSHKeyPassphrase),
		KnownHosts:       data[KeyKnownHosts],
	}
}

// String describes the kind of credentials, never their values.
func (a Auth) String() string {
	var kinds []string
	if a.Username != "" {
		kinds = append(kinds, "username "+a.Username)
	}
	if a.Password != "" {
		kinds = append(kinds, "password")
	}
	if a.Token != "" {
		kinds = append(kinds, "token")
	}
	if len(a.SSHKey) > 0 {
		kinds = append(kinds, "ssh key")
	}
	if len(a.KnownHosts) > 0 {
		kinds = append(kinds, "known_hosts")
	}
	if len(kinds) == 0 {
		return "no credentials"
	}
	return strings.Join(kinds, ", ") + " (redacted)"
}

// GoString keeps %#v from printing secrets.
func (a Auth) GoString() string { return "gitstore.Auth{" + a.String() + "}" }

func (a Auth) hasHTTP() bool { return a.Username != "" || a.Password != "" || a.Token != "" }
func (a Auth) hasSSH() bool {
	return len(a.SSHKey) > 0 || a.SSHKeyPassphrase != "" || len(a.KnownHosts) > 0
}

// secrets lists the values that must not appear in an error.
func (a Auth) secrets() []string {
	var s []string
	for _, v := range []string{a.Password, a.Token, a.SSHKeyPassphrase} {
		if v != "" {
			s = append(s, v)
		}
	}
	return s
}

// transportAuth builds go-git's auth method for an endpoint.
func (a Auth) transportAuth(ep *transport.Endpoint) (transport.AuthMethod, error) {
	switch ep.Protocol {
	case "http", "https":
		if a.hasSSH() {
			return nil, errors.New("ssh key or known_hosts given for an http(s) remote")
		}
		if a.Token != "" && (a.Password != "") {
			return nil, errors.New("both a password and a token given: use one")
		}
		if ep.Protocol == "http" && a.hasHTTP() && !isLoopback(ep.Host) {
			return nil, fmt.Errorf("refusing to send credentials over plain http to %s: use https", ep.Host)
		}
		switch {
		case a.Token != "":
			return &githttp.TokenAuth{Token: a.Token}, nil
		case a.Password != "":
			return &githttp.BasicAuth{Username: a.Username, Password: a.Password}, nil
		case a.Username != "":
			return nil, errors.New("username given without a password or token")
		}
		return nil, nil
	case "ssh":
		if a.Password != "" || a.Token != "" {
			return nil, errors.New("password or token given for an ssh remote: ssh uses a key")
		}
		if len(a.SSHKey) == 0 {
			return nil, errors.New("ssh remote needs a private key")
		}
		if len(a.KnownHosts) == 0 {
			return nil, errors.New("ssh remote needs known_hosts pinning the server's host key")
		}
		user := ep.User
		if user == "" {
			user = a.Username
		}
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("ssh private key: %w", err)
		}
		hostPort := net.JoinHostPort(ep.Host, fmt.Sprint(portOf(ep)))
		cb, algos, err := pinnedHostKey(a.KnownHosts, hostPort)
		if err != nil {
			return nil, err
		}
		keys.HostKeyCallback, keys.HostKeyAlgorithms = cb, algos
		return keys, nil
	case "file":
		if a.hasHTTP() || a.hasSSH() {
			return nil, errors.New("credentials given for a local remote")
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unsupported protocol %q: use https, http, ssh or a path", ep.Protocol)
}

func portOf(ep *transport.Endpoint) int {
	if ep.Port != 0 {
		return ep.Port
	}
	return 22
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Errors of host key verification, wrapped by errors that name the host.
var (
	// ErrUnknownHostKey: the server's host is not in known_hosts. A person
	// must add its key (check it first: `ssh-keyscan` alone trusts whatever
	// answers).
	ErrUnknownHostKey = errors.New("host not in known_hosts")
	// ErrHostKeyMismatch: known_hosts has other keys for the host (or
	// revokes this one): the server changed its key or someone is in the
	// middle.
	ErrHostKeyMismatch = errors.New("host key does not match known_hosts")
)

// pinnedHostKey returns a host key callback that accepts only the keys
// known_hosts lists for hostPort, and the key algorithms to ask the server
// for, so that it offers a key of a type known_hosts has.
func pinnedHostKey(knownHosts []byte, hostPort string) (ssh.HostKeyCallback, []string, error) {
	cb, err := knownHostsCallback(knownHosts)
	if err != nil {
		return nil, nil, err
	}
	// Ask with a key no host has: the error lists the keys known for it.
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil, nil, err
	}
	var algos []string
	var ke *knownhosts.KeyError
	if err := cb(hostPort, &net.TCPAddr{IP: net.IPv4zero}, probe); errors.As(err, &ke) {
		for _, k := range ke.Want {
			for _, a := range algorithmsFor(k.Key.Type()) {
				if !slices.Contains(algos, a) {
					algos = append(algos, a)
				}
			}
		}
	}
	if len(algos) == 0 {
		return nil, nil, fmt.Errorf("ssh host %s: %w: add its key to the known_hosts file", hostPort, ErrUnknownHostKey)
	}
	checked := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := cb(hostname, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) == 0:
			return fmt.Errorf("ssh host %s: %w: add its key to the known_hosts file", hostname, ErrUnknownHostKey)
		case errors.As(err, &ke), errors.As(err, &re):
			return fmt.Errorf("ssh host %s offered a key of type %s: %w (%w)", hostname, key.Type(), ErrHostKeyMismatch, err)
		}
		return err
	}
	return checked, algos, nil
}

// knownHostsCallback parses known_hosts content with x/crypto's knownhosts,
// which reads files only: the content goes through a temporary file that
// is removed at once.
func knownHostsCallback(content []byte) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "dr-syncer-known_hosts-*")
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, fmt.Errorf("known_hosts: %w", err)
	}
	return cb, nil
}

// algorithmsFor lists the host key algorithms that verify with a key type.
func algorithmsFor(keyType string) []string {
	switch keyType {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{keyType}
}
