package render

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/dr-syncer/dr-syncer/policies"
)

func TestStandbyCanBeDisabled(t *testing.T) {
	cfg, err := policies.Decode(policies.FileName, []byte(`
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata: {name: t}
spec:
  source: {name: prod}
  target: {name: dr}
  namespaces: [{source: shop}]
  secrets: {mode: exclude}
`))
	require.NoError(t, err)
	objects := []*unstructured.Unstructured{
		{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "shop"}}},
		{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": map[string]any{"name": "web", "namespace": "shop"}, "spec": map[string]any{"replicas": int64(3)}}},
		{Object: map[string]any{"apiVersion": "batch/v1", "kind": "CronJob", "metadata": map[string]any{"name": "report", "namespace": "shop"}, "spec": map[string]any{"schedule": "0 3 * * *"}}},
	}
	mentions := func(files map[string][]byte) bool {
		for _, data := range files {
			if strings.Contains(string(data), OriginalReplicasAnnotation) || strings.Contains(string(data), OriginalSuspendAnnotation) {
				return true
			}
		}
		return false
	}

	on, err := Generate(cfg, objects)
	require.NoError(t, err)
	require.True(t, mentions(on), "standby is on by default")

	cfg.Spec.Standby.Disabled = true
	off, err := Generate(cfg, objects)
	require.NoError(t, err)
	require.False(t, mentions(off), "standby disabled: workloads keep their replicas and schedules")
}
