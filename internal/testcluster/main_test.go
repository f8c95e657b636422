package testcluster

import (
	"testing"
)

var clusters *Pair

func TestMain(m *testing.M) { Main(m, &clusters) }
