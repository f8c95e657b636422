package controller

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/dr-syncer/dr-syncer/gitstore"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

func canary(t *testing.T) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "canary-" + hex.EncodeToString(b)
}

const canaryConfig = `
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: canary}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces: [{source: %s}]
  secrets: {mode: %s, recipients: [%s]}
`

// TestSecretCanary: after several snapshots, changes and deletions, no git
// object holds a Secret's plaintext; an unchanged Secret gives no diff; a
// changed key changes that key's line only; the sealed values decrypt back.
func TestSecretCanary(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	id, sealer := testKeys(t)
	cfg := decodeConfig(t, fmt.Sprintf(canaryConfig, ns, "encrypt", id.Recipient()))
	dir := t.TempDir()
	repo, err := gitstore.Init(ctx, dir)
	require.NoError(t, err)
	opts := SnapshotOptions{Repo: repo, Config: cfg, Source: src.Config, Sealer: sealer}
	path := "snapshots/prod/" + ns + "/Secret/db.yaml"

	c1, c2, c3, c4 := canary(t), canary(t), canary(t), canary(t)
	secret := func(data map[string]string) string {
		// As kubectl apply leaves it: the last-applied annotation holds the
		// plaintext too.
		last := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db","namespace":%q},"stringData":%s}`, ns, mustJSON(data))
		return fmt.Sprintf(`{apiVersion: v1, kind: Secret, metadata: {name: db, namespace: %s, annotations: {kubectl.kubernetes.io/last-applied-configuration: %q}}, stringData: %s}`, ns, last, mustJSON(data))
	}
	applyManifests(t, src, secret(map[string]string{"password": c1, "token": c2}))
	res, err := Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	first := git(t, dir, "show", "HEAD:"+path)
	require.Contains(t, first, "dr-syncer.io/encrypted: age")

	// Unchanged: no commit, same ciphertext.
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.False(t, res.Changed, "an unchanged Secret must give no diff")

	// One key changed: only that key's line changes (and the annotation
	// holding the plaintext is never recorded).
	applyManifests(t, src, secret(map[string]string{"password": c3, "token": c2}))
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.True(t, res.Changed)
	diff := git(t, dir, "diff", "-U0", "HEAD~1", "HEAD", "--", path)
	var changed []string
	for _, l := range strings.Split(diff, "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed = append(changed, l)
		}
	}
	require.Len(t, changed, 2, "one line out, one in:\n%s", diff)
	require.True(t, strings.HasPrefix(changed[0], "-  password: ENC[AGE,v1,") && strings.HasPrefix(changed[1], "+  password: ENC[AGE,v1,"), diff)

	// The sealed form decrypts back to the source's values.
	u := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal([]byte(git(t, dir, "show", "HEAD:"+path)), &u.Object))
	require.NoError(t, snapshot.Unseal(u, id))
	data, _, _ := unstructured.NestedStringMap(u.Object, "data")
	require.Equal(t, b64(c3), data["password"])
	require.Equal(t, b64(c2), data["token"])

	// A key added, then the Secret deleted.
	applyManifests(t, src, secret(map[string]string{"password": c3, "token": c2, "extra": c4}))
	_, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.NoError(t, src.Clientset().CoreV1().Secrets(ns).Delete(ctx, "db", deleteNow))
	res, err = Snapshot(ctx, opts)
	require.NoError(t, err)
	require.Equal(t, []string{path}, res.Removed)

	assertNoPlaintext(t, dir, c1, c2, c3, c4)
}

// TestSecretsExcluded: with mode exclude no Secret is recorded and the
// commit message says how many were left out.
func TestSecretsExcluded(t *testing.T) {
	ctx := t.Context()
	src := clusters.Source
	ns := src.Namespace(t)
	id, _ := testKeys(t)
	cfg := decodeConfig(t, fmt.Sprintf(canaryConfig, ns, "exclude", id.Recipient()))
	dir := t.TempDir()
	repo, err := gitstore.Init(ctx, dir)
	require.NoError(t, err)
	c := canary(t)
	applyManifests(t, src, fmt.Sprintf(`{apiVersion: v1, kind: Secret, metadata: {name: a, namespace: %[1]s}, stringData: {k: %[2]s}}
---
{apiVersion: v1, kind: Secret, metadata: {name: b, namespace: %[1]s}, stringData: {k: %[2]s}}
---
{apiVersion: v1, kind: ConfigMap, metadata: {name: c, namespace: %[1]s}, data: {k: v}}`, ns, c))
	res, err := Snapshot(ctx, SnapshotOptions{Repo: repo, Config: cfg, Source: src.Config})
	require.NoError(t, err)
	require.True(t, res.Changed)
	require.Contains(t, git(t, dir, "log", "-1", "--format=%B"), "Secrets-Excluded: 2")
	require.NotContains(t, git(t, dir, "ls-tree", "-r", "--name-only", "HEAD"), "/Secret/")
	assertNoPlaintext(t, dir, c)
}
