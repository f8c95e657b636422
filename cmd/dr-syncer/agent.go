package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/dr-syncer/dr-syncer/pvcsync"
)

func newAgentCommand() *cobra.Command {
	var f struct {
		listen, hostKey, authorizedKeys, userCA, kubeletDir string
		extraRoots                                          []string
	}
	cmd := &cobra.Command{
		Use:   "agent --host-key F --user-ca F [--listen :2222] [--kubelet-dir D]",
		Short: "Serve source volumes read-only to rsync over SSH (runs on a source node)",
		Long: `Serve this node's volume directories read-only to the target's rsync pull,
over SSH (the agent DaemonSet of deploy/agent runs it on every source node).

It accepts public keys only: the per-run certificates signed by the user CA
(--user-ca; each bound to one volume directory for a few minutes), and plain
keys from --authorized-keys. It runs nothing but rsync's sender, with
allowlisted options, on paths inside <kubelet-dir>/pods/<uid>/volumes/ (or an
--extra-root, for hostPath volumes); everything else is refused and logged.
No shell, no password, no forwarding.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.userCA == "" && f.authorizedKeys == "" {
				return usageError(errors.New("agent: --user-ca or --authorized-keys is required: an agent that trusts no key serves nothing"))
			}
			cfg, err := pvcsync.LoadAgentConfig(f.hostKey, f.authorizedKeys, f.userCA)
			if err != nil {
				return err
			}
			cfg.KubeletDir, cfg.ExtraRoots = f.kubeletDir, f.extraRoots
			cfg.Logger = slog.New(slog.NewJSONHandler(cmd.ErrOrStderr(), nil))
			agent, err := pvcsync.NewAgent(cfg)
			if err != nil {
				return err
			}
			l, err := net.Listen("tcp", f.listen)
			if err != nil {
				return fmt.Errorf("agent: %w", err)
			}
			cfg.Logger.Info("agent listening", "address", l.Addr().String(), "kubeletDir", cfg.KubeletDir)
			return agent.Serve(cmd.Context(), l)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", fmt.Sprintf(":%d", pvcsync.DefaultAgentPort), "address to listen on")
	fl.StringVar(&f.hostKey, "host-key", "", "the agent's SSH host key, OpenSSH private key file (required; `agent keygen` writes one)")
	fl.StringVar(&f.userCA, "user-ca", "", "public key(s) of the user CA that signs the per-run certificates")
	fl.StringVar(&f.authorizedKeys, "authorized-keys", "", "authorized_keys file of plain public keys let in as well")
	fl.StringVar(&f.kubeletDir, "kubelet-dir", pvcsync.DefaultKubeletDir, "the kubelet's directory on this node")
	fl.StringSliceVar(&f.extraRoots, "extra-root", nil, "a further directory served whole (hostPath volumes); repeatable")
	_ = cmd.MarkFlagRequired("host-key")
	cmd.AddCommand(newAgentKeygenCommand(), newAgentPullCommand())
	return cmd
}

func newAgentKeygenCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "keygen --dir DIR",
		Short: "Write a new agent host key and user CA key",
		Long: `Write a new agent host key (` + pvcsync.HostKeyFile + `) and user CA key (` + pvcsync.UserCAFile + `),
each with its .pub, into DIR; existing keys are never overwritten.

The agents get the host key and the CA's public key; whoever runs the PVC
stage (sync, run) gets the CA key and the host key's public key (--agent-keys).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := pvcsync.GenerateAgentKeys(dir); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "agent keys written to %s\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the keys (required)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// terminationLog is where a container's termination message goes; the
// kubelet creates it, so it exists only inside a pod.
const terminationLog = "/dev/termination-log"

func newAgentPullCommand() *cobra.Command {
	var o pvcsync.PullOptions
	var agent, report string
	cmd := &cobra.Command{
		Use:   "pull --agent HOST:PORT --path P --dest D --keys DIR",
		Short: "Pull one volume from an agent with rsync over SSH (the target's pull Job runs it)",
		Long: `Pull one source volume from its agent into --dest with rsync over SSH, with the
run's key, certificate and pinned host key from --keys. The result (rsync's
exit code and figures) is written as JSON to --report (the pod's termination
message when it runs in a pod).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			host, port, err := net.SplitHostPort(agent)
			if err != nil {
				return usageError(fmt.Errorf("--agent %q: %w", agent, err))
			}
			if _, err := fmt.Sscan(port, &o.Agent.Port); err != nil {
				return usageError(fmt.Errorf("--agent %q: bad port", agent))
			}
			o.Agent.Host = host
			out := cmd.OutOrStdout()
			last := time.Time{}
			// The pod's log carries these lines to the runner that waits
			// for the Job (pvcsync.KubeRunner): one a second at most.
			o.Progress = func(p pvcsync.Progress) {
				if time.Since(last) >= time.Second {
					last = time.Now()
					fmt.Fprintln(out, pvcsync.FormatProgress(p))
				}
			}
			stats, err := pvcsync.Pull(cmd.Context(), o)
			rep := pvcsync.PullReport{Stats: stats}
			var re *pvcsync.RsyncError
			switch {
			case err == nil:
			case errors.As(err, &re):
				rep.ExitCode, rep.Error = re.ExitCode, err.Error()
			default:
				rep.ExitCode, rep.Error = -1, err.Error()
			}
			if werr := writeReport(report, rep); werr != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "dr-syncer: %v\n", werr)
			}
			if err == nil {
				fmt.Fprintf(out, "pulled %s: %d files, %d bytes received\n", o.Path, stats.Files, stats.BytesReceived)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&agent, "agent", "", "the agent, HOST:PORT (required)")
	fl.StringVar(&o.Path, "path", "", "the volume's directory on the source node (required)")
	fl.StringVar(&o.Dest, "dest", "", "the directory to pull into (required)")
	fl.StringVar(&o.KeyDir, "keys", "", "directory with "+pvcsync.KeyFile+", "+pvcsync.CertificateFile+" and "+pvcsync.KnownHostsFile+" (required)")
	fl.BoolVar(&o.InPlace, "inplace", false, "write changed files in place (rsync --inplace)")
	fl.BoolVar(&o.Sparse, "sparse", false, "write holes of sparse files as holes (rsync --sparse)")
	fl.StringVar(&report, "report", terminationLog, "file for the JSON result; "+terminationLog+" is written only if it exists (inside a pod)")
	for _, name := range []string{"agent", "path", "dest", "keys"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func writeReport(path string, rep pvcsync.PullReport) error {
	if path == "" {
		return nil
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if path == terminationLog {
		flags = os.O_WRONLY | os.O_TRUNC // never create it outside a pod
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if errors.Is(err, fs.ErrNotExist) && path == terminationLog {
		return nil
	}
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	// A termination message holds 4 KiB at most: keep the end of a long
	// error, where rsync says why it stopped.
	if len(rep.Error) > 2048 {
		rep.Error = "…" + rep.Error[len(rep.Error)-2048:]
	}
	data, _ := json.Marshal(rep)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("report %s: %w", path, err)
	}
	return f.Close()
}
