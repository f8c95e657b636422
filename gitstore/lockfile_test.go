package gitstore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// deadPID is the ID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	require.NoError(t, cmd.Run())
	return cmd.Process.Pid
}

// TestStaleLocks: a lock left by a dr-syncer process that died is removed
// by the next commit; a lock without an owner record (a git command's) or
// of a live process stops it with a message that names the file.
func TestStaleLocks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		lock    string // relative to .git
		owner   func(t *testing.T) string
		later   bool // the lock is written two minutes after the record
		wantErr string
	}{
		{name: "index lock of a dead process", lock: "index.lock", owner: func(t *testing.T) string { return strconv.Itoa(deadPID(t)) }},
		{name: "branch lock of a dead process", lock: "refs/heads/main.lock", owner: func(t *testing.T) string { return strconv.Itoa(deadPID(t)) }},
		{name: "index lock of a git command", lock: "index.lock", wantErr: "index.lock exists"},
		{name: "branch lock of a git command", lock: "refs/heads/main.lock", wantErr: "main.lock exists"},
		{name: "index lock of a live process", lock: "index.lock", owner: func(*testing.T) string { return strconv.Itoa(os.Getppid()) }, wantErr: "index.lock exists"},
		// A dead process's record, and a lock made long after it: a git
		// command's, which is never removed.
		{name: "index lock long after a dead owner's record", lock: "index.lock", owner: func(t *testing.T) string { return strconv.Itoa(deadPID(t)) }, later: true, wantErr: "index.lock exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, dir := initRepo(t)
			commit(t, r, "main", put("a.yaml", "a\n"))
			lock := filepath.Join(dir, ".git", filepath.FromSlash(tc.lock))
			// As a process leaves them: its owner record, then its lock.
			if tc.owner != nil {
				owner := r.lockOwnerPath(lock)
				require.NoError(t, os.MkdirAll(filepath.Dir(owner), 0o755))
				require.NoError(t, os.WriteFile(owner, []byte(tc.owner(t)+"\n"), 0o644))
			}
			require.NoError(t, os.WriteFile(lock, []byte("partial"), 0o644))
			if tc.later {
				at := time.Now().Add(2 * time.Minute)
				require.NoError(t, os.Chtimes(lock, at, at))
			}
			_, err := r.Commit(t.Context(), []Change{put("b.yaml", "b\n")}, CommitOptions{Branch: "main", Message: "next"})
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				_, serr := os.Stat(lock)
				require.NoError(t, serr, "a lock that is not ours stays")
				return
			}
			require.NoError(t, err)
			require.Empty(t, status(t, dir))
			_, serr := os.Stat(lock)
			require.ErrorIs(t, serr, os.ErrNotExist)
			entries, _ := os.ReadDir(filepath.Join(dir, ".git", lockOwnersDir))
			require.Empty(t, entries, "owner records are removed with their locks")
			fsck(t, dir)
		})
	}
}
