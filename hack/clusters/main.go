// Command clusters runs the source and target control planes of the tests as
// background processes, for people, the demo and acceptance checks:
//
//	go run ./hack/clusters up   --dir .cache/clusters --bin .cache/kube-bin
//	go run ./hack/clusters down --dir .cache/clusters
//
// `up` writes DIR/source.kubeconfig and DIR/target.kubeconfig and returns,
// leaving the processes running; `down` stops every kube-apiserver, then
// every etcd, and removes DIR. Both are what `make clusters-up` and
// `make clusters-down` run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/dr-syncer/dr-syncer/internal/testcluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "clusters: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: clusters up|down --dir DIR [--bin DIR]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	dir := fs.String("dir", ".cache/clusters", "where the clusters keep their state and kubeconfigs")
	bin := fs.String("bin", "", "folder holding kube-apiserver and etcd (default: .cache/kube-bin)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	switch args[0] {
	case "up":
		return up(ctx, abs, *bin)
	case "down":
		return down(ctx, abs)
	default:
		return fmt.Errorf("unknown command %q: want up or down", args[0])
	}
}

func kubeconfigPath(dir, name string) string { return filepath.Join(dir, name+".kubeconfig") }

func up(ctx context.Context, dir, bin string) error {
	if running, err := reachable(ctx, dir); err != nil {
		return err
	} else if running {
		fmt.Printf("clusters are already up; kubeconfigs in %s\n", dir)
		return nil
	}
	start := time.Now()
	p, err := testcluster.Start(ctx, testcluster.Options{BinDir: bin, Dir: dir, Detach: true})
	if err != nil {
		return err
	}
	for _, c := range []*testcluster.Cluster{p.Source, p.Target} {
		if err := os.WriteFile(kubeconfigPath(dir, c.Name), c.Kubeconfig, 0o600); err != nil {
			return errors.Join(err, testcluster.StopProcesses(ctx, dir))
		}
	}
	fmt.Printf("clusters up in %.1fs\n", time.Since(start).Seconds())
	for _, c := range []*testcluster.Cluster{p.Source, p.Target} {
		fmt.Printf("  %-6s %s  kubeconfig %s\n", c.Name, c.Config.Host, kubeconfigPath(dir, c.Name))
	}
	fmt.Printf("\n  export DR_SYNCER_SOURCE_KUBECONFIG=%s\n  export DR_SYNCER_TARGET_KUBECONFIG=%s\n",
		kubeconfigPath(dir, testcluster.SourceName), kubeconfigPath(dir, testcluster.TargetName))
	fmt.Printf("\nstop them with: make clusters-down\n")
	return nil
}

// reachable reports whether both clusters of dir answer. Processes that run
// without answering are an error: they need `make clusters-down` first.
func reachable(ctx context.Context, dir string) (bool, error) {
	for _, name := range []string{testcluster.SourceName, testcluster.TargetName} {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath(dir, name))
		if err == nil {
			var cs *kubernetes.Clientset
			if cs, err = kubernetes.NewForConfig(cfg); err == nil {
				_, err = cs.Discovery().ServerVersion()
			}
		}
		if err != nil {
			if n, perr := testcluster.CountProcesses(dir); perr == nil && n > 0 {
				return false, fmt.Errorf("%d control-plane processes run under %s but cluster %s does not answer (%v); run `make clusters-down` first", n, dir, name, err)
			}
			return false, nil
		}
	}
	return true, nil
}

func down(ctx context.Context, dir string) error {
	n, err := testcluster.CountProcesses(dir)
	if err != nil {
		return err
	}
	if err := testcluster.StopProcesses(ctx, dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	fmt.Printf("clusters down: stopped %d processes, removed %s\n", n, dir)
	return nil
}
