package reconciler

import (
	"testing"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

var clusters *testcluster.Pair

func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }
