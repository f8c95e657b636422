package pvcsync

import (
	"testing"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

// clusters are the source and target apiservers that the Kubernetes side
// of the stage (Plan, KubeRunner, RecordStore) is tested against.
var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }
