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
	"time"
)

// Git's lock files (index.lock, refs/heads/<branch>.lock) say "someone is
// writing this"; git leaves a stale one to people to remove. A dr-syncer
// process killed while holding one would stop every later run until a
// person came. So before creating a lock, gitstore writes an owner record
// (its process ID) under <git dir>/dr-syncer-locks/, and removes it after
// the lock is gone. A lock is dr-syncer's own, left by a crash, when its
// record names a process that no longer runs and the lock was last written
// within a minute after the record (a process writes its lock right after
// its record; a git command's lock, made later by a person, is not near a
// dead process's record in time): such a lock is removed. Any other lock —
// a git command's — is never touched.
const lockOwnersDir = "dr-syncer-locks"

// ownedLockWindow is how long after its owner record a lock may have been
// written last and still be taken for that owner's.
const ownedLockWindow = time.Minute

func (r *Repository) lockOwnerPath(lockPath string) string {
	sum := sha256.Sum256([]byte(lockPath))
	return filepath.Join(r.gitDir, lockOwnersDir, hex.EncodeToString(sum[:8]))
}

// createLock creates the lock file lockPath exclusively, its owner record
// first, after removing a stale lock of a dead dr-syncer process. release
// removes the owner record; call it after the lock file is removed or
// renamed into place.
func (r *Repository) createLock(lockPath string) (f *os.File, release func(), err error) {
	owner := r.lockOwnerPath(lockPath)
	if err := os.MkdirAll(filepath.Dir(owner), 0o755); err != nil {
		return nil, nil, err
	}
	if staleLock(owner, lockPath) {
		// Our own lock, left by a process that died.
		if err := os.Remove(lockPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
	}
	if err := os.WriteFile(owner, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, nil, fmt.Errorf("lock owner record: %w", err)
	}
	f, err = os.OpenFile(lockPath, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		os.Remove(owner)
		return nil, nil, err
	}
	return f, func() { os.Remove(owner) }, nil
}

// staleLock reports whether lockPath exists and is the lock of the dead
// process its owner record names (see lockOwnersDir).
func staleLock(owner, lockPath string) bool {
	lock, err := os.Stat(lockPath)
	if err != nil {
		return false
	}
	rec, err := os.Stat(owner)
	if err != nil {
		return false
	}
	data, err := os.ReadFile(owner)
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	after := lock.ModTime().Sub(rec.ModTime())
	if after < -time.Second || after > ownedLockWindow {
		return false
	}
	return processGone(pid)
}
