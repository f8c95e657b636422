package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/pvcsync"
)

// agentKeysEnv names the directory of the agent keys (the user CA's private
// key and the agents' host public key) when --agent-keys is not given.
const agentKeysEnv = "DR_SYNCER_AGENT_KEYS"

// credentialTTL is how long a per-run certificate is valid. SSH checks it
// when the connection is made, so it must cover the wait for the pull pod
// to start, not the copy.
const credentialTTL = 15 * time.Minute

type volumeFlags struct {
	skip                              bool
	agentKeys, localDir               string
	pullImage, kubeletDir, mountImage string
	timeout                           time.Duration
}

func (f *volumeFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.skip, "no-volumes", false, "skip the PVC data stage")
	fl.StringVar(&f.agentKeys, "agent-keys", "", "directory with the agents' user CA key and host public key (default: $"+agentKeysEnv+", then ~/.config/dr-syncer/keys/<name>-agent; `agent keygen` writes them)")
	fl.StringVar(&f.localDir, "volumes-local-dir", "", "copy PVC data into DIR/<namespace>/<claim> with local rsync processes instead of pull Jobs in the target (tests, demos)")
	fl.StringVar(&f.pullImage, "pull-image", "dr-syncer-agent:latest", "image of the pull Jobs in the target (rsync, ssh and dr-syncer)")
	fl.StringVar(&f.kubeletDir, "kubelet-dir", pvcsync.DefaultKubeletDir, "the kubelet's directory on the source nodes")
	fl.StringVar(&f.mountImage, "mount-image", "dr-syncer-agent:latest", "image of the temporary pods that mount unmounted claims (volumes.unmounted: Mount)")
	fl.DurationVar(&f.timeout, "volume-timeout", 6*time.Hour, "longest time one copy may take")
}

// volumeOptions wires the PVC stage: the runner, the credentials and how
// progress is shown.
func (f *volumeFlags) volumeOptions(cmd *cobra.Command, apply controller.ApplyOptions, source *rest.Config) (controller.VolumeOptions, func(), error) {
	cfg := apply.Config
	opts := controller.VolumeOptions{
		ApplyOptions: apply, Source: source,
		KubeletDir: f.kubeletDir, MountImage: f.mountImage,
	}
	// Sparse files stay sparse (rsync --sparse) unless the mapping says
	// otherwise: it keeps a volume of sparse files from outgrowing a target
	// claim of the same size (see policies.Volumes.Sparse).
	inPlace, sparse := cfg.Spec.Volumes.InPlace, cfg.VolumeSparse()
	if f.localDir != "" {
		opts.Runner = &pvcsync.LocalRunner{Dir: f.localDir, InPlace: inPlace, Sparse: sparse}
	} else {
		target, err := kubernetes.NewForConfig(apply.Target)
		if err != nil {
			return opts, nil, err
		}
		opts.Runner = &pvcsync.KubeRunner{Client: target, Image: f.pullImage, InPlace: inPlace, Sparse: sparse, Timeout: f.timeout}
	}
	dir := cmp.Or(f.agentKeys, os.Getenv(agentKeysEnv))
	if dir == "" {
		base, err := os.UserConfigDir()
		if err != nil {
			return opts, nil, err
		}
		dir = filepath.Join(base, "dr-syncer", "keys", cfg.Metadata.Name+"-agent")
	}
	opts.Credentials = pvcsync.CredentialsFrom(dir, credentialTTL)
	p := newProgress(cmd.ErrOrStderr())
	opts.Progress = p.update
	return opts, p.stop, nil
}

// volumeHook is the PVC stage of the controller (RunOptions.Volumes), its
// metrics in reg, or nil when the stage is off.
func (f *volumeFlags) volumeHook(cmd *cobra.Command, apply controller.ApplyOptions, source *rest.Config, reg prometheus.Registerer, log *slog.Logger) (func(context.Context, plumbing.Hash) error, error) {
	if f.skip || apply.Config.Spec.Volumes.Disabled {
		return nil, nil
	}
	opts, _, err := f.volumeOptions(cmd, apply, source)
	if err != nil {
		return nil, err
	}
	// A controller logs; it draws no progress bars.
	opts.Progress, opts.Logger = nil, log
	return controller.VolumeStage(opts, reg)
}

// printVolumes prints one line per claim and returns an error when any copy
// failed.
func printVolumes(w io.Writer, results []pvcsync.Result) error {
	var failed []string
	for _, r := range results {
		t := r.Transfer
		switch r.State {
		case pvcsync.StateSucceeded:
			fmt.Fprintf(w, "volume %s: copied from %s on %s at %s: %d files, %s received in %s\n",
				t.Target, t.Source, t.Node, short(t.Commit), r.Stats.Files, bytesText(r.Stats.BytesReceived), r.Duration.Round(time.Millisecond))
		case pvcsync.StateSkipped:
			fmt.Fprintf(w, "volume %s: skipped: %s\n", t.Target, r.Reason)
		default:
			fmt.Fprintf(w, "volume %s: FAILED after %d attempt(s): %s\n", t.Target, r.Attempts, r.Reason)
			failed = append(failed, t.Target.String())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("PVC stage: %d of %d volumes failed: %s", len(failed), len(results), strings.Join(failed, ", "))
	}
	return nil
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// progress shows the copies' progress: on a terminal, one bar per claim
// redrawn in place; otherwise a plain line per claim every few seconds.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	last    map[string]pvcsync.Progress
	printed map[string]time.Time
	lines   int
	drawn   time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, last: map[string]pvcsync.Progress{}, printed: map[string]time.Time{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

func (p *progress) update(t pvcsync.Transfer, pr pvcsync.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := t.Target.String()
	p.last[key] = pr
	if !p.tty {
		// A line every 5 s per claim, the first one 5 s in: a copy that
		// takes less prints only its result.
		first, ok := p.printed[key]
		if !ok {
			p.printed[key] = time.Now()
			return
		}
		if time.Since(first) >= 5*time.Second {
			p.printed[key] = time.Now()
			fmt.Fprintf(p.w, "volume %s: %d%%, %s, %s/s\n", key, pr.Percent, bytesText(pr.Bytes), bytesText(int64(pr.Rate)))
		}
		return
	}
	if time.Since(p.drawn) < 200*time.Millisecond && pr.Percent < 100 {
		return
	}
	p.draw()
}

// draw redraws every bar in place (the caller holds mu).
func (p *progress) draw() {
	p.drawn = time.Now()
	keys := make([]string, 0, len(p.last))
	for k := range p.last {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	if p.lines > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.lines) // back to the first bar
	}
	const width = 30
	for _, k := range keys {
		pr := p.last[k]
		done := min(width, max(0, pr.Percent*width/100))
		fmt.Fprintf(&b, "\r\x1b[K%-32s [%s%s] %3d%% %10s %10s/s\n", k,
			strings.Repeat("=", done), strings.Repeat(" ", width-done), pr.Percent, bytesText(pr.Bytes), bytesText(int64(pr.Rate)))
	}
	p.lines = len(keys)
	io.WriteString(p.w, b.String())
}

// stop draws the final state of the bars.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && len(p.last) > 0 {
		p.draw()
	}
}
