package controller

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/dr-syncer/dr-syncer/policies"
)

func TestDisableStandby(t *testing.T) {
	const head = `# my mapping
apiVersion: dr-syncer.io/v1alpha1
kind: SyncConfig
metadata:
  name: prod-to-dr
spec:
  source:
    name: prod
  target:
    name: dr
  # the namespaces
  namespaces:
    - source: shop
  secrets:
    mode: exclude
`
	for name, text := range map[string]string{
		"absent":         head,
		"flow style":     head + "  standby: {}\n",
		"disabled false": head + "  standby:\n    disabled: false\n",
		"already true":   head + "  standby:\n    disabled: true\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, err := disableStandby([]byte(text))
			require.NoError(t, err)
			cfg, err := policies.Decode(policies.FileName, out)
			require.NoError(t, err, string(out))
			require.True(t, cfg.Spec.Standby.Disabled, string(out))
			require.Equal(t, "shop", cfg.Spec.Namespaces[0].Source)
			require.True(t, strings.HasPrefix(string(out), "# my mapping\n"), "comments are kept:\n%s", out)
			require.Contains(t, string(out), "# the namespaces")
		})
	}
	_, err := disableStandby([]byte("apiVersion: x\n"))
	require.ErrorContains(t, err, "no spec")
}
