package gitstore

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCommitFinishesInterruptedWorkTreeUpdate: a process killed after the
// branch moved and before the work tree and index were updated leaves them
// at the old commit (what git read-tree + checkout-index of the parent
// reproduce here) and its journal; the next Commit finishes that update
// first, so the work tree ends up matching HEAD, not stale for good.
func TestCommitFinishesInterruptedWorkTreeUpdate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		journal bool
		clean   bool
	}{
		{name: "with the journal: recovered", journal: true, clean: true},
		// Without it, the stale paths stay stale: what the journal is for
		// (and what shows that this test can fail).
		{name: "without the journal: stale", journal: false, clean: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, dir := initRepo(t)
			commit(t, r, "main", put("snapshots/a.yaml", "a: 1\n"), put("snapshots/gone.yaml", "x\n"))
			second := commit(t, r, "main", put("snapshots/a.yaml", "a: 2\n"), del("snapshots/gone.yaml"), put("snapshots/new.yaml", "n\n"))
			// The state a kill between the ref update and the work tree
			// update leaves: HEAD at the second commit, index and files at
			// the first.
			gitRun(t, dir, "read-tree", second.String()+"^")
			gitRun(t, dir, "checkout-index", "-f", "-a")
			require.NoError(t, os.Remove(filepath.Join(dir, "snapshots/new.yaml")))
			if tc.journal {
				from := revParse(t, dir, second.String()+"^^{tree}")
				to := revParse(t, dir, second.String()+"^{tree}")
				require.NoError(t, os.WriteFile(filepath.Join(dir, ".git", journalFile), []byte(from.String()+" "+to.String()+"\n"), 0o644))
			}
			require.NotEmpty(t, status(t, dir))

			r2, err := Open(t.Context(), dir)
			require.NoError(t, err)
			if tc.clean {
				// Open itself finishes the update: a run that commits
				// nothing (no change in the source) must not leave it.
				require.Empty(t, status(t, dir))
			}
			commit(t, r2, "main", put("snapshots/b.yaml", "b\n"))
			if tc.clean {
				require.Empty(t, status(t, dir))
				require.Equal(t, "a: 2\n", readFile(t, filepath.Join(dir, "snapshots/a.yaml")))
				_, err := os.Stat(filepath.Join(dir, ".git", journalFile))
				require.ErrorIs(t, err, os.ErrNotExist)
			} else {
				require.NotEmpty(t, status(t, dir))
			}
			fsck(t, dir)
		})
	}
}
