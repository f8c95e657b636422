package testcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var notDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for one test, named after the test with a
// random suffix, and deletes it when the test ends. With no namespace
// controller running, a deleted namespace stays Terminating: tests must
// not wait for it to go.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	return c.NamespaceNamed(t, NamespaceName(t))
}

// NamespaceName returns a name for a test's namespace: the test name made a
// valid DNS label, with a random suffix. Use it to create the same namespace
// name in both clusters, or to name one that only a program under test
// creates.
func NamespaceName(t testing.TB) string {
	base := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	const maxBase = 63 - 1 - 6
	if len(base) > maxBase {
		base = strings.TrimRight(base[:maxBase], "-")
	}
	return base + "-" + hex.EncodeToString(suffix)
}

// NamespaceNamed creates the namespace name in this cluster and deletes it
// when the test ends.
func (c *Cluster) NamespaceNamed(t testing.TB, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.clientset.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("cluster %s: create Namespace/%s: %v", c.Name, name, err)
	}
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		_ = c.clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
