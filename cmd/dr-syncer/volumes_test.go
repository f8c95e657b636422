package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/internal/testvolume"
)

// TestSyncVolumes: sync copies a claim's data after the apply (local
// runner: real rsync and ssh against an agent on loopback), and status
// shows which commit's data the target holds.
func TestSyncVolumes(t *testing.T) {
	clusterEnv(t)
	ns := clusters.Source.Namespace(t)
	agent := testvolume.StartAgent(t)
	dir := testvolume.MountedClaim(t, clusters.Source.Clientset(), ns, "uploads", agent.KubeletDir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "photo.jpg"), []byte(strings.Repeat("jpeg", 4096)), 0o644))

	repo := filepath.Join(t.TempDir(), "dr")
	code, _, errOut := runCLI(t, "init", "--repo", repo, "--source", "vols", "--target", "dr", "--namespace-map", ns+"="+ns+"-dr")
	// (a mapping of its own: its inventory in the target is not another test's)
	require.Equal(t, 0, code, errOut)
	// The agent's port, committed to the mapping as a person would.
	f, err := os.OpenFile(filepath.Join(repo, "dr-syncer.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(f, "  volumes:\n    agent: {port: %d}\n", agent.Port)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	gitOut(t, repo, "-c", "user.name=Test Person", "-c", "user.email=person@example.invalid", "commit", "-qam", "volumes: the agent port")

	out := filepath.Join(t.TempDir(), "target-volumes")
	code, stdout, errOut := runCLI(t, "sync", "--repo", repo, "--volumes-local-dir", out,
		"--agent-keys", agent.Keys, "--kubelet-dir", agent.KubeletDir)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", stdout, errOut)
	require.Contains(t, stdout, "volume "+ns+"-dr/uploads: copied from "+ns+"/uploads on "+ns+"-node")
	data, err := os.ReadFile(filepath.Join(out, ns+"-dr", "uploads", "photo.jpg"))
	require.NoError(t, err)
	require.Equal(t, strings.Repeat("jpeg", 4096), string(data))
	head := strings.TrimSpace(gitOut(t, repo, "rev-parse", "HEAD"))

	code, stdout, errOut = runCLI(t, "status", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, stdout, "volumes:")
	require.Contains(t, stdout, ns+"-dr/uploads")
	require.Contains(t, stdout, "data of "+head[:7])

	code, stdout, errOut = runCLI(t, "status", "--repo", repo, "-o", "json")
	require.Equal(t, 0, code, errOut)
	var st struct {
		Volumes []struct {
			DataCommit string `json:"dataCommit"`
			Bytes      int64  `json:"bytes"`
		} `json:"volumes"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &st), stdout)
	require.Len(t, st.Volumes, 1)
	require.Equal(t, head, st.Volumes[0].DataCommit)
	require.Positive(t, st.Volumes[0].Bytes)

	// Without the agent keys the stage fails with a message that says
	// what is missing, and sync exits 1.
	code, stdout, errOut = runCLI(t, "sync", "--repo", repo, "--volumes-local-dir", out,
		"--agent-keys", filepath.Join(t.TempDir(), "none"), "--kubelet-dir", agent.KubeletDir)
	require.Equal(t, 1, code, "stdout:\n%s\nstderr:\n%s", stdout, errOut)
	require.Contains(t, stdout, "volume "+ns+"-dr/uploads: FAILED")
	require.Contains(t, stdout, "agent keygen")
	require.Contains(t, errOut, "PVC stage: 1 of 1 volumes failed")
	require.Equal(t, 1, strings.Count(errOut, "\n"), errOut)
}

func TestAgentKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	code, stdout, errOut := runCLI(t, "agent", "keygen", "--dir", dir)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, stdout, dir)
	for _, name := range []string{"ssh_host_ed25519_key", "user_ca_ed25519_key"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), name)
		_, err = os.Stat(filepath.Join(dir, name+".pub"))
		require.NoError(t, err)
	}
	// Never overwritten.
	code, _, errOut = runCLI(t, "agent", "keygen", "--dir", dir)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "exists")

	// An agent that trusts no key is refused before it listens.
	code, _, errOut = runCLI(t, "agent", "--host-key", filepath.Join(dir, "ssh_host_ed25519_key"))
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--user-ca or --authorized-keys is required")
}
