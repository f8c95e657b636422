package gitstore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Git's lock files (index.lock, refs/heads/<branch>.lock) say "someone is
// writing this"; git leaves a stale one to people to remove. A dr-syncer
// process killed while holding one would stop every later run until a
// person came. So before creating a lock, gitstore writes an owner record
// (its process ID) under <git dir>/dr-syncer-locks/, and removes it after
// the lock: a lock whose record names a process that no longer runs is
// dr-syncer's own, left by a crash, and is removed. A lock without a record
// (a git command's) is never touched.
const lockOwnersDir = "dr-syncer-locks"

func (r *Repository) lockOwnerPath(lockPath string) string {
	sum := sha256.Sum256([]byte(lockPath))
	return filepath.Join(r.gitDir, lockOwnersDir, hex.EncodeToString(sum[:8]))
}

// createLock creates the lock file lockPath exclusively, recording this
// process as its owner first, and removing a stale lock of a dead dr-syncer
// process. release removes the owner record; the caller removes or renames
// the lock file before calling it.
func (r *Repository) createLock(lockPath string) (f *os.File, release func(), err error) {
	owner := r.lockOwnerPath(lockPath)
	if err := os.MkdirAll(filepath.Dir(owner), 0o755); err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		f, err = os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if err == nil || !errors.Is(err, fs.ErrExist) || attempt > 0 || !staleOwner(owner) {
			break
		}
		// Our own lock, left by a process that died: remove it, once.
		if rerr := os.Remove(lockPath); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, nil, rerr
		}
	}
	if err != nil {
		return nil, nil, err
	}
	if werr := os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); werr != nil {
		f.Close()
		os.Remove(lockPath)
		return nil, nil, fmt.Errorf("lock owner record: %w", werr)
	}
	// The record goes before the lock: killed in between, a lock without a
	// record is left to a person, never a record without a lock that could
	// later be taken for the owner of a git command's lock.
	return f, func() { os.Remove(owner) }, nil
}

// staleOwner reports whether the owner record names a process that is gone.
func staleOwner(owner string) bool {
	data, err := os.ReadFile(owner)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return false // held by this very process
	}
	return processGone(pid)
}
