package controller

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/internal/testvolume"
	"github.com/dr-syncer/dr-syncer/pvcsync"
)

const volumesConfig = `
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: %[1]s}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces:
  - {source: %[1]s, target: %[1]s-dr}
  secrets: {mode: exclude}
  volumes:
    retries: 1
    agent: {port: %[2]d}
`

// TestVolumesLocal runs the PVC stage of a commit end to end with the local
// runner: the plan from the real source apiserver, real rsync and ssh
// against the agent on loopback, the record in the real target apiserver.
func TestVolumesLocal(t *testing.T) {
	ctx := t.Context()
	ns := clusters.Source.Namespace(t)
	agent := testvolume.StartAgent(t)
	dir := testvolume.MountedClaim(t, clusters.Source.Clientset(), ns, "data", agent.KubeletDir)
	big := make([]byte, 4<<20)
	_, _ = rand.Read(big)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "note.txt"), []byte("hello"), 0o600))

	cfg := decodeConfig(t, fmt.Sprintf(volumesConfig, ns, agent.Port))
	repo, _ := skeletonRepo(t, cfg)
	snap, err := Snapshot(ctx, SnapshotOptions{Repo: repo, Config: cfg, Source: clusters.Source.Config})
	require.NoError(t, err)
	applyOpts := ApplyOptions{Repo: repo, Config: cfg, Target: clusters.Target.Config}
	_, err = Apply(ctx, applyOpts)
	require.NoError(t, err)

	out := t.TempDir()
	vopts := VolumeOptions{
		ApplyOptions: applyOpts, Source: clusters.Source.Config,
		Runner:     &pvcsync.LocalRunner{Dir: out},
		KubeletDir: agent.KubeletDir, Backoff: 10 * time.Millisecond,
		Credentials: pvcsync.CredentialsFrom(agent.Keys, time.Minute),
	}
	results, err := Volumes(ctx, vopts)
	require.NoError(t, err)
	require.Len(t, results, 1)
	r := results[0]
	require.Equal(t, pvcsync.StateSucceeded, r.State, r.Reason)
	require.Equal(t, pvcsync.Claim{Namespace: ns + "-dr", Name: "data"}, r.Transfer.Target)
	require.Equal(t, snap.Commit.String(), r.Transfer.Commit)
	dest := filepath.Join(out, ns+"-dr", "data")
	got, err := os.ReadFile(filepath.Join(dest, "big.bin"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got), "big.bin differs")
	note, err := os.ReadFile(filepath.Join(dest, "sub", "note.txt"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(note))
	require.GreaterOrEqual(t, r.Stats.BytesReceived, int64(len(big)))

	// A change of a few bytes: only the change moves.
	copy(big[1<<20:], []byte("changed in the source"))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644))
	results, err = Volumes(ctx, vopts)
	require.NoError(t, err)
	require.Equal(t, pvcsync.StateSucceeded, results[0].State, results[0].Reason)
	require.Less(t, results[0].Stats.BytesReceived, int64(len(big)/4), "a small change moved %d bytes", results[0].Stats.BytesReceived)
	got, err = os.ReadFile(filepath.Join(dest, "big.bin"))
	require.NoError(t, err)
	require.True(t, bytes.Equal(big, got), "big.bin differs after the delta")

	st, err := VolumeStatusOf(ctx, applyOpts)
	require.NoError(t, err)
	require.Len(t, st, 1)
	require.Equal(t, snap.Commit.String(), st[0].DataCommit)
	require.Equal(t, pvcsync.StateSucceeded, st[0].LastAttempt.State)

	// The agent stops serving: the copy fails, is retried, and is
	// reported failed; the record keeps the last good commit.
	require.NoError(t, os.RemoveAll(dir))
	results, err = Volumes(ctx, vopts)
	require.NoError(t, err)
	require.Equal(t, pvcsync.StateFailed, results[0].State)
	require.Equal(t, 2, results[0].Attempts)
	require.NotEmpty(t, results[0].Reason)
	require.False(t, strings.Contains(results[0].Reason, "PRIVATE KEY"))
	st, err = VolumeStatusOf(ctx, applyOpts)
	require.NoError(t, err)
	require.Equal(t, snap.Commit.String(), st[0].DataCommit)
	require.Equal(t, pvcsync.StateFailed, st[0].LastAttempt.State)
}
