package pvcsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// LocalRunner runs a transfer as local processes: the very rsync and ssh
// commands that the target's pull Job runs, pulling from an agent that
// listens on this machine, into a local directory that stands for the
// target claim. It is for tests and the demo, where no kubelet runs pods.
type LocalRunner struct {
	// Dir holds one directory per target claim: Dir/<namespace>/<name>.
	Dir string
	// InPlace and Sparse are Pull's options.
	InPlace, Sparse bool
}

// Destination is the directory that stands for a target claim.
func (r *LocalRunner) Destination(c Claim) string {
	return filepath.Join(r.Dir, c.Namespace, c.Name)
}

// Run implements Runner.
func (r *LocalRunner) Run(ctx context.Context, t Transfer, creds Credentials, progress func(Progress)) (Stats, error) {
	dest := r.Destination(t.Target)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return Stats{}, fmt.Errorf("volume %s: %w", t.Target, err)
	}
	// The run's key lives only as long as the run, readable by the owner.
	keys, err := os.MkdirTemp("", "dr-syncer-keys-")
	if err != nil {
		return Stats{}, err
	}
	defer os.RemoveAll(keys)
	if err := WriteCredentials(keys, creds); err != nil {
		return Stats{}, err
	}
	return Pull(ctx, PullOptions{
		Agent: t.Agent, Path: t.Path, Dest: dest, KeyDir: keys,
		InPlace: r.InPlace, Sparse: r.Sparse, Progress: progress,
	})
}
