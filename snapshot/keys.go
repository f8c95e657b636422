package snapshot

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"filippo.io/age"
)

// IdentityEnv names the environment variable that points at the age
// identity file, after the --identity flag and before the default path.
const IdentityEnv = "DR_SYNCER_AGE_IDENTITY"

// DefaultIdentityPath is where `dr-syncer init` keeps the age identity of the
// repository whose mapping is called name: outside the repository, under the
// user's configuration directory ($XDG_CONFIG_HOME, else ~/.config), as
// dr-syncer/keys/<name>.agekey.
func DefaultIdentityPath(name string) (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("age identity: %w", err)
	}
	return filepath.Join(dir, "dr-syncer", "keys", name+".agekey"), nil
}

// IdentityPath chooses the identity file: flag, then IdentityEnv, then the
// default path of the mapping called name.
func IdentityPath(flag, name string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if env := os.Getenv(IdentityEnv); env != "" {
		return env, nil
	}
	return DefaultIdentityPath(name)
}

// GenerateIdentity writes a new age X25519 identity to path (mode 0600, its
// folder 0700) and returns it. It refuses to overwrite an existing file.
func GenerateIdentity(path string) (*age.X25519Identity, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("age identity %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("age identity %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("age identity %s: %w", path, err)
	}
	_, err = fmt.Fprintf(f, "# dr-syncer age identity: it decrypts the Secrets of a DR repository. Keep it out of Git.\n# public key: %s\n%s\n", id.Recipient(), id)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, fmt.Errorf("age identity %s: %w", path, err)
	}
	return id, nil
}

// LoadIdentity reads the first X25519 identity of an age identity file. The
// error names the file, never its content.
func LoadIdentity(path string) (*age.X25519Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("age identity %s: not found (pass --identity or set %s): %w", path, IdentityEnv, err)
		}
		return nil, fmt.Errorf("age identity %s: %w", path, err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("age identity %s: not a valid identity file", path)
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x, nil
		}
	}
	return nil, fmt.Errorf("age identity %s: no X25519 identity in the file", path)
}
