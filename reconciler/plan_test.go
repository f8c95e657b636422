package reconciler

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// existingNamespaces says the same whether it reads the namespaces one by
// one (a few) or lists them (many).
func TestExistingNamespaces(t *testing.T) {
	ns := clusters.Target.Namespace(t)
	m := newManager(t, Options{})
	for _, n := range []int{2, namespaceGetLimit + 4} {
		needed := map[string]bool{ns: true, "default": true}
		want := map[string]bool{ns: true, "default": true}
		for i := len(needed); i < n; i++ {
			name := fmt.Sprintf("%s-missing-%d", ns, i)
			needed[name], want[name] = true, false
		}
		got, err := m.existingNamespaces(t.Context(), needed)
		require.NoError(t, err)
		for name, exists := range want {
			require.Equal(t, exists, got[name], "namespaces %d: %s", n, name)
		}
	}
}
