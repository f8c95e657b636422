package reconciler

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestDiff(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	set := shopSet(t, ns)
	cleanupSet(t, set)
	m := newManager(t, Options{})

	diffs, err := m.Diff(t.Context(), set)
	require.NoError(t, err)
	require.Len(t, diffs, len(set), "everything is to be created")
	for _, d := range diffs {
		require.Equal(t, Created, d.Action, d.Object.String())
		require.Contains(t, d.Diff, "+++ desired/"+d.Object.String())
	}

	_, err = m.Apply(t.Context(), set, ApplyOptions{Commit: "c1"})
	require.NoError(t, err)
	diffs, err = m.Diff(t.Context(), shopSet(t, ns))
	require.NoError(t, err)
	require.Empty(t, diffs, "nothing differs")

	set = shopSet(t, ns)
	require.NoError(t, unstructured.SetNestedField(find(set, "ConfigMap", "settings").Object, "green", "data", "color"))
	require.NoError(t, unstructured.SetNestedField(find(set, "Secret", "creds").Object, "bmV3LXNlY3JldA==", "data", "password"))
	require.NoError(t, unstructured.SetNestedField(find(set, "Deployment", "web").Object, int64(3), "spec", "replicas"))
	set = without(set, "Service", "web")
	before := resourceVersions(t, m, set)
	diffs, err = m.Diff(t.Context(), set)
	require.NoError(t, err)
	require.Equal(t, before, resourceVersions(t, m, set), "Diff writes nothing")

	byRef := map[string]ObjectDiff{}
	for _, d := range diffs {
		byRef[d.Object.String()] = d
		t.Logf("%s %s\n%s", d.Action, d.Object, d.Diff)
	}
	require.Len(t, byRef, 4)
	cm := byRef["ConfigMap/"+ns+"/settings"]
	require.Equal(t, Configured, cm.Action)
	require.Contains(t, cm.Diff, "--- live/ConfigMap/"+ns+"/settings\n+++ desired/ConfigMap/"+ns+"/settings\n")
	require.Contains(t, cm.Diff, "\n-  color: blue\n+  color: green\n")

	dep := byRef["Deployment.apps/"+ns+"/web"]
	require.Equal(t, Configured, dep.Action)
	require.Contains(t, dep.Diff, "\n-  replicas: 2\n+  replicas: 3\n")
	require.NotContains(t, dep.Diff, "status", "only the fields dr-syncer manages")
	require.NotContains(t, dep.Diff, "managedFields")

	secret := byRef["Secret/"+ns+"/creds"]
	require.Equal(t, Configured, secret.Action)
	require.Contains(t, secret.Diff, "-  password: '*** (before)'\n+  password: '*** (after)'\n")
	require.NotContains(t, secret.Diff, "c2VjcmV0")
	require.NotContains(t, secret.Diff, "bmV3LXNlY3JldA==")

	svc := byRef["Service/"+ns+"/web"]
	require.Equal(t, Deleted, svc.Action)
	require.Contains(t, svc.Diff, "-  name: web\n")
	for _, line := range strings.Split(svc.Diff, "\n")[2:] {
		require.False(t, strings.HasPrefix(line, "+"), "a pruned object is only removed: %q", line)
	}
}
