package testcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The names of the two clusters, used in directory names and messages.
const (
	SourceName = "source"
	TargetName = "target"
)

// Client-side rate limits of the configs handed out. client-go's defaults
// (QPS 5, Burst 10) throttle a test to about 5 objects a second.
const (
	clientQPS   = 1000
	clientBurst = 2000
)

const (
	startTimeout = 90 * time.Second
	stopTimeout  = 60 * time.Second
)

// Options say where the binaries are and where the clusters keep their state.
type Options struct {
	// BinDir holds kube-apiserver and etcd. Default: $KUBEBUILDER_ASSETS if
	// set, else .cache/kube-bin at the root of this repository.
	BinDir string
	// Dir receives one folder per cluster (etcd data, certificates, logs).
	// Default: a new temporary directory, removed by Stop.
	Dir string
	// Detach leaves the processes running when this process exits, for
	// `make clusters-up`; they are stopped with StopProcesses.
	Detach bool
}

// Pair is a running source and target cluster.
type Pair struct {
	Source *Cluster
	Target *Cluster

	dir        string
	removeDir  bool
	stopOnce   sync.Once
	stopResult error
}

// Cluster is one running control plane: an etcd and a kube-apiserver.
type Cluster struct {
	// Name is SourceName or TargetName.
	Name string
	// Config authenticates as a cluster administrator, with QPS and Burst
	// raised for tests. Copy it (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Kubeconfig holds the same credentials as a kubeconfig file.
	Kubeconfig []byte

	env       *envtest.Environment
	dir       string
	clientset *kubernetes.Clientset
	dynamic   *dynamic.DynamicClient
	logs      []*os.File
}

// Start starts a source and a target cluster side by side. On error nothing
// is left running.
func Start(ctx context.Context, opts Options) (*Pair, error) {
	binDir, err := binDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	p := &Pair{dir: opts.Dir}
	if p.dir == "" {
		if p.dir, err = os.MkdirTemp("", "dr-syncer-clusters-"); err != nil {
			return nil, fmt.Errorf("clusters: %w", err)
		}
		p.removeDir = true
	}
	if p.dir, err = filepath.Abs(p.dir); err != nil {
		return nil, fmt.Errorf("clusters: %w", err)
	}

	var wg sync.WaitGroup
	var srcErr, tgtErr error
	wg.Go(func() {
		p.Source, srcErr = startCluster(ctx, SourceName, filepath.Join(p.dir, SourceName), binDir, opts.Detach)
	})
	wg.Go(func() {
		p.Target, tgtErr = startCluster(ctx, TargetName, filepath.Join(p.dir, TargetName), binDir, opts.Detach)
	})
	wg.Wait()
	if err := errors.Join(srcErr, tgtErr); err != nil {
		_ = p.Stop() // whichever one started
		return nil, err
	}
	return p, nil
}

// Dir is the directory that holds the clusters' state.
func (p *Pair) Dir() string { return p.dir }

// Stop stops both clusters (each kube-apiserver before its etcd) and removes
// the state directory if Start created it. It is safe to call more than once.
func (p *Pair) Stop() error {
	p.stopOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, c := range []*Cluster{p.Source, p.Target} {
			if c == nil {
				continue
			}
			wg.Go(func() {
				if err := c.stop(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if p.removeDir {
			if err := os.RemoveAll(p.dir); err != nil {
				errs = append(errs, fmt.Errorf("clusters: remove %s: %w", p.dir, err))
			}
		}
		p.stopResult = errors.Join(errs...)
	})
	return p.stopResult
}

func startCluster(ctx context.Context, name, dir, binDir string, detach bool) (*Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	for _, d := range []string{"etcd", "apiserver"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
	}
	c := &Cluster{Name: name, dir: dir}
	etcdLog, err := c.openLog("etcd.log")
	if err != nil {
		return nil, err
	}
	apiLog, err := c.openLog("kube-apiserver.log")
	if err != nil {
		c.closeLogs()
		return nil, err
	}
	c.env = &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  stopTimeout,
		ControlPlane: envtest.ControlPlane{
			// State goes under dir (not envtest's own temporary folders), so
			// that one RemoveAll, or the watchdog, cleans up everything, and
			// so that the processes can be found by their arguments.
			Etcd:      &envtest.Etcd{DataDir: filepath.Join(dir, "etcd"), Out: etcdLog, Err: etcdLog},
			APIServer: &envtest.APIServer{CertDir: filepath.Join(dir, "apiserver"), Out: apiLog, Err: apiLog},
		},
	}
	cfg, err := c.env.Start()
	if err != nil {
		_ = c.env.Stop()
		c.closeLogs()
		return nil, fmt.Errorf("cluster %s: start: %w%s", name, err, c.logTails())
	}
	if detach {
		// The processes write straight to the files; this process's copies
		// of the descriptors are not needed.
		c.closeLogs()
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = clientQPS, clientBurst
	c.Config = cfg
	if c.Kubeconfig, err = kubeconfig(name, cfg); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, errors.Join(err, c.stop()))
	}
	if c.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, errors.Join(err, c.stop()))
	}
	if c.dynamic, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, errors.Join(err, c.stop()))
	}
	return c, nil
}

// kubeconfig writes cfg as a kubeconfig whose cluster, user and context are
// all called name, so that the source's and the target's can be merged.
func kubeconfig(name string, cfg *rest.Config) ([]byte, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	return clientcmd.Write(*kc)
}

// Clientset is a typed client for this cluster.
func (c *Cluster) Clientset() kubernetes.Interface { return c.clientset }

// Dynamic is a dynamic client for this cluster.
func (c *Cluster) Dynamic() dynamic.Interface { return c.dynamic }

func (c *Cluster) stop() error {
	// envtest stops the kube-apiserver before its etcd: the other order can
	// hang for minutes.
	err := c.env.Stop()
	c.closeLogs()
	if err != nil {
		return fmt.Errorf("cluster %s: stop: %w", c.Name, err)
	}
	return nil
}

func (c *Cluster) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	c.logs = append(c.logs, f)
	return f, nil
}

func (c *Cluster) closeLogs() {
	for _, f := range c.logs {
		_ = f.Close()
	}
	c.logs = nil
}

// logTails returns the last lines of the cluster's logs, for an error
// message when a control plane does not start.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		data, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil || len(data) == 0 {
			continue
		}
		lines := bytes.Split(bytes.TrimSpace(data), []byte("\n"))
		lines = lines[max(0, len(lines)-15):]
		fmt.Fprintf(&b, "\n--- last lines of %s:\n%s", name, bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

// binDir finds the directory holding kube-apiserver and etcd, and checks
// that both are there.
func binDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if dir == "" {
		root, err := repoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, ".cache", "kube-bin")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("clusters: %s not found in %s (run `make kube-bin`): %w", bin, dir, err)
		}
	}
	return filepath.Abs(dir)
}

// repoRoot walks up from the working directory to this repository's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/dr-syncer/dr-syncer\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("clusters: not inside the dr-syncer repository; set KUBEBUILDER_ASSETS to the folder holding kube-apiserver and etcd")
		}
		dir = parent
	}
}
