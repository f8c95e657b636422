package main

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/controller"
	"github.com/dr-syncer/dr-syncer/policies"
	"github.com/dr-syncer/dr-syncer/snapshot"
)

type runFlags struct {
	repo                             repoFlags
	branch, ref                      string
	srcKubeconfig, srcContext        string
	tgtKubeconfig, tgtContext        string
	identity                         string
	metricsAddr                      string
	namespace, leaseNamespace, lease string
	id                               string
	debounce, resync, poll           time.Duration
	logFormat                        string
	memoryLimit                      string
	gcPercent                        string
}

func newRunCommand() *cobra.Command {
	var f runFlags
	var vf volumeFlags
	cmd := &cobra.Command{
		Use:   "run --repo DIR|URL",
		Short: "Run the controller: manual, scheduled or continuous replication",
		Long: `Run the controller until SIGTERM: it elects one leader among its replicas (a
Lease in the target cluster) and the leader replicates as spec.replication of
dr-syncer.yaml says:

  manual      one cycle (snapshot, commit, apply, PVC stage) per request:
              kubectl -n dr-syncer-system annotate configmap dr-syncer-trigger \
                dr-syncer.io/sync-now="$(date +%s)" --overwrite      (target cluster)
  scheduled   one cycle per tick of spec.replication.schedule (cron, timeZone);
              a tick that finds the last cycle running is skipped and counted
  continuous  informers on the source; changes are committed in small commits
              within --debounce, and a full snapshot runs every --resync

Every new commit of the followed ref (--ref, default the branch; main in
review mode, spec.review) is applied, also those made by people (a revert, an
edited overlay, a merged pull request): a directory's refs are watched, and a
--repo URL is fetched before every cycle and every --poll. Snapshot commits to
a URL are pushed; a push rejected because the remote moved makes the commit
again on the new tip. Metrics on /metrics, probes on /healthz and /readyz at
--metrics-addr. On SIGTERM the current step finishes or is abandoned cleanly
(commits move refs atomically) and the Lease is released. The Go runtime gets
a soft memory limit, by default 90% of the container's (--memory-limit): the
garbage collector then runs more often near it rather than let the heap grow
to twice the live data; and, unless GOGC is set, a garbage collector target
of 50% (--gc-percent): a heap of 1.5 times the live data, not twice.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runController(cmd, f, vf) },
	}
	fl := cmd.Flags()
	f.repo.register(cmd)
	fl.StringVar(&f.branch, "branch", "", "branch the snapshots are committed to (default: main; in review mode spec.review.branch)")
	fl.StringVar(&f.ref, "ref", "", "ref the target follows: a branch, or a commit that pins the target (default: the branch; main in review mode)")
	fl.StringVar(&f.srcKubeconfig, "source-kubeconfig", "", "kubeconfig of the source cluster (default: $DR_SYNCER_SOURCE_KUBECONFIG)")
	fl.StringVar(&f.srcContext, "source-context", "", "context of the source kubeconfig to use")
	fl.StringVar(&f.tgtKubeconfig, "target-kubeconfig", "", "kubeconfig of the target cluster (default: $DR_SYNCER_TARGET_KUBECONFIG)")
	fl.StringVar(&f.tgtContext, "target-context", "", "context of the target kubeconfig to use")
	fl.StringVar(&f.identity, "identity", "", "age identity file (default: $"+snapshot.IdentityEnv+", then ~/.config/dr-syncer/keys/<name>.agekey)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":8080", "address of /metrics, /healthz and /readyz (empty: not served)")
	fl.StringVar(&f.namespace, "namespace", "dr-syncer-system", "the controller's namespace in the target (the manual trigger ConfigMap)")
	fl.StringVar(&f.leaseNamespace, "lease-namespace", "", "namespace of the leader election Lease in the target (default: --namespace)")
	fl.StringVar(&f.lease, "lease-name", "", "name of the Lease (default: dr-syncer-<mapping name>)")
	fl.StringVar(&f.id, "id", "", "this replica's identity in the Lease (default: host name and a random suffix)")
	fl.DurationVar(&f.debounce, "debounce", controller.DefaultDebounce, "continuous mode: longest wait of a change for its commit")
	fl.DurationVar(&f.resync, "resync", controller.DefaultResyncPeriod, "continuous mode: period of the full snapshot")
	fl.DurationVar(&f.poll, "poll", controller.DefaultRefPollPeriod, "period of the read of the followed ref, and of the fetch of a --repo URL")
	fl.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fl.StringVar(&f.memoryLimit, "memory-limit", memoryLimitAuto, "soft memory limit of the Go runtime (runtime/debug.SetMemoryLimit): a size (512Mi), auto (90% of the container's memory limit, unless GOMEMLIMIT is set) or none")
	fl.StringVar(&f.gcPercent, "gc-percent", "auto", "garbage collector target of the Go runtime (GOGC, runtime/debug.SetGCPercent): a percentage, or auto (50, unless GOGC is set)")
	vf.register(cmd)
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func runController(cmd *cobra.Command, f runFlags, vf volumeFlags) error {
	ctx := cmd.Context()
	var handler slog.Handler
	switch f.logFormat {
	case "json":
		handler = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
	case "text":
		handler = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
	default:
		return usageError(fmt.Errorf("--log-format %q: want json or text", f.logFormat))
	}
	memLimit, err := setMemoryLimit(f.memoryLimit)
	if err != nil {
		return usageError(err)
	}
	gcPercent, err := setGCPercent(f.gcPercent)
	if err != nil {
		return usageError(err)
	}
	if !f.repo.remote() {
		if fi, err := os.Stat(f.repo.location); err != nil || !fi.IsDir() {
			return usageError(fmt.Errorf("--repo %q: want a repository directory or a URL", f.repo.location))
		}
	}
	repo, cfg, err := openRepoMapping(ctx, f.repo, cmp.Or(f.branch, controller.DefaultBranch), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	refs := controller.RefsFor(cfg, f.branch, f.ref)
	source, err := restConfig("source", f.srcKubeconfig, "DR_SYNCER_SOURCE_KUBECONFIG", f.srcContext)
	if err != nil {
		return err
	}
	target, err := restConfig("target", f.tgtKubeconfig, "DR_SYNCER_TARGET_KUBECONFIG", f.tgtContext)
	if err != nil {
		return err
	}
	id, err := optionalIdentity(f.identity, cfg)
	if err != nil {
		return err
	}
	var sealer *snapshot.Sealer
	if cfg.Spec.Secrets.Mode != policies.SecretModeExclude {
		if id == nil {
			return fmt.Errorf("secrets are encrypted and no age identity was found (pass --identity or set %s)", snapshot.IdentityEnv)
		}
		mac, err := snapshot.MACKey(id)
		if err != nil {
			return err
		}
		if sealer, err = snapshot.NewSealer(cfg.Spec.Secrets.Recipients, mac); err != nil {
			return err
		}
	}
	log := slog.New(handler)
	if gcPercent > 0 {
		log.Info("garbage collector target of the Go runtime", "gcPercent", gcPercent)
	}
	if memLimit > 0 {
		log.Info("memory limit of the Go runtime", "bytes", memLimit)
	}
	reg := runRegistry()
	volumes, err := vf.volumeHook(cmd, controller.ApplyOptions{Repo: repo, Ref: refs.Ref, Config: cfg, Target: target, Identity: id}, source, reg, log)
	if err != nil {
		return err
	}
	return controller.Run(ctx, controller.RunOptions{
		Repo: repo, Branch: refs.Branch, Ref: refs.Ref, Base: refs.Base, Config: cfg,
		Source: source, Target: target, Sealer: sealer, Identity: id,
		Namespace: f.namespace, LeaseNamespace: f.leaseNamespace, LeaseName: f.lease, ID: f.id,
		Debounce: f.debounce, ResyncPeriod: f.resync, RefPollPeriod: f.poll,
		MetricsAddr: f.metricsAddr, Registry: reg,
		Logger:  log,
		Volumes: volumes,
	})
}
