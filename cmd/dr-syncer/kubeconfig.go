package main

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client-side rate limits. client-go's defaults (QPS 5, Burst 10) would
// throttle a snapshot or an apply to a few objects a second.
const (
	clientQPS   = 200
	clientBurst = 400
)

// restConfig loads the kubeconfig of one side: the flag, then the side's
// environment variable. There is no fallback to ~/.kube/config: acting on
// whatever cluster happens to be current is how DR tools hurt people.
func restConfig(side, flagValue, envName, kubeContext string) (*rest.Config, error) {
	path := flagValue
	if path == "" {
		path = os.Getenv(envName)
	}
	if path == "" {
		return nil, usageError(fmt.Errorf("no %s kubeconfig: pass --%s-kubeconfig or set %s", side, side, envName))
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%s kubeconfig %s: %w", side, path, err)
	}
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	cfg.UserAgent = "dr-syncer/" + version
	return cfg, nil
}
