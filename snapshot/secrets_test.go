package snapshot

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func newTestSealer(t *testing.T) (*age.X25519Identity, *Sealer) {
	t.Helper()
	id, err := GenerateIdentity(filepath.Join(t.TempDir(), "keys", "test.agekey"))
	require.NoError(t, err)
	mac, err := MACKey(id)
	require.NoError(t, err)
	s, err := NewSealer([]string{id.Recipient().String()}, mac)
	require.NoError(t, err)
	return id, s
}

func secretObj(ns, name string, data map[string]string) *unstructured.Unstructured {
	d := map[string]any{}
	for k, v := range data {
		d[k] = base64.StdEncoding.EncodeToString([]byte(v))
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"type":     "Opaque",
		"data":     d,
	}}
}

func sealedData(t *testing.T, u *unstructured.Unstructured) map[string]string {
	t.Helper()
	d, _, err := unstructured.NestedStringMap(u.Object, "data")
	require.NoError(t, err)
	return d
}

func TestSealKeepsUnchangedValues(t *testing.T) {
	id, s := newTestSealer(t)
	first := secretObj("shop", "db", map[string]string{"user": "shop", "password": "hunter2"})
	require.NoError(t, s.Seal(first, nil))
	for _, v := range sealedData(t, first) {
		require.True(t, strings.HasPrefix(v, sealedPrefix), v)
		require.NotContains(t, v, "hunter2")
	}

	// Same plaintext: the previous sealed values, byte for byte.
	again := secretObj("shop", "db", map[string]string{"user": "shop", "password": "hunter2"})
	require.NoError(t, s.Seal(again, first))
	require.Equal(t, sealedData(t, first), sealedData(t, again))

	// One key changed: only that key's sealed value changes.
	changed := secretObj("shop", "db", map[string]string{"user": "shop", "password": "hunter3"})
	require.NoError(t, s.Seal(changed, first))
	require.Equal(t, sealedData(t, first)["user"], sealedData(t, changed)["user"])
	require.NotEqual(t, sealedData(t, first)["password"], sealedData(t, changed)["password"])

	// And it opens to the new plaintext.
	require.NoError(t, Unseal(changed, id))
	require.Equal(t, base64.StdEncoding.EncodeToString([]byte("hunter3")), sealedData(t, changed)["password"])
	require.NotContains(t, changed.GetAnnotations(), EncryptedAnnotation)
}

func TestSealMACIsBoundToTheObject(t *testing.T) {
	_, s := newTestSealer(t)
	a := secretObj("shop", "a", map[string]string{"k": "same"})
	b := secretObj("shop", "b", map[string]string{"k": "same"})
	require.NoError(t, s.Seal(a, nil))
	require.NoError(t, s.Seal(b, nil))
	macA, _, err := parseSealed(sealedData(t, a)["k"])
	require.NoError(t, err)
	macB, _, err := parseSealed(sealedData(t, b)["k"])
	require.NoError(t, err)
	require.NotEqual(t, macA, macB, "equal values of two Secrets must not show as equal")

	// A previous value of another Secret is not reused.
	b2 := secretObj("shop", "b", map[string]string{"k": "same"})
	require.NoError(t, s.Seal(b2, a))
	require.NotEqual(t, sealedData(t, a)["k"], sealedData(t, b2)["k"])
}

func TestSealFoldsStringData(t *testing.T) {
	_, s := newTestSealer(t)
	u := secretObj("shop", "db", map[string]string{"a": "1"})
	u.Object["stringData"] = map[string]any{"b": "2"}
	require.NoError(t, s.Seal(u, nil))
	require.NotContains(t, u.Object, "stringData")
	require.Len(t, sealedData(t, u), 2)
}

func TestSealErrors(t *testing.T) {
	_, s := newTestSealer(t)
	u := secretObj("shop", "db", nil)
	u.Object["data"] = map[string]any{"k": "not base64!"}
	err := s.Seal(u, nil)
	require.ErrorContains(t, err, "Secret/shop/db: data.k: not base64")
	require.NotContains(t, err.Error(), "not base64!", "errors never carry a value")

	_, err = NewSealer([]string{"age1bogus"}, make([]byte, 32))
	require.Error(t, err)
	_, err = NewSealer(nil, make([]byte, 32))
	require.Error(t, err)
}

func TestUnsealWrongIdentity(t *testing.T) {
	_, s := newTestSealer(t)
	other, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	u := secretObj("shop", "db", map[string]string{"k": "v"})
	require.NoError(t, s.Seal(u, nil))
	require.ErrorContains(t, Unseal(u, other), "Secret/shop/db: data.k: decrypt")
}

func TestIdentityFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b.agekey")
	id, err := GenerateIdentity(path)
	require.NoError(t, err)
	_, err = GenerateIdentity(path)
	require.Error(t, err, "never overwrite an identity")
	loaded, err := LoadIdentity(path)
	require.NoError(t, err)
	require.Equal(t, id.String(), loaded.String())
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, "-rw-------", info.Mode().String())

	t.Setenv(IdentityEnv, "/from/env")
	p, err := IdentityPath("", "x")
	require.NoError(t, err)
	require.Equal(t, "/from/env", p)
	p, err = IdentityPath("/from/flag", "x")
	require.NoError(t, err)
	require.Equal(t, "/from/flag", p)
	t.Setenv(IdentityEnv, "")
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	p, err = IdentityPath("", "prod-to-dr")
	require.NoError(t, err)
	require.Equal(t, "/cfg/dr-syncer/keys/prod-to-dr.agekey", p)
}
