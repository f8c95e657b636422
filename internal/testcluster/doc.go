// Package testcluster starts the two real control planes that dr-syncer's
// tests, the demo and the benchmarks run against: a "source" and a "target"
// cluster, each its own etcd and kube-apiserver (built from source by
// `make kube-bin` into .cache/kube-bin), started through controller-runtime's
// envtest.
//
// In a test package, one pair serves the whole package:
//
//	var clusters *testcluster.Pair
//
//	func TestMain(m *testing.M) { testcluster.Main(m, &clusters) }
//
// and each test isolates itself in its own namespaces (Cluster.Namespace).
// Main tears everything down when the tests end, when they fail, on SIGINT or
// SIGTERM, and — through a small watchdog process that outlives the test
// binary — when the binary panics, times out or is killed: no process, port
// or temporary directory is left behind.
//
// The clusters run no controllers: Deployments get no Pods, PVCs stay
// Pending, deleted namespaces stay Terminating, nothing is garbage collected.
// Tests must not wait for what only controllers do.
//
// `make clusters-up` and `make clusters-down` run the same pair as detached
// background processes (Options.Detach, StopProcesses) for people, the demo
// and acceptance checks.
package testcluster
