package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/policies"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(t.Context(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestInit(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	repo := filepath.Join(t.TempDir(), "dr")
	code, out, errOut := runCLI(t, "init", "--repo", repo, "--source", "prod", "--target", "dr",
		"--namespace-map", "shop=shop-dr", "--namespace-map", "billing", "--storage-class-map", "fast=standard")
	require.Equal(t, 0, code, errOut)
	initOut := out
	require.Contains(t, out, "Generated an age identity at "+filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "dr-syncer", "keys", "prod-to-dr.agekey"))

	// One commit, with the mapping and the overlay skeleton; clean work tree.
	files := gitOut(t, repo, "ls-tree", "-r", "--name-only", "HEAD")
	for _, f := range []string{"dr-syncer.yaml\n", "overlays/dr/kustomization.yaml\n", "overlays/dr/generated/kustomization.yaml\n"} {
		require.Contains(t, files, f)
	}
	// It renders before the first snapshot (to nothing yet).
	code, out, errOut = runCLI(t, "render", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	require.Empty(t, strings.TrimSpace(out))
	require.Equal(t, "", gitOut(t, repo, "status", "--porcelain"))
	cfg, err := policies.Load(filepath.Join(repo, policies.FileName))
	require.NoError(t, err)
	require.Equal(t, "prod", cfg.Spec.Source.Name)
	require.Equal(t, []policies.NamespaceMapping{{Source: "shop", Target: "shop-dr"}, {Source: "billing", Target: "billing"}}, cfg.Spec.Namespaces)
	require.Equal(t, []policies.NameMapping{{Source: "fast", Target: "standard"}}, cfg.Spec.StorageClasses)
	require.Equal(t, policies.SecretModeEncrypt, cfg.Spec.Secrets.Mode)
	require.Len(t, cfg.Spec.Secrets.Recipients, 1)

	// The identity is outside the repository, private, and nowhere in Git.
	key, err := os.ReadFile(filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "dr-syncer", "keys", "prod-to-dr.agekey"))
	require.NoError(t, err)
	secret := ""
	for _, l := range strings.Split(string(key), "\n") {
		if strings.HasPrefix(l, "AGE-SECRET-KEY-") {
			secret = l
		}
	}
	require.NotEmpty(t, secret)
	require.NotContains(t, gitOut(t, repo, "cat-file", "--batch-all-objects", "--batch"), secret)
	require.NotContains(t, initOut, secret)

	// A second init of the same repository is refused and changes nothing.
	code, _, errOut = runCLI(t, "init", "--repo", repo, "--source", "prod", "--target", "dr")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "already has a dr-syncer.yaml")
	require.Equal(t, "1\n", gitOut(t, repo, "rev-list", "--count", "HEAD"))
}

func TestInitRejectsBadInputBeforeWriting(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad namespace map", []string{"--namespace-map", "shop=Shop_DR"}, `spec.namespaces[0].target: invalid namespace name "Shop_DR"`},
		{"empty map", []string{"--storage-class-map", "fast"}, `--storage-class-map "fast": want SRC=DST`},
		{"bad recipient", []string{"--recipient", "age1nope"}, "spec.secrets.recipients[0]: invalid age recipient"},
		{"missing target", []string{"--target", ""}, "spec.target.name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := filepath.Join(t.TempDir(), "dr")
			args := append([]string{"init", "--repo", repo, "--source", "prod", "--target", "dr"}, tc.args...)
			code, _, errOut := runCLI(t, args...)
			require.Equal(t, exitUsage, code, errOut)
			require.Contains(t, errOut, tc.want)
			_, err := os.Stat(repo)
			require.True(t, os.IsNotExist(err), "nothing may be written on bad input")
			_, err = os.Stat(filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "dr-syncer"))
			require.True(t, os.IsNotExist(err), "no identity generated on bad input")
		})
	}
}

func TestSnapshotMalformedMapping(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	repo := filepath.Join(t.TempDir(), "dr")
	code, _, errOut := runCLI(t, "init", "--repo", repo, "--source", "prod", "--target", "dr", "--namespace-map", "shop")
	require.Equal(t, 0, code, errOut)
	path := filepath.Join(repo, policies.FileName)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, bytes.Replace(data, []byte("  namespaces:"), []byte("  namespaecs:"), 1), 0o644))
	gitOut(t, repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "typo")

	code, _, errOut = runCLI(t, "snapshot", "--repo", repo, "--source-kubeconfig", "/nonexistent")
	require.Equal(t, exitError, code)
	require.Regexp(t, `^dr-syncer: dr-syncer.yaml:\d+:\d+: spec.namespaecs: unknown field \(did you mean "namespaces"\?\)`, errOut)
	require.Equal(t, 2, gitCount(t, repo), "no snapshot commit on a bad mapping")
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %v: %s", args, out)
	return string(out)
}

func gitCount(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	for _, l := range strings.Split(strings.TrimSpace(gitOut(t, dir, "rev-list", "HEAD")), "\n") {
		if l != "" {
			n++
		}
	}
	return n
}
