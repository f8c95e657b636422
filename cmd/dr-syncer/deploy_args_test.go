package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployArgs parses the command lines of deploy/'s manifests with the
// CLI's own commands: a flag renamed or removed in the code fails here, not
// in a cluster's CrashLoopBackOff.
func TestDeployArgs(t *testing.T) {
	for _, tc := range []struct {
		file string
		kind any
	}{
		{"../../deploy/controller/deployment.yaml", &appsv1.Deployment{}},
		{"../../deploy/agent/daemonset.yaml", &appsv1.DaemonSet{}},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			require.NoError(t, err)
			require.NoError(t, yaml.UnmarshalStrict(data, tc.kind))
			var spec corev1.PodSpec
			switch o := tc.kind.(type) {
			case *appsv1.Deployment:
				spec = o.Spec.Template.Spec
			case *appsv1.DaemonSet:
				spec = o.Spec.Template.Spec
			}
			require.NotEmpty(t, spec.Containers)
			args := spec.Containers[0].Args
			require.NotEmpty(t, args)
			root := newRootCommand()
			cmd, rest, err := root.Find(args)
			require.NoError(t, err, "%v", args)
			require.NotEqual(t, root, cmd, "%v names no command", args)
			require.NoError(t, cmd.ParseFlags(rest), "%s: %v", cmd.Name(), args)
			require.Empty(t, cmd.Flags().Args(), "%s: stray arguments in %v", cmd.Name(), args)
		})
	}
}
