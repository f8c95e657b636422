// Package benchfixture sizes the object set the 10,000-object benchmarks of
// several packages create (snapshot, apply, continuous lag), so that their
// figures describe the same mix.
package benchfixture

import (
	"fmt"
	"os"
	"strconv"
)

// Namespaces is how many namespaces the objects are spread over.
const Namespaces = 10

// Counts splits DR_SYNCER_BENCH_OBJECTS (default 10,000) into 70%
// ConfigMaps, 15% Deployments, 10% Services and 5% Secrets, each a multiple
// of Namespaces; objects is their sum. A count it cannot use panics: it is
// read once, when a benchmark binary starts.
func Counts() (configMaps, deployments, services, secrets, objects int) {
	n := 10_000
	if v := os.Getenv("DR_SYNCER_BENCH_OBJECTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 20*Namespaces {
			panic(fmt.Sprintf("DR_SYNCER_BENCH_OBJECTS=%q: want an object count of at least %d", v, 20*Namespaces))
		}
	}
	share := func(pct int) int { return n * pct / 100 / Namespaces * Namespaces }
	configMaps, deployments, services, secrets = share(70), share(15), share(10), share(5)
	return configMaps, deployments, services, secrets, configMaps + deployments + services + secrets
}
